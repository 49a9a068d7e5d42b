#!/usr/bin/env bash
# ext4-files: ext4 on a loop device over a fused volume file holds a tree of
# files: copy with known sha256sums, sync, umount, fsck.ext4 -fn is clean,
# then with a new loop device on a new fused mount (nothing cached on the
# host side) the checksums match.
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 fsck.ext4 sha256sum losetup
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create vol 512M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
[ -f "$T/mnt/vol" ] || fail "$T/mnt/vol is not a regular file"
assert_eq "$(stat -c %s "$T/mnt/vol")" $((512 << 20)) "size of the volume file"

dev=$(loop_attach "$T/mnt/vol")
log "loop device $dev"
mkfs.ext4 -q -F -L pvtest "$dev" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; fail "mkfs.ext4 $dev failed"; }
mount_fs "$dev" "$T/fs"

# A tree of files with awkward sizes, and some real text files.
src=$T/src
mkdir -p "$src/a/b/c" "$src/empty-dir" "$src/docs"
: >"$src/zero-bytes"
head -c 1 /dev/urandom >"$src/one-byte"
head -c 4095 /dev/urandom >"$src/a/4095"
head -c 4096 /dev/urandom >"$src/a/4096"
head -c 4097 /dev/urandom >"$src/a/b/4097"
head -c $((1 << 20)) /dev/urandom >"$src/a/b/1M"
head -c $(((7 << 20) + 123)) /dev/urandom >"$src/a/b/c/7M+123"
head -c $((40 << 20)) /dev/urandom >"$src/big-40M"
for i in $(seq 1 200); do
	head -c $((RANDOM % 9000)) /dev/urandom >"$src/a/b/c/small-$i"
done
truncate -s 20M "$src/sparse-20M"
printf 'middle' | dd of="$src/sparse-20M" bs=1 seek=$((10 << 20)) conv=notrunc status=none
cp -r /usr/share/common-licenses "$src/docs/" 2>/dev/null || true
(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sums"
nfiles=$(wc -l <"$T/sums")
log "copying $nfiles files ($(du -sh "$src" | cut -f1))"

cp -a "$src/." "$T/fs/"
sync
(cd "$T/fs" && sha256sum --quiet -c "$T/sums") || fail "checksums differ right after the copy"
umount "$T/fs"

fsck.ext4 -fn "$dev" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "fsck.ext4 -fn $dev is not clean"; }
log "fsck.ext4 -fn clean"

# Forget everything on this side: loop device and fused mount (with it
# the FUSE file's page cache).
loop_detach "$dev"
umount_fused "$T/mnt"

mount_fused "$T/mnt2" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt2/vol")
fsck.ext4 -fn "$dev" >"$T/fsck2.out" 2>&1 || { cat "$T/fsck2.out" >&2; fail "fsck.ext4 -fn not clean on the second mount"; }
mount_fs "$dev" "$T/fs" -o ro
(cd "$T/fs" && sha256sum --quiet -c "$T/sums") || fail "checksums differ after remount"
assert_eq "$(cd "$T/fs" && find . -type f | wc -l)" "$(($(cd "$src" && find . -type f | wc -l) + 0))" "file count"
[ -d "$T/fs/empty-dir" ] || fail "empty-dir is missing after remount"
log "all $nfiles checksums match after remount"

v=$(ctl 1 --json volume show vol)
pw=$(json 'd["pages_written"]' <<<"$v")
[ "$pw" -gt 0 ] || fail "volume show reports pages_written $pw after writing"
umount "$T/fs"
