#!/usr/bin/env bash
# lazyfs-drops-unsynced: pvlazyfs (tests/tools/pvlazyfs.c), the power-cut
# file system of the power-loss tests, forgets exactly what was not made
# durable. After "drop": a write after the last fsync is gone and the
# fsynced one reads back; O_DSYNC and RWF_DSYNC writes survive; an
# unsynced punched hole, zeroed range, truncate or extension is undone and
# a hole written into is a hole again (SEEK_DATA); a file created and
# fsynced keeps its contents; a read-only mapping made before the drop sees
# the rolled-back bytes; "sync" and SIGUSR1 work; flock works.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/lazyfs-lib.sh"
need_fuse
need_bin "$PVLAZYFS"

mount_lazyfs "$T/back" "$T/lz"

"$PYTHON" - "$T/lz" "${LAZYFS_PID[$T/lz]}" <<'PYEOF' || fail "pvlazyfs did not roll back as expected (see above)"
import ctypes, fcntl, mmap, os, signal, sys, time

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
PUNCH_KEEP, ZERO_RANGE = 0x02 | 0x01, 0x10

def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

mnt, pid = sys.argv[1], int(sys.argv[2])
ctl = os.path.join(mnt, ".pvlazyfs-ctl")
P = 4096
bad = 0

def drop():
    with open(ctl, "w") as f:
        f.write("drop\n")

def check(what, got, want):
    global bad
    ok = got == want
    if not ok:
        bad += 1
    if isinstance(got, bytes) and len(got) > 16:
        got, want = "%d bytes %s" % (len(got), sorted(set(got))), "%d bytes %s" % (len(want), sorted(set(want)))
    print("%s: %s (got %s, want %s)" % ("ok" if ok else "FAIL", what, got, want), file=sys.stderr)

def path(n):
    return os.path.join(mnt, n)

def is_hole(fd, off, length):
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        return True  # ENXIO: no data after off
    return d >= off + length

# 1. fsynced A survives, unsynced B over it does not; nor does the extension
fd = os.open(path("one"), os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"A" * (3 * P), 0)
os.fsync(fd)
os.pwrite(fd, b"B" * (5 * P + 100), P // 2)
drop()
check("fsynced data after drop", os.pread(fd, 8 * P, 0), b"A" * (3 * P))
check("size after drop", os.fstat(fd).st_size, 3 * P)
os.close(fd)

# 2. O_DSYNC and RWF_DSYNC writes survive (on their own files: through
#    FUSE a DSYNC write is followed by an fsync of the whole file)
fd = os.open(path("dsync"), os.O_CREAT | os.O_RDWR | os.O_DSYNC, 0o644)
os.pwrite(fd, b"D" * 1000, 10)
os.close(fd)
fd = os.open(path("rwf"), os.O_CREAT | os.O_RDWR, 0o644)
os.pwritev(fd, [b"F" * (2 * P)], P, os.RWF_DSYNC)
drop()
with open(path("dsync"), "rb") as f:
    check("O_DSYNC write after drop", f.read(), b"\0" * 10 + b"D" * 1000)
check("RWF_DSYNC write after drop", os.pread(fd, 4 * P, 0), b"\0" * P + b"F" * (2 * P))
os.close(fd)

# 3. unsynced punch, zero range and truncate are undone; a synced punch stays
fd = os.open(path("holes"), os.O_CREAT | os.O_RDWR, 0o644)
data = bytes(range(256)) * (64 * P // 256)
os.pwrite(fd, data, 0)
os.fsync(fd)
fallocate(fd, PUNCH_KEEP, 4 * P, 8 * P)
check("punched range is a hole before drop", is_hole(fd, 4 * P, 8 * P), True)
fallocate(fd, ZERO_RANGE, 20 * P + 7, 3 * P)
os.ftruncate(fd, 40 * P + 5)
drop()
check("punch, zero range, truncate undone", os.pread(fd, 80 * P, 0), data)
check("no hole after the undone punch", is_hole(fd, 4 * P, P), False)
fallocate(fd, PUNCH_KEEP, 8 * P, 8 * P)
os.fdatasync(fd)
drop()
check("fdatasynced punch stays", os.pread(fd, 8 * P, 8 * P), b"\0" * (8 * P))
check("fdatasynced punch is a hole", is_hole(fd, 8 * P, 8 * P), True)

# 4. a hole written into unsynced is a hole again; a mapping sees the
#    rolled-back bytes
os.pwrite(fd, b"W" * (2 * P), 9 * P)
m = mmap.mmap(fd, 64 * P, mmap.MAP_SHARED, mmap.PROT_READ)
check("mapping sees the write", m[9 * P:11 * P], b"W" * (2 * P))
drop()
check("written hole is a hole again", is_hole(fd, 8 * P, 8 * P), True)
check("mapping sees the roll-back", m[8 * P:16 * P], b"\0" * (8 * P))
check("mapping elsewhere unchanged", m[0:4 * P], data[0:4 * P])
m.close()
os.close(fd)

# 5. created and fsynced survives; created, written, not synced: the name
#    stays (names are durable at once), the contents go
with open(path("made"), "wb") as f:
    f.write(b"M" * 5000)
    f.flush()
    os.fsync(f.fileno())
with open(path("lazy"), "wb") as f:
    f.write(b"L" * 5000)
os.mkdir(path("dir"))
with open(path("dir/renamed.tmp"), "wb") as f:
    f.write(b"R" * 100)
    f.flush()
    os.fsync(f.fileno())
os.rename(path("dir/renamed.tmp"), path("dir/renamed"))
with open(path("gone"), "wb") as f:
    f.write(b"G" * 100)
os.unlink(path("gone"))
drop()
check("created and fsynced", open(path("made"), "rb").read(), b"M" * 5000)
check("created, not fsynced", open(path("lazy"), "rb").read(), b"")
check("renamed after fsync", open(path("dir/renamed"), "rb").read(), b"R" * 100)
check("unlinked stays unlinked", os.path.exists(path("gone")), False)

# 6. sync (checkpoint) and SIGUSR1 (drop)
with open(path("lazy"), "r+b") as f:
    f.write(b"S" * 100)
with open(ctl, "w") as f:
    f.write("sync\n")
with open(path("lazy"), "r+b") as f:
    f.seek(50)
    f.write(b"U" * 100)
os.kill(pid, signal.SIGUSR1)
for _ in range(50):
    if "drops 7" in open(ctl).read():
        break
    time.sleep(0.1)
check("synced by the sync command, unsynced by SIGUSR1", open(path("lazy"), "rb").read(), b"S" * 100)

# 7. flock (the data directory lock of peerd)
a = os.open(path("lock"), os.O_CREAT | os.O_RDWR, 0o644)
b = os.open(path("lock"), os.O_RDWR)
fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
try:
    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    check("second flock refused", "taken", "refused")
except BlockingIOError:
    check("second flock refused", "refused", "refused")
print(open(ctl).read().strip(), file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF
log "pvlazyfs: all roll-back checks passed"
