#!/usr/bin/env bash
# snapshot-ext4: a file system on a volume is crash-consistent in every
# snapshot, in both modes (issue 15). ext4 on a loop device over a volume
# spread on three servers takes files under a steady writer (each file
# written, fsync'ed, named after its sha256); a hold-mode and a
# timestamp-mode snapshot are made through different servers meanwhile.
# Each snapshot's image, copied out through the read-only file
# MOUNT/vol@NAME, must replay its journal and then pass e2fsck -fn clean,
# and every file in it but the one being written at the cut must match its
# name's sha256. The snapshot file is read-only (EROFS).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 e2fsck sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_weighted 1 1 1
ctl 1 volume create vol 128M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"
dev=$(loop_attach "$T/mnt/vol")
mkfs.ext4 -q -F "$dev" >/dev/null 2>&1 || fail "mkfs.ext4 on $dev failed"
mount_fs "$dev" "$T/fs"

# the writer: files of 4-200 KiB, each fsync'ed before the next
cat >"$T/writer.py" <<'EOF'
import hashlib, os, random, sys
d, stop = sys.argv[1:3]
i = 0
while not os.path.exists(stop):
    data = os.urandom(random.randrange(1, 50) * 4096)
    tmp = os.path.join(d, "tmp.%d" % i)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(d, "f%05d-%s" % (i, hashlib.sha256(data).hexdigest())))
    i += 1
    if i % 300 == 0:  # keep the file system from filling
        for n in sorted(os.listdir(d))[:150]:
            os.unlink(os.path.join(d, n))
EOF
"$PYTHON" "$T/writer.py" "$T/fs" "$T/stop" &
writer=$!
pv_record pids "$writer"
sleep 2
ctl 2 snapshot create vol held --mode hold >/dev/null || fail "hold-mode snapshot failed"
sleep 1
ctl 3 snapshot create vol stamped --mode timestamp >/dev/null ||
	fail "timestamp-mode snapshot failed"
sleep 1
touch "$T/stop"
wait "$writer" || fail "the writer failed"
pv_forget pids "$writer"
log "writer made $(find "$T/fs" -name 'f*' | wc -l) files (some deleted on the way)"

# the snapshot files are read-only
wait_path_exists "$T/mnt/vol@held"
expect_fail_msg "read-only" dd if=/dev/zero of="$T/mnt/vol@held" bs=4K count=1 conv=notrunc \
	status=none

for name in held stamped; do
	wait_path_exists "$T/mnt/vol@$name"
	dd if="$T/mnt/vol@$name" of="$T/$name.img" bs=1M iflag=direct status=none ||
		fail "cannot copy vol@$name"
	# the journal replays (as after a crash), then the file system is clean
	e2fsck -E journal_only -y "$T/$name.img" >"$T/$name.replay" 2>&1 || true
	e2fsck -fn "$T/$name.img" >"$T/$name.fsck" 2>&1 ||
		fail "vol@$name is not a clean file system after journal replay: $(tail -5 "$T/$name.fsck")"
	mkdir -p "$T/$name.dir"
	mount -o ro,loop,noload "$T/$name.img" "$T/$name.dir" || fail "cannot mount vol@$name"
	pv_record mounts "$T/$name.dir"
	bad=$(cd "$T/$name.dir" && for f in f*; do
		[ -e "$f" ] || continue
		[ "$(sha256sum <"$f" | cut -d' ' -f1)" = "${f#*-}" ] || echo "$f"
	done)
	files=$(find "$T/$name.dir" -name 'f*' | wc -l)
	umount "$T/$name.dir"
	pv_forget mounts "$T/$name.dir"
	[ "$files" -gt 0 ] || fail "vol@$name holds no files"
	[ -z "$bad" ] || fail "vol@$name: files whose content is not their sha256: $bad"
	log "vol@$name: clean after journal replay, $files files intact"
done
