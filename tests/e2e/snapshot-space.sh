#!/usr/bin/env bash
# snapshot-space: copy-on-write costs what the issue promises and frees it
# (issue 15), and bad snapshot commands change nothing. After a snapshot of
# a full volume, 1000 random 4 KiB writes preserve at most 1000 chunks of
# 64 KiB (peerctl snapshot show, and the blocks the snapshot files take on
# disk); deleting the snapshot frees them. snapshot diff lists exactly the
# chunks written between two snapshots (and a full volume's image as one
# range); rollback (refused while the volume is open) makes the volume the
# snapshot's image and leaves the newer snapshot as it was. Refused, each with a clear error
# and its exit code: a duplicate name (6), an unknown volume or snapshot
# (5), a bad name, deleting a volume that has snapshots (unless
# --with-snapshots, which removes their files too).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_weighted 1 1 1
ctl 1 volume create vol 64M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
dd if=/dev/urandom of="$T/mnt/vol" bs=1M count=64 oflag=direct conv=notrunc status=none

snap_bytes()
{
	du -s -B1 "$(data_of 1)/snaps" "$(data_of 2)/snaps" "$(data_of 3)/snaps" 2>/dev/null |
		awk '{ s += $1 } END { print s + 0 }'
}

ctl 2 snapshot create vol s1 >/dev/null
"$PYTHON" - "$T/mnt/vol" <<'EOF2'
import mmap, os, random, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(os.urandom(4096))
random.seed(15)
for _ in range(1000):
    os.pwritev(fd, [buf], random.randrange(64 * 256) * 4096)
EOF2
preserved=$(ctl 3 snapshot show vol s1 --json | json "d['preserved']")
disk=$(snap_bytes)
log "1000 random 4 KiB writes: snapshot show says $preserved bytes preserved, $disk bytes on disk"
[ "$preserved" -gt 0 ] || fail "nothing preserved after 1000 writes"
((preserved <= 1000 * 65536)) || fail "$preserved bytes preserved for 1000 writes of 4 KiB (at most 1000 chunks of 64 KiB)"
((disk <= 1000 * 65536 + 3 * 1048576)) || fail "$disk bytes of snapshot files for 1000 writes"

# bad input: nothing changes
EXPECT_RC=6 expect_fail_msg "already" ctl 1 snapshot create vol s1
EXPECT_RC=5 expect_fail_msg "no volume" ctl 1 snapshot create nosuch s9
EXPECT_RC=5 expect_fail_msg "no snapshot" ctl 1 snapshot delete vol s9
EXPECT_RC=5 expect_fail_msg "no snapshot" ctl 1 snapshot show vol s9
expect_fail_msg "snapshot" ctl 1 snapshot create vol 'bad@name'
expect_fail_msg "with-snapshots" ctl 1 volume delete vol --force
assert_eq "$(ctl 1 snapshot list --json | json "[s['name'] for s in d['snapshots']]")" '["s1"]' \
	"snapshots after the refused commands"
ctl 1 volume show vol >/dev/null || fail "the volume is gone after a refused delete"

# delete frees the preserved data
ctl 1 snapshot delete vol s1 >/dev/null
for _ in $(seq 50); do
	(($(snap_bytes) < 3 * 65536)) && break
	sleep 0.2
done
(($(snap_bytes) < 3 * 65536)) || fail "$(snap_bytes) bytes of snapshot files left after the delete"
log "snapshot deleted: $(snap_bytes) bytes of snapshot files left"

# diff: exactly the chunks written between two snapshots, from the maps
ctl 1 snapshot create vol a >/dev/null
dd if=/dev/urandom of="$T/mnt/vol" bs=1M seek=5 count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$T/mnt/vol" bs=64K seek=321 count=1 oflag=direct conv=notrunc status=none
dd if=/dev/urandom of="$T/mnt/vol" bs=512 seek=$((40 * 2048 + 1)) count=1 oflag=direct \
	conv=notrunc status=none
ctl 2 snapshot create vol b --mode timestamp >/dev/null
dd if=/dev/urandom of="$T/mnt/vol" bs=1M seek=60 count=1 oflag=direct conv=notrunc status=none
got=$(ctl 3 snapshot diff vol b --from a --json | json "[(r['offset'], r['length']) for r in d['ranges']]")
assert_eq "$got" "[[5242880, 1048576], [21037056, 65536], [41943040, 65536]]" "diff b --from a"
got=$(ctl 3 snapshot diff vol a --json | json "[(r['offset'], r['length']) for r in d['ranges']]")
assert_eq "$got" "[[0, 67108864]]" "diff a (the data of a full volume)"
EXPECT_RC=5 expect_fail_msg "no snapshot" ctl 1 snapshot diff vol b --from nosuch
expect_fail_msg "older" ctl 1 snapshot diff vol a --from b
log "diff lists the chunks written between two snapshots"

# rollback: refused while the volume is open; then the volume is a's image
# again, and b (made after a) keeps its own
sha_a=$(sha256sum <"$T/mnt/vol@a" | cut -d' ' -f1)
sha_b=$(sha256sum <"$T/mnt/vol@b" | cut -d' ' -f1)
exec 3<"$T/mnt/vol"
refused=0
for _ in $(seq 50); do
	if ! ctl 1 snapshot rollback vol a >"$T/rb.out" 2>&1; then
		grep -q "open" "$T/rb.out" && refused=1 && break
	fi
	sleep 0.2
