#!/usr/bin/env bash
# mapped-reads: fused on the host of its server maps the volume's data file
# read-only (PV_OP_MAP_VOLUME) and copies READ data the server holds in
# memory out of it (PV_F_MAP): the server copies nothing. Users lose
# nothing by it:
#   a. 1 MiB and 4 KiB reads through a direct-IO loop device return what was
#      written; the server answered READs mapped (status reads_mapped > 0,
#      data_files_mapped 1) and fused says so in its log.
#   b. an overwrite reads back new, never the bytes mapped before.
#   c. a discarded range reads back zeros.
#   d. kill -9 of peerd and a restart on the same --data: reads are right,
#      and the new peerd answers mapped again (the file is the same).
#   e. the volume deleted and created again under the same name (a new data
#      file): reads return the new volume's bytes, never the old file's.
#   f. fused --no-map: no READ is answered mapped, the bytes are the same.
#   g. fio verify (crc32c, 4k/64k/1m random read-write, iodepth 16) passes.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio sha256sum dd blkdiscard cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create vol 128M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt/vol")

# ---------------------------------------------------------------- a
make_random "$T/a" 32
dd if="$T/a" of="$dev" bs=1M oflag=direct status=none
[ "$(range_sum "$dev" 0 32)" = "$(sha256sum <"$T/a" | cut -d' ' -f1)" ] ||
	fail "32 MiB written read back different (1 MiB reads)"
dd if="$dev" bs=4k count=2048 iflag=direct status=none | cmp -s - <(head -c 8M "$T/a") ||
	fail "8 MiB read back different (4 KiB reads)"
mapped=$(status_field 1 reads_mapped)
[ "$mapped" -gt 0 ] || fail "no READ was answered from fused's mapping (reads_mapped $mapped)"
assert_eq "$(status_field 1 data_files_mapped)" 1 "data files mapped by fused"
grep -q "volume vol: READ data held in memory by server .* is copied out of its data file" \
	"$T/fused-mnt.log" || fail "fused does not log that it maps the data file"
log "a: reads right, $mapped READs answered mapped"

# ---------------------------------------------------------------- b
make_random "$T/b" 8
dd if="$T/b" of="$dev" bs=1M seek=4 oflag=direct status=none
head -c 4M "$T/a" >"$T/ab"
cat "$T/b" >>"$T/ab"
tail -c +$((12 * 1048576 + 1)) "$T/a" >>"$T/ab"
before=$(status_field 1 reads_mapped)
dd if="$dev" bs=1M count=32 iflag=direct status=none | cmp -s - "$T/ab" ||
	fail "an overwrite does not read back (stale mapped bytes?)"
[ "$(status_field 1 reads_mapped)" -gt "$before" ] || fail "the overwritten range was not read mapped"
log "b: overwrite reads back new"

# ---------------------------------------------------------------- c
blkdiscard -o $((8 << 20)) -l $((4 << 20)) "$dev"
dd if="$dev" bs=1M skip=8 count=4 iflag=direct status=none | cmp -s - <(head -c 4M /dev/zero) ||
	fail "a discarded range does not read back zeros"
dd if="$dev" bs=1M count=8 iflag=direct status=none | cmp -s - <(head -c 8M "$T/ab") ||
	fail "the bytes before the discarded range changed"
log "c: discarded range reads zeros"

# ---------------------------------------------------------------- d
sync "$dev"
kill9_peerd 1
run_peerd 1
head -c 8M "$T/ab" >"$T/d"
head -c 4M /dev/zero >>"$T/d"
tail -c +$((12 * 1048576 + 1)) "$T/ab" >>"$T/d"
# the first read waits for fused to find the server again
dd if="$dev" bs=1M count=32 iflag=direct status=none | cmp -s - "$T/d" ||
	fail "reads after kill -9 and restart differ"
dd if="$dev" bs=1M count=32 iflag=direct status=none | cmp -s - "$T/d" ||
	fail "reads after kill -9 and restart differ (second pass)"
[ "$(status_field 1 reads_mapped)" -gt 0 ] || fail "the restarted peerd answered no READ mapped"
log "d: after kill -9 and restart reads are right and mapped again"

# ---------------------------------------------------------------- e
loop_detach "$dev"
ctl 1 volume delete vol >/dev/null
wait_path_gone "$T/mnt/vol" 30 || fail "the deleted volume is still in the mount"
ctl 1 volume create vol 128M >/dev/null
wait_path_exists "$T/mnt/vol" 30 || fail "the new volume does not appear in the mount"
dev=$(loop_attach "$T/mnt/vol")
# unwritten: zeros, never the old file's bytes
dd if="$dev" bs=1M count=32 iflag=direct status=none | cmp -s - <(head -c 32M /dev/zero) ||
	fail "a new volume under an old name reads other bytes than zeros"
make_random "$T/e" 32
dd if="$T/e" of="$dev" bs=1M oflag=direct status=none
dd if="$dev" bs=1M count=32 iflag=direct status=none | cmp -s - "$T/e" ||
	fail "a new volume under an old name does not read back what was written"
log "e: a new volume under the old name reads its own bytes"

# ---------------------------------------------------------------- f
mount_fused "$T/nomap" "$(addr_of 1)" -- --no-map
dev2=$(loop_attach "$T/nomap/vol")
before=$(status_field 1 reads_mapped)
dd if="$dev2" bs=1M count=32 iflag=direct status=none | cmp -s - "$T/e" ||
	fail "fused --no-map reads other bytes"
assert_eq "$(status_field 1 reads_mapped)" "$before" "READs answered mapped to fused --no-map"
loop_detach "$dev2"
umount_fused "$T/nomap"
log "f: --no-map reads the same bytes, none mapped"

# ---------------------------------------------------------------- g
fio_job "$T/verify.fio" "$dev" 77
cat >>"$T/verify.fio" <<EOF
size=96M

[mixed]
rw=randrw
bssplit=4k/60:64k/30:1m/10
iodepth=16
io_size=96M
EOF
(cd "$T" && run_fio verify "$T/verify.fio" --verify_state_save=0)
[ "$(status_field 1 reads_mapped)" -gt "$before" ] || fail "fio's verify reads were not mapped"
log "g: fio verify passes"
