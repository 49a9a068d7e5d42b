#!/usr/bin/env bash
# power-loss: peerd's data directory on pvlazyfs (tests/tools/pvlazyfs.c),
# which forgets every write not made durable when told "drop": a power cut
# of that server's disk. kill -9 alone keeps the kernel's page cache, so it
# cannot show a missing fsync; this can. Per round:
#
#   phase 1  fio through a loop device (--direct-io=on) over fused writes a
#            verify pattern with --fsync=16 and --end_fsync=1 (fio skips the
#            fsync after the very last write: 255 of 256; end_fsync covers
#            it, so every write is acknowledged before a completed flush);
#            fio --sync=dsync on the fused file of a second volume (O_DSYNC
#            open -> PV_F_FUA writes -> pwritev2(RWF_DSYNC), checked to reach
#            the data directory as O_DSYNC writes). Once, before the rounds,
#            --sync=dsync on the loop device too: the loop driver offers no
#            FUA, so the block layer makes each such write a write and a
#            flush (the log says how many O_DSYNC writes reached the data
#            directory: 0 on Linux 6.18)
#   phase 2  fio writes other data over the phase-1 range, never synced;
#            pvlazyfs must hold unsynced pages (else the test proves nothing)
#   crash    kill -9 peerd, then "drop": process and page cache die at the
#            same instant (drop while peerd lives would let it go on from
#            memory that the disk no longer matches, which no power cut does)
#   check    restart peerd on the same data dir: LMDB opens, catalog and
#            routing (peerctl volume show --routing --json) equal those before,
#            phase-1 and FUA data verify in full (fio --verify_only), so every
#            phase-2 write was rolled back and nothing acknowledged by a
#            flush or FUA was lost
#
# Then ext4 on a third volume: a writer creates files and fsyncs each (and
# the directory), noting each after its fsync returned; the crash strikes
# while it writes (peerd kill -9, drop, fused kill -9: the whole host goes
# down). After a restart and a fresh mount, journal replay (mount, umount)
# must leave fsck.ext4 -fn clean and every noted file intact.
#
# Environment: PV_POWER_ROUNDS (default 1) raw crash rounds and ext4 crash
# rounds each; e.g. PV_POWER_ROUNDS=20 for a longer run.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/lazyfs-lib.sh"
need_fuse
need_loop
need_cmd fio mkfs.ext4 fsck.ext4 sha256sum losetup
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVLAZYFS"

ROUNDS=${PV_POWER_ROUNDS:-1}
D1=$(data_of 1)

mount_lazyfs "$T/back1" "$D1"
run_peerd 1
ctl 1 volume create sync 64M >/dev/null
ctl 1 volume create fua 32M >/dev/null
ctl 1 volume create fs 256M >/dev/null
ctl 1 volume create rwf 1M >/dev/null # one RWF_DSYNC write, nothing else
# routing_of VOL: 'volume show VOL --routing --json' without the live numbers
# (pages written, bytes allocated, open clients): what LMDB must keep.
routing_of()
{
	ctl 1 volume show "$1" --routing --json >"$T/show.json" || fail "volume show $1 --routing --json failed"
	json '{k: v for k, v in d.items() if k not in ("pages_written", "bytes_allocated", "open_clients", "open_by")}' <"$T/show.json"
}
for v in sync fua fs; do routing_of "$v" >"$T/routing-$v.before"; done

mnt=$T/mnt
mount_fused "$mnt" "$(addr_of 1)"
dev=$(loop_attach "$mnt/sync")

# fio_job FILE NAME TARGET KEY=VALUE...: a one-job fio file.
fio_job()
{
	local file=$1 name=$2 target=$3
	shift 3
	{
		printf '[global]\nfilename=%s\ndirect=1\nioengine=libaio\ngroup_reporting=0\n' "$target"
		printf 'verify_state_save=0\n\n[%s]\n' "$name"
		printf '%s\n' "$@"
	} >"$file"
}

# run_fio WHAT JOBFILE [ARGS]: fio (in $T, for its state files) must exit 0
# with no job error; a verify run (WHAT v-*) must have read something.
run_fio()
{
	local what=$1 job=$2 json=$T/fio-$1.json
	shift 2
	(cd "$T" && timeout 120 fio --output-format=json --output="$json" "$@" "$job") ||
		{ cat "$json" >&2; fail "fio $what exited non-zero"; }
	"$PYTHON" - "$json" "$what" <<'PYEOF' || fail "$what: fio reported errors"
import json, sys
d = json.load(open(sys.argv[1]))
bad = False
for j in d["jobs"]:
    print("%s: %s error=%d read=%d KiB write=%d KiB" % (sys.argv[2], j["jobname"], j["error"],
          j["read"]["io_kbytes"], j["write"]["io_kbytes"]), file=sys.stderr)
    bad |= j["error"] != 0 or (sys.argv[2].startswith("v-") and j["read"]["io_kbytes"] == 0)
sys.exit(1 if bad else 0)
PYEOF
}

