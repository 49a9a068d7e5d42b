#!/usr/bin/env bash
# kill9-restart: data written and flushed through the loop device survives
# kill -9 of peerd; after a restart on the same --data, fused reconnects by
# itself, a read issued while the server was down completes (a delay, not
# an error), the data verifies and new writes work. Then the same with
# ext4 on top: files synced before the crash are intact after it.
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 cmp sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create raw 64M >/dev/null
ctl 1 volume create fs 256M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt/raw")

# ---------------------------------------------------------------- raw device
make_random "$T/a" 24
dd if="$T/a" of="$dev" bs=1M oflag=direct status=none
sync "$dev" # fsync on the loop device -> FLUSH to peerd
blockdev --flushbufs "$dev"
log "24 MiB written and flushed"

kill9_peerd 1
# A read while the server is down must wait for it, not fail.
dd if="$dev" bs=1M count=24 iflag=direct of="$T/during" status=none 2>"$T/during.err" &
reader=$!
sleep 3
kill -0 $reader 2>/dev/null || {
	wait $reader && rc=0 || rc=$?
	fail "the read issued while peerd was down ended (status $rc: $(cat "$T/during.err")) before peerd came back"
}
run_peerd 1
wait $reader || fail "the read issued while peerd was down failed: $(cat "$T/during.err")"
cmp "$T/during" "$T/a" || fail "the read issued while peerd was down returned wrong data"
log "the read in flight across the restart completed with the right data"

cmp <(dd if="$dev" bs=1M count=24 iflag=direct status=none) "$T/a" ||
	fail "flushed data differs after kill -9 and restart"
make_random "$T/b" 8
dd if="$T/b" of="$dev" bs=1M seek=40 oflag=direct conv=fsync status=none ||
	fail "a write after the restart failed"
cmp <(dd if="$dev" bs=1M skip=40 count=8 iflag=direct status=none) "$T/b" ||
	fail "a write after the restart does not read back"
log "raw: data verified and new writes work after kill -9"

# A second crash right after that write: it was flushed (conv=fsync), so it
# must survive too.
kill9_peerd 1
run_peerd 1
cmp <(dd if="$dev" bs=1M skip=40 count=8 iflag=direct status=none) "$T/b" ||
	fail "the write flushed after the first restart was lost in the second crash"
cmp <(dd if="$dev" bs=1M count=24 iflag=direct status=none) "$T/a" ||
	fail "the first data was lost in the second crash"
loop_detach "$dev"

# ---------------------------------------------------------------- ext4
dev=$(loop_attach "$T/mnt/fs")
mkfs.ext4 -q -F "$dev" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; fail "mkfs.ext4 failed"; }
mount_fs "$dev" "$T/ext4"
mkdir -p "$T/src"
for i in $(seq 1 20); do head -c $((RANDOM * 50)) /dev/urandom >"$T/src/f$i"; done
(cd "$T/src" && sha256sum f*) >"$T/sums"
cp "$T/src"/f* "$T/ext4/"
sync -f "$T/ext4"
log "ext4: 20 files synced"

kill9_peerd 1
sleep 1
run_peerd 1
(cd "$T/ext4" && sha256sum --quiet -c "$T/sums") || fail "ext4 files differ after kill -9"
echo after >"$T/ext4/new-file"
sync -f "$T/ext4"
umount "$T/ext4"
fsck.ext4 -fn "$dev" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "fsck.ext4 -fn not clean after kill -9"; }
mount_fs "$dev" "$T/ext4" -o ro
(cd "$T/ext4" && sha256sum --quiet -c "$T/sums") || fail "ext4 files differ after remount"
assert_eq "$(cat "$T/ext4/new-file")" after "file written after the restart"
umount "$T/ext4"
log "ext4: files verified, fsck clean after kill -9"