done
exec 3<&-
[ "$refused" = 1 ] || fail "rollback of an open volume was not refused: $(cat "$T/rb.out")"
for _ in $(seq 50); do
	ctl 2 snapshot rollback vol a >"$T/rb.out" 2>&1 && break
	sleep 0.2
done
assert_eq "$(sha256sum <"$T/mnt/vol" | cut -d' ' -f1)" "$sha_a" "the volume after rollback to a"
assert_eq "$(sha256sum <"$T/mnt/vol@b" | cut -d' ' -f1)" "$sha_b" "snapshot b after rollback to a"
log "rollback: the volume is a's image, b unchanged"

# pages that are not whole chunks: a 96 KiB page gets 32 KiB chunks (the
# largest power of two up to 64 KiB dividing it, so its pages move with
# their snapshots); a 64.5 KiB page keeps 64 KiB chunks that straddle two
# pages, often on two servers. On both, diff covers every block written
# between two snapshots, and rollback gives back the snapshot's image; the
# first three pages move (96 KiB) or are refused a move (64.5 KiB), and the
# images do not change.
odd_pages()
{
	local v=$1 page=$2 chunk=$3
	ctl 1 volume create "$v" 12M --page-size "$page" >/dev/null
	wait_path_exists "$T/mnt/$v"
	dd if=/dev/urandom of="$T/mnt/$v" bs=1M count=12 oflag=direct conv=notrunc status=none
	ctl 1 snapshot create "$v" a >/dev/null
	assert_eq "$(ctl 1 snapshot show "$v" a --json | json "d['chunk_size']")" "$chunk" \
		"chunk size of a volume of $page-byte pages"
	"$PYTHON" - "$T/mnt/$v" "$T/$v.written" <<'EOF2'
import mmap, os, random, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
random.seed(96)
offs = sorted(random.sample(range(12 * 256), 200))
for o in offs:
    buf.seek(0)
    buf.write(os.urandom(4096))
    os.pwritev(fd, [buf], o * 4096)
open(sys.argv[2], "w").write(" ".join(str(o * 4096) for o in offs))
EOF2
	ctl 2 snapshot create "$v" b >/dev/null
	ctl 3 snapshot diff "$v" b --from a --json >"$T/$v.diff"
	"$PYTHON" - "$T/$v.diff" "$T/$v.written" <<'EOF2' || fail "$v: diff b --from a misses written blocks"
import json, sys
ranges = [(r["offset"], r["offset"] + r["length"]) for r in json.load(open(sys.argv[1]))["ranges"]]
missed = [o for o in map(int, open(sys.argv[2]).read().split())
          if not any(a <= o and o + 4096 <= b for a, b in ranges)]
if missed:
    print("blocks written but not in the diff:", missed[:10], file=sys.stderr)
    sys.exit(1)
EOF2
	local sha_a sha_b owner to
	wait_path_exists "$T/mnt/$v@a" || fail "$v@a did not appear"
	wait_path_exists "$T/mnt/$v@b" || fail "$v@b did not appear"
	sha_a=$(sha256sum <"$T/mnt/$v@a" | cut -d' ' -f1)
	sha_b=$(sha256sum <"$T/mnt/$v@b" | cut -d' ' -f1)
	# pages of whole chunks move with their snapshots' chunks; pages whose
	# chunks straddle stay (refused, with the reason)
	for p in 0 1 2; do
		owner=$(ctl 1 page show "$v" "$p" --json | json "d['owner']")
		to=$((owner % 3 + 1))
		if ((page % chunk == 0)); then
			ctl 1 page move "$v" "$p" --to "$to" >/dev/null || fail "page move $v $p --to $to"
		else
			expect_fail_msg "not whole chunks" ctl 1 page move "$v" "$p" --to "$to"
		fi
	done
	assert_eq "$(sha256sum <"$T/mnt/$v@a" | cut -d' ' -f1)" "$sha_a" "$v@a after page moves"
	assert_eq "$(sha256sum <"$T/mnt/$v@b" | cut -d' ' -f1)" "$sha_b" "$v@b after page moves"
	for _ in $(seq 50); do
		ctl 2 snapshot rollback "$v" a >"$T/rb.out" 2>&1 && break
		sleep 0.2
	done
	assert_eq "$(sha256sum <"$T/mnt/$v" | cut -d' ' -f1)" "$sha_a" "$v after rollback to a"
	assert_eq "$(sha256sum <"$T/mnt/$v@b" | cut -d' ' -f1)" "$sha_b" "$v@b after rollback to a"
	ctl 1 volume delete "$v" --with-snapshots --force >/dev/null
	log "$page-byte pages, $chunk-byte chunks: diff covers the writes, rollback restores"
}
odd_pages odd96 98304 32768
odd_pages odd64 66048 65536

# a volume with a snapshot goes with --with-snapshots, files and all
ctl 1 snapshot create vol s2 >/dev/null
dd if=/dev/urandom of="$T/mnt/vol" bs=1M count=4 oflag=direct conv=notrunc status=none
umount_fused "$T/mnt"
ctl 1 volume delete vol --with-snapshots >/dev/null
for _ in $(seq 50); do
	[ -z "$(find "$(data_of 1)" "$(data_of 2)" "$(data_of 3)" -name '*.snap')" ] && break
	sleep 0.2
done
[ -z "$(find "$(data_of 1)" "$(data_of 2)" "$(data_of 3)" -name '*.snap')" ] ||
	fail "snapshot files left after volume delete --with-snapshots"
