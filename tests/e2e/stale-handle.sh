#!/usr/bin/env bash
# stale-handle: a file opened on a volume that is deleted never reaches
# another volume created later under the same name (issue 18, defect 1).
# Host A (mount m1) keeps a loop device, and an ext4 mount, on volumes that
# are deleted with --force and created again; host B (mount m2) uses the
# new volumes. A's IO through its stale handles fails, B's data and file
# system stay intact, and no data file of a deleted volume comes back.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 cmp sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_of_three
mount_fused "$T/m1" "$(addr_of 1)"
mount_fused "$T/m2" "$(addr_of 2)"

zeros8=$(head -c $((8 << 20)) /dev/zero | sha256sum | cut -d' ' -f1)

# data_files NAME: how many servers have a data file of volume NAME
data_files()
{
	local n c=0
	for n in 1 2 3; do
		[ -e "$(data_of "$n")/volumes/$1.vol" ] && c=$((c + 1))
	done
	echo "$c"
}

# expect_io_fails WHAT CMD...: CMD must fail (the stale handle's IO errors).
expect_io_fails()
{
	local what=$1
	shift
	if "$@" 2>"$T/io.err"; then
		fail "$what succeeded through a stale handle"
	fi
	log "ok: $what failed ($(tail -n 1 "$T/io.err"))"
}

# ---------------------------------------------------------------- raw IO
ctl 1 volume create v 64M >/dev/null
wait_path_exists "$T/m1/v" || fail "volume v not in mount m1"
devA=$(loop_attach "$T/m1/v")
make_random "$T/a1" 8
dd if="$T/a1" of="$devA" bs=1M oflag=direct conv=notrunc status=none || fail "first write through A failed"
assert_eq "$(range_sum "$devA" 0 8)" "$(sha256sum <"$T/a1" | cut -d' ' -f1)" "A reads back its write"
# every server holds pages of v now
for n in 1 2 3; do
	[ -e "$(data_of "$n")/volumes/v.vol" ] || fail "server $n has no data file of v after the first write"
done

# delete without create: the stale handle's IO fails, nothing comes back
ctl 1 volume delete v --force >/dev/null
wait_path_gone "$T/m2/v" || fail "deleted volume v still in mount m2"
expect_io_fails "write to deleted volume v" \
	dd if="$T/a1" of="$devA" bs=1M count=2 oflag=direct conv=notrunc status=none
expect_io_fails "read of deleted volume v" \
	dd if="$devA" of=/dev/null bs=1M count=2 iflag=direct status=none
assert_eq "$(data_files v)" 0 "data files of deleted volume v after stale IO"

# create again under the same name: new id, zeros; A's old handle stays out
id1=$(ctl 1 --json volume create v 64M | json 'd["id"]')
log "volume v created again as id $id1"
wait_path_exists "$T/m2/v" || fail "new volume v not in mount m2"
assert_eq "$(range_sum "$T/m2/v" 0 8)" "$zeros8" "B reads the new volume v as zeros"
make_random "$T/a2" 8
expect_io_fails "A's write (8 MiB) through its stale loop device" \
	dd if="$T/a2" of="$devA" bs=1M oflag=direct conv=notrunc status=none
expect_io_fails "A's write (4 KiB) through its stale loop device" \
	dd if="$T/a2" of="$devA" bs=4k count=1 seek=100 oflag=direct conv=notrunc status=none
assert_eq "$(range_sum "$T/m2/v" 0 8)" "$zeros8" "new volume v after A's stale writes"
expect_io_fails "A's read through its stale loop device" \
	dd if="$devA" of=/dev/null bs=1M count=1 iflag=direct status=none
# the stale open does not count as an open of the new volume
ctl 1 volume delete v >/dev/null || fail "delete of new v refused: A's stale open counted as open"
loop_detach "$devA"
log "raw IO through a stale handle: refused"

# ---------------------------------------------------------------- ext4
ctl 1 volume create w 128M >/dev/null
wait_path_exists "$T/m1/w" || fail "volume w not in mount m1"
devA=$(loop_attach "$T/m1/w")
mkfs.ext4 -q -F "$devA" || fail "mkfs.ext4 on A's w failed"
mount_fs "$devA" "$T/fsA"
for i in 1 2 3; do make_random "$T/fsA/a$i" 4; done
sync -f "$T/fsA/a1"

wait_path_exists "$T/m2/w" || fail "volume w not in mount m2"
inoB=$(stat -c %i "$T/m2/w")
ctl 1 volume delete w --force >/dev/null
ctl 2 volume create w 128M >/dev/null
# B's mount shows the new w (a new inode) once its catalog has caught up
for _ in $(seq 1 50); do
	ino=$(stat -c %i "$T/m2/w" 2>/dev/null || echo 0)
	[ "$ino" != 0 ] && [ "$ino" != "$inoB" ] && break
	sleep 0.2
done
[ "$ino" != 0 ] && [ "$ino" != "$inoB" ] || fail "mount m2 does not show the new volume w"
devB=$(loop_attach "$T/m2/w")
mkfs.ext4 -q -F "$devB" || fail "mkfs.ext4 on B's w failed"
mount_fs "$devB" "$T/fsB"
for i in 1 2 3 4; do make_random "$T/fsB/b$i" 3; done
sync -f "$T/fsB/b1"
(cd "$T/fsB" && sha256sum b*) >"$T/b.sums"

# A goes on writing to its file system on the deleted w: writeback fails
for i in 4 5 6; do make_random "$T/fsA/a$i" 4 2>/dev/null || true; done
sync -f "$T/fsA" 2>/dev/null || true
rm -f "$T/fsA"/a1 2>/dev/null || true
sync 2>/dev/null || true
umount "$T/fsA" 2>/dev/null || umount -l "$T/fsA" 2>/dev/null || true
pv_forget mounts "$T/fsA"
loop_detach "$devA"

umount "$T/fsB" || fail "umount of B's file system failed"
pv_forget mounts "$T/fsB"
fsck.ext4 -fn "$devB" >"$T/fsck.out" 2>&1 || fail "B's file system is damaged after A's writeback: $(tail -n 5 "$T/fsck.out")"
mount_fs "$devB" "$T/fsB"
(cd "$T/fsB" && sha256sum -c --quiet "$T/b.sums") || fail "B's files changed after A's writeback"
umount "$T/fsB"
pv_forget mounts "$T/fsB"
loop_detach "$devB"
log "ext4: B's file system clean and its files intact after A wrote to the deleted volume"
