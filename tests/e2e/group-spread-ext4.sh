#!/usr/bin/env bash
# group-spread-ext4: a group of three servers (server 3 with weight 2) spreads
# a volume's pages over all three in proportion to weight (1:1:2); ext4 on a
# loop device (direct IO) over that volume keeps files intact across sync,
# umount, fsck -fn and remount; and each server's data file holds allocated
# ranges only inside the pages it owns (SEEK_DATA/SEEK_HOLE vs routing).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVHOLES"

group_of_three
out=$(ctl 1 group show --json)
python3 - "$out" "$PV_PORT" <<'EOF' || fail "group show does not list the three members: $out"
import json, sys
d = json.loads(sys.argv[1])
m = sorted((x["id"], x["address"], x["weight"], x["state"]) for x in d["members"])
port = sys.argv[2]
want = [(1, "tcp://127.0.0.1:%s" % port, 1, "self"), (2, "tcp://127.0.0.2:%s" % port, 1, "up"),
        (3, "tcp://127.0.0.3:%s" % port, 2, "up")]
sys.exit(0 if m == want else 1)
EOF
log "group show: 3 members, 1 self and 2 up, weights 1,1,2"

# 512 MiB = 128 pages of 4 MiB: 32 + 32 + 64 by weight.
ctl 2 volume create vol 512M >/dev/null
for n in 1 2 3; do routing_json "$n" vol "$T/routing$n.json"; done
for n in 2 3; do
	cmp -s <(json "d['routing']" <"$T/routing1.json") <(json "d['routing']" <"$T/routing$n.json") ||
		fail "server $n's routing of vol differs from server 1's"
done
counts=$(pages_by_owner "$T/routing1.json" | tr '\n' ' ')
log "pages by owner: $counts"
python3 - "$T/routing1.json" <<'EOF' || fail "pages are not spread 1:1:2 over servers 1,2,3: $counts"
import json, sys, collections
d = json.load(open(sys.argv[1]))
c = collections.Counter()
for r in d["routing"]:
    c[r["owner"]] += r["last_page"] - r["first_page"] + 1
total = sum(c.values())
want = {1: total / 4, 2: total / 4, 3: total / 2}
ok = set(c) == {1, 2, 3} and all(abs(c[k] - want[k]) <= 2 for k in want)
# interleaved: sequential IO touches all three servers within a few pages
first = []
for r in d["routing"]:
    first += [r["owner"]] * (r["last_page"] - r["first_page"] + 1)
ok = ok and set(first[:8]) == {1, 2, 3}
sys.exit(0 if ok else 1)
EOF
holders=$(ctl 1 volume show vol --routing --json | json "sorted(d['holders'])")
assert_eq "$holders" "[1, 2, 3]" "connection table (holders) of vol"

# ---------------------------------------------------------------- ext4
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
dev=$(loop_attach "$T/mnt/vol")
mkfs.ext4 -q -F "$dev" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; fail "mkfs.ext4 failed"; }
mount_fs "$dev" "$T/ext4"
mkdir -p "$T/src"
# 24 files from 0 to ~6 MiB, 40-odd MiB in all: they cross many pages.
for i in $(seq 1 24); do head -c $(((RANDOM % 6144) * 1024 + i)) /dev/urandom >"$T/src/f$i"; done
mkdir "$T/ext4/dir"
cp "$T/src"/f* "$T/ext4/dir/"
(cd "$T/src" && sha256sum f*) >"$T/sums"
sync -f "$T/ext4"
(cd "$T/ext4/dir" && sha256sum --quiet -c "$T/sums") || fail "files differ right after writing"
umount "$T/ext4"
fsck.ext4 -fn "$dev" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "fsck.ext4 -fn is not clean"; }
log "ext4: 24 files written and synced, fsck -fn clean"
loop_detach "$dev"
umount_fused "$T/mnt"
# Remount on a fresh fused mount given only server 3's address and a fresh
# loop device: nothing can come from a host cache.
mount_fused "$T/mnt2" "$(addr_of 3)"
wait_path_exists "$T/mnt2/vol" || fail "$T/mnt2/vol did not appear"
dev=$(loop_attach "$T/mnt2/vol")
mount_fs "$dev" "$T/ext4" -o ro
(cd "$T/ext4/dir" && sha256sum --quiet -c "$T/sums") || fail "files differ after umount, fsck and remount"
umount "$T/ext4"
loop_detach "$dev"
umount_fused "$T/mnt2"
log "ext4: checksums match after remount through a fresh mount of server 3"

# ---------------------------------------------------------------- placement on disk
# Every allocated range of server N's data file lies inside pages N owns, and
# every server holds some data (the files cross pages of all three).
for n in 1 2 3; do
	f=$(data_of "$n")/volumes/vol.vol
	[ -f "$f" ] || fail "server $n has no data file $f"
	"$PVHOLES" map "$f" >"$T/map$n" || fail "pvholes map $f failed"
	python3 - "$T/routing1.json" "$T/map$n" "$n" <<'EOF' || fail "server $n's data file holds data outside its pages (map: $T/map$n)"
import json, sys
d = json.load(open(sys.argv[1]))
me = int(sys.argv[3])
ps = d["page_size"]
owner = {}
for r in d["routing"]:
    for p in range(r["first_page"], r["last_page"] + 1):
        owner[p] = r["owner"]
bad, data = [], 0
for line in open(sys.argv[2]):
    kind, start, end = line.split()
    if kind != "data":
        continue
    start, end = int(start), int(end)
    data += end - start
    for p in range(start // ps, (end - 1) // ps + 1):
        if owner.get(p) != me:
            bad.append((start, end, p, owner.get(p)))
for b in bad[:10]:
    print("server %d: data %d-%d covers page %d owned by %s" % ((me,) + b), file=sys.stderr)
print("server %d: %d bytes of data in its file, %d ranges outside its pages" % (me, data, len(bad)),
      file=sys.stderr)
if data == 0:
    print("server %d holds no data at all" % me, file=sys.stderr)
sys.exit(1 if bad or data == 0 else 0)
EOF
done
log "each server's data file holds data only inside the pages it owns"
