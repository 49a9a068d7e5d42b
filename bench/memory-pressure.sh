#!/usr/bin/env bash
# memory-pressure.sh: a loop device on a fused volume file does not deadlock
# under memory pressure. peerd, fused and fio all run in one cgroup v2 with a
# tight memory.max (default 256M, far below the 1 GiB volume); fio writes the
# whole volume through the page cache of the loop device (buffered, so that
# reclaim inside the cgroup has to write back through loop -> fused -> peerd,
# the processes that need the memory) and reads it back with verify=crc32c,
# then does the same with direct random writes over half of it. Passing means: fio completes
# within the timeout with no errors, no process of the cgroup is OOM-killed,
# peerd and fused are still running. The set-up is the recommended one
# (docs/performance.md): losetup --direct-io=on, fused without data caching.
#
# Exit codes: 0 pass, 1 fail, 77 skip (reason on stdout).
# Environment:
#   PV_BUILD            build tree (default: build-bench, else build)
#   PV_MEMTEST_MAX      memory.max of the cgroup (default 256M)
#   PV_MEMTEST_SIZE     volume size (default 1G)
#   PV_MEMTEST_TIMEOUT  seconds fio may take in all (default 600)
#   PV_KEEP=1           keep the temp dir
#   PV_MEMTEST_NO_CGROUP=1  run the same load with no cgroup and no limit
#                       (to check the harness itself; proves nothing)
# Only cgroup v2 mounted at /sys/fs/cgroup with the memory controller
# available is used; anything else skips (a cgroup v1 machine, a container
# without a writable cgroup).

set -u -o pipefail

NAME=memory-pressure
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PV_BUILD:-}" ]; then
	PV_BUILD=$REPO/build-bench
	[ -x "$PV_BUILD/fused/fused" ] || PV_BUILD=$REPO/build
fi
PEERD=$PV_BUILD/peerd/peerd
PEERCTL=$PV_BUILD/peerd/ctl/peerctl
FUSED=$PV_BUILD/fused/fused
MEM_MAX=${PV_MEMTEST_MAX:-256M}
SIZE=${PV_MEMTEST_SIZE:-1G}
TIMEOUT=${PV_MEMTEST_TIMEOUT:-600}
CGROOT=/sys/fs/cgroup

log() { printf '[%s %s] %s\n' "$NAME" "$(date +%T)" "$*" >&2; }
skip() {
	echo "SKIP: $NAME: $*"
	exit 77
}
fail() {
	echo "FAIL: $NAME: $*" >&2
	failed=1
	exit 1
}

# ---- preconditions -----------------------------------------------------

[ "$(id -u)" = 0 ] || skip "needs root (cgroups, FUSE mounts, loop devices)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
[ -e /dev/loop-control ] || skip "no /dev/loop-control"
for c in fio fusermount3 losetup python3; do
	command -v $c >/dev/null || skip "'$c' is not installed"
done
for b in "$PEERD" "$PEERCTL" "$FUSED"; do
	[ -x "$b" ] || skip "$b was not built (PV_BUILD=$PV_BUILD)"
done
nocg=${PV_MEMTEST_NO_CGROUP:-0}
fstype=$(stat -f -c %T "$CGROOT" 2>/dev/null)
[ "$nocg" = 1 ] || [ "$fstype" = cgroup2fs ] ||
	skip "$CGROOT is not cgroup v2 (it is '$fstype'; a hybrid or v1 hierarchy has no memory.max)"
# Our own cgroup: a child of it keeps every limit that already applies to us.
parent=$CGROOT$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
[ "$nocg" = 1 ] || [ -d "$parent" ] || skip "cannot find our cgroup v2 directory ($parent)"
[ "$nocg" = 1 ] || grep -qw memory "$parent/cgroup.controllers" 2>/dev/null ||
	skip "the memory controller is not available in $parent"
[ "$nocg" = 1 ] || grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null ||
	skip "the memory controller is not enabled for children of $parent (cgroup.subtree_control)"
[ "$nocg" = 1 ] || [ -w "$parent" ] || skip "$parent is not writable"

# ---- state and cleanup -------------------------------------------------