# The phase-1 jobs (SEED DO_VERIFY), verified later with --verify_only, the
# same seed and DO_VERIFY 1.
# 16 MiB of 4 KiB random writes = 4096 writes.
VERIFY=(verify=crc32c verify_fatal=1 verify_dump=0 randrepeat=1 norandommap=0)
phase1_sync() { fio_job "$T/p1-sync.fio" verify-sync "$dev" rw=randwrite bs=4k iodepth=16 \
	offset=0 size=16M io_size=16M fsync=16 end_fsync=1 randseed=$1 do_verify=$2 "${VERIFY[@]}"; }
phase1_fua() { fio_job "$T/p1-fua.fio" verify-fua "$mnt/fua" rw=randwrite bs=4k iodepth=8 \
	offset=0 size=8M io_size=8M sync=dsync randseed=$1 do_verify=$2 "${VERIFY[@]}"; }

dsync_before=$(lazy_stat "$D1" dsync_writes)
# A FUA write through the loop device: --sync=dsync on the block device.
fio_job "$T/loop-fua.fio" verify-loopfua "$dev" rw=write bs=64k iodepth=1 offset=32M size=4M \
	sync=dsync do_verify=0 "${VERIFY[@]}"
run_fio loop-fua "$T/loop-fua.fio"
sed -i 's/^do_verify=0/do_verify=1/' "$T/loop-fua.fio" # for --verify_only at the end
loop_fua_dsync=$(($(lazy_stat "$D1" dsync_writes) - dsync_before))
log "loop device --sync=dsync: $loop_fua_dsync O_DSYNC writes at pvlazyfs (0: the block layer made it write + flush)"

# A per-write FUA (pwritev2 RWF_DSYNC on a file opened without O_DSYNC, as
# databases do): durable when acknowledged, read back after the first crash.
# On a volume of its own: any later fsync of the same data file at pvlazyfs
# would make it durable anyway.
"$PYTHON" - "$mnt/rwf" "$T/rwf-block" <<'PYEOF' || fail "pwritev2(RWF_DSYNC) on the fused file failed"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 65536)
data = os.urandom(65536)
buf.write(data)
assert os.pwritev(fd, [buf], 0, os.RWF_DSYNC) == 65536
os.close(fd)
open(sys.argv[2], "wb").write(data)
PYEOF
rwf_checked=0

crash_and_restart()
{
	kill9_peerd 1
	lazy_ctl "$D1" drop
	run_peerd 1
}

for ((round = 1; round <= ROUNDS; round++)); do
	seed=$((4242 + round))
	phase1_sync "$seed" 0
	phase1_fua "$seed" 0
	fsyncs_before=$(lazy_stat "$D1" fsyncs)
	run_fio "p1-sync-$round" "$T/p1-sync.fio"
	log "round $round: phase 1 with --fsync=16: $(($(lazy_stat "$D1" fsyncs) - fsyncs_before)) fsyncs at pvlazyfs"
	dsync_before=$(lazy_stat "$D1" dsync_writes)
	run_fio "p1-fua-$round" "$T/p1-fua.fio"
	fua_dsync=$(($(lazy_stat "$D1" dsync_writes) - dsync_before))
	# 2048 FUA writes of 4 KiB (LMDB writes none meanwhile)
	[ "$fua_dsync" -ge 2048 ] || fail "FUA job: only $fua_dsync O_DSYNC writes reached the data directory"

	# phase 2: other data over the synced range, never synced
	fio_job "$T/p2.fio" garbage "$dev" rw=randwrite bs=4k iodepth=16 offset=0 size=16M \
		io_size=8M randseed=$((seed + 1000))
	run_fio "p2-$round" "$T/p2.fio"
	pages=$(lazy_stat "$D1" pages)
	[ "$pages" -ge 1024 ] || fail "after phase 2 only $pages unsynced pages: nothing to lose"
	log "round $round: $pages unsynced pages at the crash"

	crash_and_restart
	for v in sync fua fs; do
		routing_of "$v" >"$T/routing-$v.after"
		cmp -s "$T/routing-$v.before" "$T/routing-$v.after" ||
			fail "routing of $v changed across the power cut: $(diff "$T/routing-$v.before" "$T/routing-$v.after")"
	done
	phase1_sync "$seed" 1
	phase1_fua "$seed" 1
	run_fio "v-sync-$round" "$T/p1-sync.fio" --verify_only
	run_fio "v-fua-$round" "$T/p1-fua.fio" --verify_only
	if [ "$rwf_checked" = 0 ]; then
		cmp <(dd if="$mnt/rwf" bs=64k count=1 iflag=direct status=none) "$T/rwf-block" ||
			fail "a pwritev2(RWF_DSYNC) write acknowledged before the power cut is lost"
		rwf_checked=1
		log "round $round: a pwritev2(RWF_DSYNC) write survived the power cut"
	fi
	log "round $round: synced and FUA data intact, unsynced data rolled back, routing unchanged"
