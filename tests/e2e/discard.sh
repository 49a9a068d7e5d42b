#!/usr/bin/env bash
# discard: blkdiscard on a range of the loop device (fallocate PUNCH_HOLE on
# the fused file, TRIM to peerd) makes the range read back as zeros and
# punches a hole in the server's data file there, leaving the data around it
# untouched. The same for write-zeroes (blkdiscard -z, fallocate
# ZERO_RANGE) and for fallocate --punch-hole on the fused file itself.
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_cmd blkdiscard fallocate cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVHOLES"

run_peerd 1
ctl 1 volume create vol 64M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt/vol")
datafile=$(data_of 1)/volumes/vol.vol
MiB=$((1 << 20))

# 32 MiB of random data at the start of the volume, flushed.
make_random "$T/data" 32
dd if="$T/data" of="$dev" bs=1M oflag=direct conv=fsync status=none
range_sum "$dev" 0 32 >"$T/sum.dev"
assert_eq "$(cat "$T/sum.dev")" "$(sha256sum <"$T/data" | cut -d' ' -f1)" "data read back through the loop device"
[ -f "$datafile" ] || fail "no data file $datafile"
"$PVHOLES" data "$datafile" 0 32M || fail "the written 32 MiB are not all allocated in $datafile"
log "data file before: $("$PVHOLES" map "$datafile" | tr '\n' ';')"
alloc_before=$(ctl 1 --json volume show vol | json 'd["bytes_allocated"]')

# expect_zero_hole OFF_MiB LEN_MiB WHAT: zeros through the device, a hole in
# the data file, and the data around it unchanged (checked against $T/data,
# into which this function writes the zeros it expects).
expect_zero_hole()
{
	local off=$1 len=$2 what=$3
	cmp -n $((len * MiB)) <(dd if="$dev" bs=1M skip="$off" count="$len" iflag=direct status=none) /dev/zero ||
		fail "$what: [$off, $((off + len))) MiB does not read back as zeros"
	"$PVHOLES" hole "$datafile" "${off}M" "${len}M" ||
		fail "$what: no hole in $datafile at [$off, $((off + len))) MiB: $("$PVHOLES" map "$datafile" | tr '\n' ';')"
	dd if=/dev/zero of="$T/data" bs=1M seek="$off" count="$len" conv=notrunc status=none
	cmp <(dd if="$dev" bs=1M count=32 iflag=direct status=none) "$T/data" ||
		fail "$what: data outside the range changed"
	"$PVHOLES" hole "$datafile" 32M 32M || fail "$what: data appeared in the never-written half"
	log "$what: zeros, hole, neighbours intact"
}

# 1. blkdiscard: page-aligned 4 MiB at 4 MiB, and 1 MiB inside a page.
blkdiscard -o $((4 * MiB)) -l $((4 * MiB)) "$dev"
expect_zero_hole 4 4 "blkdiscard 4M@4M"
blkdiscard -o $((13 * MiB)) -l $((1 * MiB)) "$dev"
expect_zero_hole 13 1 "blkdiscard 1M@13M"

# 2. write-zeroes
blkdiscard -z -o $((20 * MiB)) -l $((2 * MiB)) "$dev"
expect_zero_hole 20 2 "blkdiscard -z 2M@20M"

# 3. fallocate --punch-hole on the fused file directly
fallocate --punch-hole --keep-size -o $((26 * MiB)) -l $((3 * MiB)) "$T/mnt/vol"
expect_zero_hole 26 3 "fallocate --punch-hole 3M@26M"
assert_eq "$(stat -c %s "$T/mnt/vol")" $((64 * MiB)) "volume file size after punching"

# 4. the whole device: everything reads as zeros, the data file is all hole
blkdiscard "$dev"
cmp -n $((64 * MiB)) <(dd if="$dev" bs=1M iflag=direct status=none) /dev/zero ||
	fail "after discarding the whole device it does not read as zeros"
"$PVHOLES" hole "$datafile" 0 64M || fail "data left in $datafile after a full discard: $("$PVHOLES" map "$datafile" | tr '\n' ';')"

alloc_after=$(ctl 1 --json volume show vol | json 'd["bytes_allocated"]')
[ "$alloc_after" -lt "$alloc_before" ] ||
	fail "volume show bytes_allocated did not drop after discard ($alloc_before -> $alloc_after)"
log "bytes_allocated $alloc_before -> $alloc_after"

# Writes after a discard land again.
make_random "$T/data2" 4
dd if="$T/data2" of="$dev" bs=1M seek=8 oflag=direct conv=fsync status=none
cmp <(dd if="$dev" bs=1M skip=8 count=4 iflag=direct status=none) "$T/data2" ||
	fail "a write after discard does not read back"
