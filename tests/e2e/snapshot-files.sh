#!/usr/bin/env bash
# snapshot-files: a snapshot shows in the mount as the read-only file
# VOL@NAME (issue 15). On a volume spread over three servers: a pattern
# written through the loop device, then `peerctl snapshot create`, then
# the volume overwritten; VOL@NAME appears within a few seconds without a
# remount, of the volume's size and mode 0444, and its bytes (read with
# O_DIRECT, and through a read-only loop device, losetup -r) are the old
# pattern while the volume reads the new one; a second snapshot holds the
# second pattern; writing, truncating and opening it for writing fail with
# EROFS; a duplicate name, an unknown volume and a bad name are refused
# with a clear error and their exit status; deleting a snapshot takes its
# file away and the loop device still on it fails its reads; a volume with
# snapshots is deleted only with --with-snapshots, its files with it.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd sha256sum blockdev truncate
need_bin "$PEERD" "$PEERCTL" "$FUSED"

SIZE_MB=16
group_of_three
ctl 1 volume create v ${SIZE_MB}M --page-size 1M >/dev/null
mount_fused "$T/m" "$(addr_of 1)"
wait_path_exists "$T/m/v" || fail "volume v not in the mount"
dev=$(loop_attach "$T/m/v")

sum_of() { sha256sum <"$1" | cut -d' ' -f1; }

make_random "$T/a" $SIZE_MB
make_random "$T/b" $SIZE_MB
make_random "$T/c" 4
dd if="$T/a" of="$dev" bs=1M oflag=direct status=none
assert_eq "$(range_sum "$dev" 0 $SIZE_MB)" "$(sum_of "$T/a")" "volume v after writing pattern a"
holders=$(ctl 1 --json volume show v | json 'd["holders"]')
log "volume v is held by servers $holders"