T=$(mktemp -d "${TMPDIR:-/var/tmp}/pv-$NAME.XXXXXX") # on disk: page cache must be reclaimable
CG=$parent/pv-$NAME.$$
[ "$nocg" = 1 ] && CG=""
PIDS=()
loop=""
mnt=$T/mnt
failed=0
cleanup() {
	local rc=$? pid n
	trap - EXIT INT TERM
	# Lift the limit first, so that nothing stays stuck in reclaim while
	# it is torn down.
	[ -n "$CG" ] && [ -d "$CG" ] && echo max >"$CG/memory.max" 2>/dev/null
	if [ -n "$loop" ]; then
		losetup -d "$loop" 2>/dev/null || { sleep 1; losetup -d "$loop" 2>/dev/null; }
	fi
	if awk -v p="$mnt" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		timeout 20 fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	fi
	for ((n = ${#PIDS[@]} - 1; n >= 0; n--)); do
		pid=${PIDS[n]}
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; continue; }
		kill -TERM "$pid" 2>/dev/null
		for ((k = 0; k < 50; k++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		for ((k = 0; k < 50; k++)); do
			rmdir "$CG" 2>/dev/null && break
			sleep 0.1
		done
		[ -d "$CG" ] && echo "warning: could not remove $CG" >&2
	fi
	[ "$rc" != 0 ] && [ "$rc" != 77 ] && failed=1
	if [ $failed = 1 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $(basename "$f") (last 40 lines) -----" >&2
			tail -n 40 "$f" >&2
		done
		[ "$rc" = 0 ] && rc=1
	fi
	if [ "${PV_KEEP:-0}" = 1 ]; then
		echo "kept $T" >&2
	else
		rm -rf --one-file-system "$T"
	fi
	[ "$rc" = 0 ] && echo "PASS: $NAME"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "$CG" ]; then
	mkdir "$CG" || skip "cannot create $CG"
	echo "$MEM_MAX" >"$CG/memory.max" || fail "cannot set memory.max=$MEM_MAX"
	[ -e "$CG/memory.swap.max" ] && echo 0 >"$CG/memory.swap.max"
	log "cgroup $CG, memory.max $(cat "$CG/memory.max")"
else
	log "PV_MEMTEST_NO_CGROUP=1: no cgroup, no memory limit (harness check only)"
fi

# "${INCG[@]}" CMD...: runs CMD inside the cgroup (the shell moves itself in,
# then execs CMD, so $! of a background start is CMD's PID).
INCG=()
# shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
[ -n "$CG" ] && INCG=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG")

# ---- the volume --------------------------------------------------------

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=tcp://127.0.0.1:$port
sock=$T/c1.sock
mkdir -p "$T/d1" "$mnt"
"${INCG[@]}" "$PEERD" --id 1 --listen "$addr" --data "$T/d1" --control "$sock" </dev/null >"$T/peerd1.log" 2>&1 &
peerd_pid=$!
PIDS+=("$peerd_pid")
for ((k = 0; k < 300; k++)); do
	[ -S "$sock" ] && "$PEERCTL" -s "$sock" status >/dev/null 2>&1 && break
	kill -0 "$peerd_pid" 2>/dev/null || fail "peerd exited before it was ready"
	sleep 0.1
done
"$PEERCTL" -s "$sock" volume create vol "$SIZE" >"$T/peerctl.log" 2>&1 || fail "volume create failed: $(cat "$T/peerctl.log")"

"${INCG[@]}" "$FUSED" --group "$addr" -f "$mnt" </dev/null >"$T/fused.log" 2>&1 &
fused_pid=$!
PIDS+=("$fused_pid")
for ((k = 0; k < 300; k++)); do
	[ -e "$mnt/vol" ] && break
	kill -0 "$fused_pid" 2>/dev/null || fail "fused exited before the mount was ready"
	sleep 0.1
done
[ -e "$mnt/vol" ] || fail "no $mnt/vol after 30 s"
loop=$(losetup --direct-io=on -f --show "$mnt/vol") || fail "losetup --direct-io=on failed"
log "peerd $peerd_pid, fused $fused_pid, $loop (dio $(cat "/sys/block/${loop#/dev/}/loop/dio"))"

# ---- the load ------------------------------------------------------------

cat >"$T/pressure.fio" <<EOF
[global]
filename=$loop
ioengine=libaio
verify=crc32c
verify_fatal=1
verify_dump=0
randrepeat=1
randseed=77
group_reporting=0

# The whole volume through the loop device's page cache: dirty pages are
# charged to the cgroup and can only be freed by writing them through fused.
[buffered-fill]
rw=write
direct=0
bs=1M
iodepth=4
end_fsync=1
do_verify=1

# Then direct random writes over the first half, read back and verified.
[direct-random]
stonewall
rw=randwrite
direct=1
bs=64k
iodepth=32
size=50%
do_verify=1
EOF
t0=$(date +%s)
"${INCG[@]}" timeout -k 10 "$TIMEOUT" fio --output-format=json --output="$T/fio.json" \
	"$T/pressure.fio" >"$T/fio.log" 2>&1
rc=$?
t1=$(date +%s)
events=$( [ -n "$CG" ] && tr '\n' ' ' <"$CG/memory.events")
peak=$( [ -n "$CG" ] && cat "$CG/memory.peak" 2>/dev/null || echo "?")
log "fio exit $rc after $((t1 - t0)) s; memory.events: $events; memory.peak: $peak"
[ $rc = 124 ] || [ $rc = 137 ] && fail "fio did not complete within $TIMEOUT s under memory.max=$MEM_MAX (a stall or deadlock)"
[ $rc = 0 ] || fail "fio exited $rc: $(tail -n 5 "$T/fio.log")"
python3 - "$T/fio.json" <<'EOF' || fail "fio reported errors"
import json, sys
d = json.load(open(sys.argv[1]))
bad = False
for j in d["jobs"]:
    print("%s: error=%d write=%d MiB read=%d MiB" % (j["jobname"], j["error"],
          j["write"]["io_kbytes"] >> 10, j["read"]["io_kbytes"] >> 10), file=sys.stderr)
    bad |= j["error"] != 0
sys.exit(1 if bad else 0)
EOF
[ -n "$CG" ] || exit 0
oom=$(awk '$1 == "oom_kill" {print $2}' "$CG/memory.events")
[ "${oom:-0}" = 0 ] || fail "$oom process(es) OOM-killed in the cgroup (memory.max=$MEM_MAX)"
kill -0 "$peerd_pid" 2>/dev/null || fail "peerd died under memory pressure"
kill -0 "$fused_pid" 2>/dev/null || fail "fused died under memory pressure"
high=$(awk '$1 == "max" {print $2}' "$CG/memory.events")
[ "${high:-0}" -gt 0 ] || log "note: memory.max was never reached (events: $events); raise PV_MEMTEST_SIZE or lower PV_MEMTEST_MAX"
exit 0
