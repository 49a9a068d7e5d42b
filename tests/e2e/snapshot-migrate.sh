#!/usr/bin/env bash
# snapshot-migrate: a page's snapshot data moves with the page (issue 15,
# "With migration"). Three servers, volume vol (32 pages of 1 MiB) full of
# known data; snapshot a (hold mode), more known writes, snapshot b
# (timestamp mode). Then, while a writer writes random 4 KiB blocks,
# pages move: six by 'page move' (a hold-mode snapshot c is made while
# they move: it waits for the moves under way, and its image must not
# change as its pages move afterwards), then 'server evacuate 3' (a
# timestamp-mode snapshot d is made meanwhile). Afterwards: the volume
# holds exactly the writer's image; vol@a and vol@b, read through the
# mount, match the images written before them byte for byte, vol@c and
# vol@d read as they did when made; 'snapshot diff' lists what it listed
# before the moves; a move killed -9 at its target, then at its source,
# once its snapshot chunks went, resumes and changes no image; server 3
# keeps no snapshot data; deleting a frees its
# data on the new owners; rollback to b makes the volume b's image. A
# diff from the snapshot that was newest while pages moved lists only what
# was written (the moved pages' chunks preserved early do not count).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

MB=32
group_weighted 1 1 1
ctl 1 balance off >/dev/null # placement and page move are under test, not the rebalancer
ctl 1 volume create vol ${MB}M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"

# snap_bytes N: bytes the snapshot files of server N take on disk.
snap_bytes()
{
	find "$(data_of "$1")/snaps" -name '*.snap' -printf '%b\n' 2>/dev/null |
		awk '{ s += $1 * 512 } END { print s + 0 }'
}

# sha FILE: its sha256.
sha() { sha256sum <"$1" | cut -d' ' -f1; }

# the image of a: random data; of b: a with 300 random 4 KiB blocks and
# pages 3 and 20 written again (a copy kept in $T)
make_random "$T/img-a" $MB
dd if="$T/img-a" of="$T/mnt/vol" bs=1M oflag=direct conv=notrunc status=none
ctl 2 snapshot create vol a >/dev/null
cp "$T/img-a" "$T/img-b"
"$PYTHON" - "$T/mnt/vol" "$T/img-b" <<'EOF'
import mmap, os, random, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
img = os.open(sys.argv[2], os.O_RDWR)
buf = mmap.mmap(-1, 1 << 20)
random.seed(1515)
writes = [(random.randrange(32 * 256) * 4096, 4096) for _ in range(300)]
writes += [(3 << 20, 1 << 20), (20 << 20, 1 << 20)]
for off, n in writes:
    data = os.urandom(n)
    buf.seek(0)
    buf.write(data)
    os.pwritev(fd, [memoryview(buf)[:n]], off)
    os.pwrite(img, data, off)
EOF
ctl 3 snapshot create vol b --mode timestamp >/dev/null
wait_path_exists "$T/mnt/vol@a" || fail "vol@a did not appear"
wait_path_exists "$T/mnt/vol@b" || fail "vol@b did not appear"
cmp "$T/mnt/vol@a" "$T/img-a" || fail "vol@a is not a's image before any move"
cmp "$T/mnt/vol@b" "$T/img-b" || fail "vol@b is not b's image before any move"
diff_ab=$(ctl 1 snapshot diff vol b --from a --json | json "d['ranges']")
diff_a=$(ctl 1 snapshot diff vol a --json | json "d['ranges']")

# a writer of random 4 KiB blocks, its image in $T/img-w (the volume's
# content is b's at its start); it writes, then records, one block at a
# time, and stops when $T/stop appears
cp "$T/img-b" "$T/img-w"
cat >"$T/writer.py" <<'EOF'
import mmap, os, random, sys
path, img_path, stop = sys.argv[1:4]
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
img = os.open(img_path, os.O_RDWR)
buf = mmap.mmap(-1, 4096)
n = 0
while not os.path.exists(stop):
    off = random.randrange(32 * 256) * 4096
    data = os.urandom(4096)
    buf.seek(0)
    buf.write(data)
    os.pwritev(fd, [buf], off)
    os.pwrite(img, data, off)
    n += 1