# ---------------------------------------------------------------- create
out=$(ctl 1 snapshot create v s1 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && grep -q "unknown command 'snapshot.create'" <<<"$out"; then
	fail "peerd does not know snapshot.create yet (the peerd side of issue 15 has not landed): $out"
fi
[ "$rc" = 0 ] || fail "snapshot create v s1 failed (exit $rc): $out"
grep -qE '^snapshot v@s1 created \(hold mode, writes paused [0-9]+ ms\)$' <<<"$out" ||
	fail "snapshot create: unexpected output: $out"
log "$out"

# the volume moves on: pattern b everywhere
dd if="$T/b" of="$dev" bs=1M oflag=direct status=none
assert_eq "$(range_sum "$dev" 0 $SIZE_MB)" "$(sum_of "$T/b")" "volume v after writing pattern b"

# ---------------------------------------------------------------- the file appears
wait_path_exists "$T/m/v@s1" 5 || fail "v@s1 not in the mount 5 s after the snapshot was made"
assert_eq "$(stat -c %s "$T/m/v@s1")" $((SIZE_MB << 20)) "size of v@s1"
assert_eq "$(stat -c %a "$T/m/v@s1")" 444 "mode of v@s1"
[ -f "$T/m/v@s1" ] || fail "v@s1 is not a regular file"
created=$(ctl 1 --json snapshot show v s1 | json 'd["created"]')
assert_eq "$(stat -c %Y "$T/m/v@s1")" "$created" "mtime of v@s1 (the snapshot's creation)"
assert_eq "$(ls "$T/m" | tr '\n' ' ')" "v v@s1 " "mount root listing"

# its bytes: the image when the snapshot was made, read with O_DIRECT ...
got=$(dd if="$T/m/v@s1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$(sum_of "$T/a")" "v@s1 read with O_DIRECT (pattern a)"
# ... and through a read-only loop device
sdev=$(losetup -r --direct-io=on -f --show "$T/m/v@s1") || fail "losetup -r --direct-io=on $T/m/v@s1 failed"
pv_record loops "$sdev"
assert_eq "$(blockdev --getro "$sdev")" 1 "read-only flag of the snapshot's loop device"
assert_eq "$(range_sum "$sdev" 0 $SIZE_MB)" "$(sum_of "$T/a")" "v@s1 through losetup -r (pattern a)"
# the volume itself still reads pattern b
assert_eq "$(range_sum "$dev" 0 $SIZE_MB)" "$(sum_of "$T/b")" "volume v beside its snapshot"
log "v@s1 holds pattern a, v holds pattern b"

# ---------------------------------------------------------------- a second snapshot
ctl 1 snapshot create v s2 --mode hold --timeout 7s >/dev/null
dd if="$T/c" of="$dev" bs=1M seek=6 oflag=direct conv=notrunc status=none
wait_path_exists "$T/m/v@s2" 5 || fail "v@s2 not in the mount 5 s after the snapshot was made"
got=$(dd if="$T/m/v@s2" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$(sum_of "$T/b")" "v@s2 (pattern b)"
assert_eq "$(range_sum "$sdev" 0 $SIZE_MB)" "$(sum_of "$T/a")" "v@s1 after the second snapshot"
cmp <(dd if="$dev" bs=1M skip=6 count=4 iflag=direct status=none) "$T/c" ||
	fail "volume v does not read pattern c where it was written"
assert_eq "$(ls "$T/m" | tr '\n' ' ')" "v v@s1 v@s2 " "mount root listing with two snapshots"
names=$(ctl 1 --json snapshot list v | json '[(s["volume"], s["name"], s["mode"]) for s in d["snapshots"]]')
assert_eq "$names" '[["v", "s1", "hold"], ["v", "s2", "hold"]]' "snapshot list --json"

# ---------------------------------------------------------------- read-only
expect_fail_msg "Read-only file system" \
	dd if=/dev/zero of="$T/m/v@s1" bs=4096 count=1 oflag=direct conv=notrunc status=none
expect_fail_msg "Read-only file system" truncate -s 0 "$T/m/v@s1"
expect_fail_msg "Read-only file system" truncate -s $((SIZE_MB << 20)) "$T/m/v@s1"
expect_fail_msg "Read-only file system" \
	"$PYTHON" -c 'import os, sys; os.open(sys.argv[1], os.O_RDWR)' "$T/m/v@s1"
expect_fail_msg "Read-only file system" \
	"$PYTHON" -c 'import os, sys; os.open(sys.argv[1], os.O_RDONLY | os.O_TRUNC)' "$T/m/v@s1"
expect_fail_msg "Read-only file system" chmod 600 "$T/m/v@s1"
got=$(dd if="$T/m/v@s1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$(sum_of "$T/a")" "v@s1 after the refused writes"
log "writes, truncates and write opens of v@s1 fail with EROFS"

# ---------------------------------------------------------------- bad input
expect_ctl_error 1 6 "s1" snapshot create v s1
expect_ctl_error 1 5 "nope" snapshot create nope s1
expect_ctl_error 1 5 "s9" snapshot show v s9
expect_ctl_error 1 5 "s9" snapshot delete v s9
expect_ctl_error 1 1 "snapshot name 'a@b': character '@' at position 2" snapshot create v a@b
expect_ctl_error 1 1 "volume name 'a/b': character '/' at position 2" snapshot create a/b s3
expect_ctl_error 1 2 "missing arguments for 'snapshot create'" snapshot create v
assert_eq "$(ctl 1 --json snapshot list | json 'sorted(s["name"] for s in d["snapshots"])')" \
	'["s1", "s2"]' "snapshots after the refused creates"

# ---------------------------------------------------------------- delete
ctl 1 snapshot delete v s1 >/dev/null
wait_path_gone "$T/m/v@s1" 5 || fail "v@s1 still in the mount 5 s after the snapshot was deleted"
if dd if="$sdev" of=/dev/null bs=1M count=1 iflag=direct status=none 2>"$T/stale.err"; then
	fail "a read through the loop device on deleted snapshot s1 succeeded"
fi
log "read through the deleted snapshot's loop device failed: $(tail -n 1 "$T/stale.err")"
loop_detach "$sdev"
got=$(dd if="$T/m/v@s2" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$(sum_of "$T/b")" "v@s2 after s1 was deleted"

# a volume with snapshots goes only with them
loop_detach "$dev"
expect_fail_msg "snapshot" ctl 1 volume delete v --force
[ -e "$T/m/v@s2" ] || fail "a refused volume delete took v@s2 away"
ctl 1 volume delete v --with-snapshots --force >/dev/null
wait_path_gone "$T/m/v" 5 || fail "v still in the mount after volume delete --with-snapshots"
wait_path_gone "$T/m/v@s2" 5 || fail "v@s2 still in the mount after volume delete --with-snapshots"
assert_eq "$(ls -A "$T/m")" "" "mount root after the volume was deleted"
