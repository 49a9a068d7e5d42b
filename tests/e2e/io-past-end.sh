#!/usr/bin/env bash
# io-past-end: IO at the edge of a volume behaves like a file of fixed
# size: a read across the end is short, a read at or past the end returns
# nothing, a write past the end fails with EFBIG or ENOSPC and changes
# nothing, and the last bytes (also of a volume that is not a multiple of
# 4 KiB) read and write correctly. A name that is no volume is ENOENT.
. "$(dirname "$0")/common.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create edge 8M >/dev/null
ctl 1 volume create tiny 1536 >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"

"$PYTHON" - "$T/mnt" <<'EOF' || fail "IO at the end of a volume misbehaves (see above)"
import errno, os, sys

mnt = sys.argv[1]
bad = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        bad.append(what)


for name, size in (("edge", 8 << 20), ("tiny", 1536)):
    path = os.path.join(mnt, name)
    check(os.stat(path).st_size == size, f"{name}: st_size {os.stat(path).st_size} == {size}")
    fd = os.open(path, os.O_RDWR)
    tail = os.urandom(512)
    n = os.pwrite(fd, tail, size - 512)
    check(n == 512, f"{name}: write of the last 512 bytes wrote {n}")
    got = os.pread(fd, 4096, size - 512)
    check(got == tail, f"{name}: a 4096-byte read at size-512 returns the last 512 bytes ({len(got)} bytes)")
    check(os.pread(fd, 4096, size) == b"", f"{name}: a read at the end returns nothing")
    check(os.pread(fd, 4096, size + (1 << 20)) == b"", f"{name}: a read past the end returns nothing")
    for off, what in ((size, "at the end"), (size + 4096, "past the end"), (size - 256, "across the end")):
        try:
            n = os.pwrite(fd, b"x" * 512, off)
            if off < size:
                # a write across the end may be short (like a file's on a full disk)
                check(n == size - off, f"{name}: a write across the end wrote {n} bytes, at most {size - off}")
            else:
                check(False, f"{name}: a write {what} succeeded ({n} bytes)")
        except OSError as e:
            check(e.errno in (errno.EFBIG, errno.ENOSPC),
                  f"{name}: a write {what} fails with EFBIG or ENOSPC (got {errno.errorcode.get(e.errno, e.errno)})")
    check(os.stat(path).st_size == size, f"{name}: size unchanged after the writes past the end")
    got = os.pread(fd, 512, size - 512)
    if got != tail:
        # only the write across the end may have changed the last bytes
        check(got[:256] == tail[:256], f"{name}: bytes before the failed writes unchanged")
    os.close(fd)

try:
    os.open(os.path.join(mnt, "no-such-volume"), os.O_RDONLY)
    check(False, "opening a name that is no volume succeeded")
except OSError as e:
    check(e.errno == errno.ENOENT, f"opening a name that is no volume: ENOENT (got {errno.errorcode.get(e.errno)})")
try:
    os.open(os.path.join(mnt, "newfile"), os.O_RDWR | os.O_CREAT, 0o644)
    check(False, "creating a file in the mount succeeded")
except OSError as e:
    check(e.errno != 0, f"creating a file in the mount is refused ({errno.errorcode.get(e.errno)})")
sys.exit(1 if bad else 0)
EOF