print(n)
EOF
"$PYTHON" "$T/writer.py" "$T/mnt/vol" "$T/img-w" "$T/stop" >"$T/writer.out" &
writer=$!
pv_record pids "$writer"

# six pages move (two of each server's), slowly enough that snapshot c is
# asked while they move; c waits for those under way, the rest wait for c
ctl 1 set migrate.max-mbps 4 >/dev/null
routing_json 1 vol "$T/routing.json"
moves=$("$PYTHON" - "$T/routing.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
own = {}
for r in d["routing"]:
    for p in range(r["first_page"], r["last_page"] + 1):
        own.setdefault(r["owner"], []).append(p)
for o in sorted(own):
    for p in own[o][:2]:
        print(p, o % 3 + 1)
EOF
)
while read -r p to; do
	ctl 1 page move vol "$p" --to "$to" --piece 256K --async >/dev/null || fail "page move vol $p --to $to"
done <<<"$moves"
sleep 0.3
[ "$(ctl 1 migrations --json | json "len(d['migrations'])")" != 0 ] ||
	log "note: the moves ended before snapshot c was asked"
ctl 2 snapshot create vol c --json >"$T/c.json" || fail "snapshot c (made while pages move) failed"
log "snapshot c made while pages moved: writes paused $(json "d['pause_ms']" <"$T/c.json") ms"
wait_path_exists "$T/mnt/vol@c" || fail "vol@c did not appear"
sha_c=$(sha "$T/mnt/vol@c")
ctl 1 set migrate.max-mbps 0 >/dev/null
while read -r p to; do
	wait_page_owner 1 vol "$p" "$to"
done <<<"$moves"
log "six pages moved; snapshot c still reads as it did"
assert_eq "$(sha "$T/mnt/vol@c")" "$sha_c" "vol@c after its pages moved"

# server 3 is evacuated; snapshot d (timestamp mode) is made meanwhile
ctl 1 set migrate.max-mbps 8 >/dev/null
ctl 1 server evacuate 3 >"$T/evac.out" 2>&1 &
evac=$!
pv_record pids "$evac"
sleep 0.5
ctl 1 snapshot create vol d --mode timestamp >/dev/null ||
	fail "snapshot d (timestamp mode, made during the evacuation) failed"
wait_path_exists "$T/mnt/vol@d" || fail "vol@d did not appear"
sha_d=$(sha "$T/mnt/vol@d")
ctl 1 set migrate.max-mbps 0 >/dev/null
wait "$evac" || fail "server evacuate 3 failed: $(cat "$T/evac.out")"
pv_forget pids "$evac"
touch "$T/stop"
wait "$writer" || fail "the writer failed"
pv_forget pids "$writer"
log "server 3 evacuated; the writer made $(cat "$T/writer.out") writes meanwhile"
assert_eq "$(ctl 1 group show --json | json "next(m['pages'] for m in d['members'] if m['id'] == 3)")" 0 \
	"pages of server 3 after the evacuation"

# every image as it should be, read where its pages are now
cmp "$T/mnt/vol" "$T/img-w" || fail "the volume is not the writer's image after the moves"
cmp "$T/mnt/vol@a" "$T/img-a" || fail "vol@a is not a's image after the moves"
cmp "$T/mnt/vol@b" "$T/img-b" || fail "vol@b is not b's image after the moves"
assert_eq "$(sha "$T/mnt/vol@c")" "$sha_c" "vol@c after the evacuation"
assert_eq "$(sha "$T/mnt/vol@d")" "$sha_d" "vol@d after the evacuation"
assert_eq "$(ctl 2 snapshot diff vol b --from a --json | json "d['ranges']")" "$diff_ab" \
	"diff b --from a after the moves"
assert_eq "$(ctl 2 snapshot diff vol a --json | json "d['ranges']")" "$diff_a" \
	"diff a after the moves"
log "a, b, c, d and the volume read back as they should; diffs unchanged"