done
run_fio "v-loop-fua" "$T/loop-fua.fio" --verify_only
loop_detach "$dev"

# ---------------------------------------------------------------- ext4
# writer DIR LIST: creates files in DIR, fsyncs each and DIR, then appends
# "name sha256" to LIST (on the real disk); runs until killed or an error.
writer()
{
	"$PYTHON" - "$1" "$2" <<'PYEOF'
import hashlib, os, sys
d, lst = sys.argv[1], sys.argv[2]
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
i = 0
with open(lst, "a") as out:
    while True:
        i += 1
        name = "f%06d" % i
        data = os.urandom(4096 * (1 + i % 37) + i % 1000)
        fd = os.open(os.path.join(d, name), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.fsync(dfd)
        out.write("%s %s\n" % (name, hashlib.sha256(data).hexdigest()))
        out.flush()
PYEOF
}

n=0
for ((round = 1; round <= ROUNDS; round++)); do
	n=$((n + 1))
	fmnt=$T/fmnt$n
	mount_fused "$fmnt" "$(addr_of 1)"
	dev=$(loop_attach "$fmnt/fs")
	if [ "$round" = 1 ]; then
		mkfs.ext4 -q -F "$dev" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; fail "mkfs.ext4 failed"; }
		sync "$dev"
	fi
	mount_fs "$dev" "$T/ext4-$n"
	mkdir -p "$T/ext4-$n/r$round"
	sync -f "$T/ext4-$n"
	writer "$T/ext4-$n/r$round" "$T/list-$round" 2>"$T/writer-$round.err" &
	wpid=$!
	sleep $((2 + RANDOM % 3))
	kill -0 "$wpid" 2>/dev/null || { cat "$T/writer-$round.err" >&2; fail "the writer stopped before the crash"; }
	# the power cut: server and its disk cache, then the client host
	kill9_peerd 1
	lazy_ctl "$D1" drop
	kill -KILL "${FUSED_PID[$fmnt]}"
	wait "${FUSED_PID[$fmnt]}" 2>/dev/null || true
	kill "$wpid" 2>/dev/null || true
	wait "$wpid" 2>/dev/null || true
	umount -l "$T/ext4-$n" 2>/dev/null || true
	pv_forget mounts "$T/ext4-$n"
	losetup -d "$dev" 2>/dev/null || true
	pv_forget loops "$dev"
	pv_unmount_fused "$fmnt"
	pv_forget fusemounts "$fmnt"
	nfiles=$(wc -l <"$T/list-$round")
	log "ext4 round $round: crash after $nfiles files fsynced"
	[ "$nfiles" -gt 0 ] || fail "the writer fsynced no file before the crash"

	run_peerd 1
	n=$((n + 1))
	fmnt=$T/fmnt$n
	mount_fused "$fmnt" "$(addr_of 1)"
	dev=$(loop_attach "$fmnt/fs")
	mount_fs "$dev" "$T/ext4-$n" # journal replay
	for ((r = 1; r <= round; r++)); do
		(cd "$T/ext4-$n/r$r" && awk '{ print $2 "  " $1 }' "$T/list-$r" | sha256sum --quiet -c -) ||
			fail "ext4 round $round: files fsynced before a crash are missing or differ (list $r)"
	done
	umount "$T/ext4-$n"
	pv_forget mounts "$T/ext4-$n"
	fsck.ext4 -fn "$dev" >"$T/fsck-$round.out" 2>&1 ||
		{ cat "$T/fsck-$round.out" >&2; fail "ext4 round $round: fsck.ext4 -fn not clean after journal replay"; }
	log "ext4 round $round: journal replayed, fsck clean, $nfiles fsynced files intact"
	loop_detach "$dev"
	umount_fused "$fmnt"
	pv_forget fusemounts "$fmnt"
done
for v in sync fua fs; do
	routing_of "$v" >"$T/routing-$v.after"
	cmp -s "$T/routing-$v.before" "$T/routing-$v.after" || fail "routing of $v changed across the ext4 crashes"
done