# kill -9 of the target, then of the source, of a move in 64 KiB pieces at
# 1 MB/s once its snapshot chunks are at the target: the move resumes and
# ends, and every image still reads as it did
for victim in target source; do
	p=$(ctl 1 volume show vol --routing --json | json "next(r['first_page'] for r in d['routing'] if r['owner'] == 1)")
	ctl 1 set migrate.max-mbps 1 >/dev/null
	ctl 1 page move vol "$p" --to 2 --piece 64K --async >/dev/null || fail "page move vol $p --to 2"
	k=$(wait_migration_piece 1 vol "$p" 2)
	n=2
	[ "$victim" = source ] && n=1
	kill9_peerd "$n"
	log "server $n (the $victim) killed with piece $k of page $p in transit"
	# shellcheck disable=SC2086
	run_peerd "$n" ${PEERD_ARGS[$n]}
	wait_group_up 1 2 3
	ctl 1 set migrate.max-mbps 0 >/dev/null
	wait_page_owner 1 vol "$p" 2
	wait_no_migrations 30 1 2 3
	cmp "$T/mnt/vol@a" "$T/img-a" || fail "vol@a is not a's image after the $victim's crash"
	cmp "$T/mnt/vol@b" "$T/img-b" || fail "vol@b is not b's image after the $victim's crash"
	assert_eq "$(sha "$T/mnt/vol@c")" "$sha_c" "vol@c after the $victim's crash"
	assert_eq "$(sha "$T/mnt/vol@d")" "$sha_d" "vol@d after the $victim's crash"
	cmp "$T/mnt/vol" "$T/img-w" || fail "the volume is not the writer's image after the $victim's crash"
	log "page $p moved to server 2 after the $victim's crash; every image reads as it did"
done

# server 3 keeps no snapshot data (its pages' chunks went with them)
for _ in $(seq 50); do
	(($(snap_bytes 3) == 0)) && break
	sleep 0.2
done
(($(snap_bytes 3) == 0)) || fail "server 3 keeps $(snap_bytes 3) bytes of snapshot data after the evacuation"

# deleting a frees its data on the new owners: a was preserved for every
# chunk b's writes touched, so its files shrink
before=$(($(snap_bytes 1) + $(snap_bytes 2)))
ctl 2 snapshot delete vol a >/dev/null
ctl 2 snapshot delete vol c >/dev/null
for _ in $(seq 50); do
	after=$(($(snap_bytes 1) + $(snap_bytes 2)))
	((after < before)) && break
	sleep 0.2
done
((after < before)) || fail "deleting a and c freed nothing on servers 1 and 2 ($before -> $after bytes)"
log "a and c deleted: snapshot data on servers 1 and 2 went from $before to $after bytes"
cmp "$T/mnt/vol@b" "$T/img-b" || fail "vol@b is not b's image after a was deleted"

# rollback to b: the volume is b's image again (closed: no writer)
for _ in $(seq 50); do
	ctl 1 snapshot rollback vol b >"$T/rb.out" 2>&1 && break
	sleep 0.2
done
cmp "$T/mnt/vol" "$T/img-b" || fail "the volume is not b's image after rollback: $(cat "$T/rb.out")"
assert_eq "$(sha "$T/mnt/vol@d")" "$sha_d" "vol@d after the rollback to b"
log "rollback to b after the moves: the volume is b's image, d unchanged"

# a move preserves its page's chunks in the newest snapshot early, yet a
# diff from that snapshot lists only what was written: e, then pages 0 and
# 1 move, 64 KiB of page 10 is written, f: the diff is that 64 KiB
ctl 1 snapshot create vol e >/dev/null
for p in 0 1; do
	owner=$(ctl 1 page show vol "$p" --json | json "d['owner']")
	ctl 1 page move vol "$p" --to $((3 - owner)) --piece 256K >/dev/null ||
		fail "page move vol $p --to $((3 - owner)) failed"
done
dd if=/dev/urandom of="$T/mnt/vol" bs=64K seek=$((10 * 16 + 2)) count=1 oflag=direct \
	conv=notrunc status=none
ctl 2 snapshot create vol f >/dev/null
assert_eq "$(ctl 3 snapshot diff vol f --from e --json | json "[(r['offset'], r['length']) for r in d['ranges']]")" \
	"[[$((10 * 1048576 + 2 * 65536)), 65536]]" "diff f --from e after pages 0 and 1 moved"
log "diff f --from e lists the write only, not the pages moved meanwhile"
