#!/usr/bin/env bash
# memory-pressure.sh: a loop device on a fused volume file does not deadlock
# under memory pressure. The workload (fio) runs in a memory cgroup with a
# tight limit, and peerd and fused outside it, as their systemd services
# would (packaging/systemd): the limit (default 256M, far below the 1 GiB volume): memory.max
# with cgroup v2, memory.limit_in_bytes with cgroup v1; fio writes the
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
#   PV_BUILD            build tree (default: build-bench, else build); the
#                       e2e wrapper tests/e2e/memory-pressure.sh gets it
#                       from ctest
#   PV_MEMTEST_MAX      memory limit of the cgroup (default 256M; v1 takes
#                       the same K/M/G suffixes as v2)
#   PV_MEMTEST_SIZE     volume size (default 1G)
#   PV_MEMTEST_RANDOM   share of the volume the direct random writes cover
#                       (fio size=, default 50%)
#   PV_MEMTEST_TIMEOUT  seconds fio may take in all (default 600)
#   PV_MEMTEST_FUSED_ARGS  extra fused options, split on blanks (e.g. --mlock)
#   PV_MEMTEST_REQUIRE_PRESSURE=1  fail (instead of a note) when the limit was
#                       never reached, i.e. the run put no pressure on reclaim
#   PV_KEEP=1           keep the temp dir
#   PV_MEMTEST_DAEMONS_IN_CGROUP=1  put peerd and fused in the limited cgroup
#                       too. This deadlocks (reclaim in the cgroup waits for
#                       writeback that only fused can do, and fused's own
#                       allocations are charged to the same cgroup) unless
#                       fused is an IO flusher (PR_SET_IO_FLUSHER, needs
#                       CAP_SYS_RESOURCE); never deploy them that way
#   PV_MEMTEST_NO_CGROUP=1  run the same load with no cgroup and no limit
#                       (to check the harness itself; proves nothing)
# The cgroup is a child of our own memory cgroup:
#   - cgroup v2 (/sys/fs/cgroup is cgroup2fs): the memory controller must be
#     available and enabled for children of our cgroup ("0::" line of
#     /proc/self/cgroup); memory.max, memory.swap.max=0, memory.events
#     (oom_kill, max), memory.peak.
#   - cgroup v1 or hybrid (/sys/fs/cgroup/memory is a v1 memory hierarchy):
#     our cgroup is the "memory" line of /proc/self/cgroup;
#     memory.limit_in_bytes (and memory.memsw.limit_in_bytes to the same
#     value where it exists: no swap), memory.oom_control (oom_kill),
#     memory.failcnt (times the limit was hit), memory.max_usage_in_bytes.
# Anything else skips (no writable memory cgroup, e.g. in a container).

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
read -r -a FUSED_ARGS <<<"${PV_MEMTEST_FUSED_ARGS:-}"
# CGV: 2 (cgroup v2), 1 (v1 memory hierarchy) or "" (no cgroup).
# Our own cgroup ($parent): a child of it keeps every limit that already
# applies to us.
CGV=""
parent=""
if [ "$nocg" != 1 ]; then
	fstype=$(stat -f -c %T "$CGROOT" 2>/dev/null)
	if [ "$fstype" = cgroup2fs ]; then
		parent=$CGROOT$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
		[ -d "$parent" ] || skip "cannot find our cgroup v2 directory ($parent)"
		grep -qw memory "$parent/cgroup.controllers" 2>/dev/null ||
			skip "the memory controller is not available in $parent"
		grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null ||
			skip "the memory controller is not enabled for children of $parent (cgroup.subtree_control)"
		[ -w "$parent" ] || skip "$parent is not writable"
		CGV=2
	else
		v1=$CGROOT/memory
		v1type=$(stat -f -c %T "$v1" 2>/dev/null)
		if [ "$v1type" != cgroupfs ] || [ ! -e "$v1/memory.limit_in_bytes" ]; then
			skip "no usable memory cgroup: $CGROOT is '${fstype:-missing}', not cgroup2fs, and $v1 is '${v1type:-missing}', not a cgroup v1 memory hierarchy"
		fi
		# The memory line of /proc/self/cgroup ("4:memory:/a/b"; the
		# controller list may name others too when they are co-mounted).
		rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
		[ -n "$rel" ] || skip "no memory line in /proc/self/cgroup (cgroup v1)"
		parent=$v1${rel%/}
		[ -d "$parent" ] || skip "cannot find our cgroup v1 memory directory ($parent)"
		[ -w "$parent" ] || skip "$parent is not writable"
		CGV=1
	fi
fi

# ---- state and cleanup -------------------------------------------------

T=$(mktemp -d "${TMPDIR:-/var/tmp}/pv-$NAME.XXXXXX") # on disk: page cache must be reclaimable
CG=""
[ -n "$CGV" ] && CG=$parent/pv-$NAME.$$
PIDS=()
loop=""
fuse_conn="" # minor of the FUSE mount's st_dev = its /sys/fs/fuse/connections id
stalled=0
mnt=$T/mnt
failed=0
# running PID: PID still has a thread that is not a zombie (a process whose
# main thread exited while another sits in D state is a zombie leader that
# `wait` would block on for ever).
running() {
	local st
	for st in /proc/"$1"/task/*/stat; do
		[ "$(sed 's/.*) //; s/ .*//' "$st" 2>/dev/null)" = Z ] || [ ! -e "$st" ] || return 0
	done
	return 1
}
# wait_gone PID TENTHS: polls until PID is no longer running.
wait_gone() {
	local k
	for ((k = 0; k < $2; k++)); do
		running "$1" || return 0
		sleep 0.1
	done
	! running "$1"
}
# fuse_abort: aborts our FUSE connection (/sys/fs/fuse/connections/N/abort),
# failing every request in flight. It is the only way out of the deadlock
# this test looks for: fused's threads wait in reclaim for writeback that
# only they can complete, SIGKILL does not reach them, and neither loop nor
# the mount can be released while they wait. Mounts fusectl if needed (and
# unmounts it again at the end).
fusectl_mounted=0
fuse_abort() {
	local d=/sys/fs/fuse/connections
	[ -n "$fuse_conn" ] || return 1
	if [ ! -e "$d/$fuse_conn" ] && [ -d "$d" ] && ! awk -v p="$d" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		mount -t fusectl fusectl "$d" 2>/dev/null && fusectl_mounted=1
	fi
	[ -e "$d/$fuse_conn/abort" ] || return 1
	log "aborting FUSE connection $fuse_conn ($(cat "$d/$fuse_conn/waiting" 2>/dev/null) requests waiting)"
	echo 1 >"$d/$fuse_conn/abort"
	fuse_conn=""
}
cleanup() {
	local rc=$? pid n
	trap - EXIT INT TERM
	# Lift the limit first, so that nothing new gets stuck in reclaim while
	# it is torn down (processes already waiting there stay stuck).
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		if [ "$CGV" = 2 ]; then
			echo max >"$CG/memory.max" 2>/dev/null
		else # memsw first: memory.limit_in_bytes may never exceed it
			[ -e "$CG/memory.memsw.limit_in_bytes" ] && echo -1 >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null
			echo -1 >"$CG/memory.limit_in_bytes" 2>/dev/null
		fi
	fi
	# A stall: nothing will make progress until the FUSE requests fail.
	[ "$stalled" = 1 ] && fuse_abort
	if [ -n "$loop" ]; then
		losetup -d "$loop" 2>/dev/null || { sleep 1; losetup -d "$loop" 2>/dev/null; }
	fi
	if awk -v p="$mnt" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		timeout 20 fusermount3 -u "$mnt" 2>/dev/null || { fuse_abort; umount -l "$mnt" 2>/dev/null; }
	fi
	for ((n = ${#PIDS[@]} - 1; n >= 0; n--)); do
		pid=${PIDS[n]}
		if running "$pid"; then
			kill -TERM "$pid" 2>/dev/null
			wait_gone "$pid" 50 || { kill -KILL "$pid" 2>/dev/null; wait_gone "$pid" 50; } ||
				{ fuse_abort && wait_gone "$pid" 100; } ||
				{ echo "warning: pid $pid ($(cat /proc/"$pid"/comm 2>/dev/null)) does not exit (D state), left behind" >&2; continue; }
		fi
		wait "$pid" 2>/dev/null
	done
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		# Whatever else is still in the cgroup: only processes we started
		# (e.g. fio's job processes after timeout killed fio) -- kill them by
		# PID; what cannot die goes back to our own cgroup, so that rmdir
		# can work (v1; v2 only lets it go when $parent may hold processes).
		for pid in $(cat "$CG/cgroup.procs" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null
		done
		for pid in $(cat "$CG/cgroup.procs" 2>/dev/null); do
			wait_gone "$pid" 50 || { fuse_abort && wait_gone "$pid" 50; }
			running "$pid" && echo "$pid" >"$parent/cgroup.procs" 2>/dev/null
		done
		for ((k = 0; k < 50; k++)); do
			rmdir "$CG" 2>/dev/null && break
			sleep 0.1
		done
		[ -d "$CG" ] && echo "warning: could not remove $CG" >&2
	fi
	[ "$fusectl_mounted" = 1 ] && umount /sys/fs/fuse/connections 2>/dev/null
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

if [ "$CGV" = 2 ]; then
	mkdir "$CG" || skip "cannot create $CG"
	echo "$MEM_MAX" >"$CG/memory.max" || fail "cannot set memory.max=$MEM_MAX"
	[ -e "$CG/memory.swap.max" ] && echo 0 >"$CG/memory.swap.max"
	log "cgroup v2 $CG, memory.max $(cat "$CG/memory.max")"
elif [ "$CGV" = 1 ]; then
	mkdir "$CG" || skip "cannot create $CG"
	echo "$MEM_MAX" >"$CG/memory.limit_in_bytes" || fail "cannot set memory.limit_in_bytes=$MEM_MAX"
	# No swap either, where swap is accounted (best effort: the kernel may
	# have swap accounting off, and there may be no swap at all).
	[ -e "$CG/memory.memsw.limit_in_bytes" ] &&
		echo "$MEM_MAX" >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null
	log "cgroup v1 $CG, memory.limit_in_bytes $(cat "$CG/memory.limit_in_bytes")," \
		"memsw $(cat "$CG/memory.memsw.limit_in_bytes" 2>/dev/null || echo -)," \
		"use_hierarchy $(cat "$CG/memory.use_hierarchy" 2>/dev/null || echo -)"
else
	log "PV_MEMTEST_NO_CGROUP=1: no cgroup, no memory limit (harness check only)"
fi

# "${INCG[@]}" CMD...: runs CMD inside the cgroup (the shell moves itself in,
# then execs CMD, so $! of a background start is CMD's PID).
INCG=()
# shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
[ -n "$CG" ] && INCG=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG")
# the daemons: outside the limit unless asked (see PV_MEMTEST_DAEMONS_IN_CGROUP)
INCG_DAEMONS=()
[ "${PV_MEMTEST_DAEMONS_IN_CGROUP:-0}" = 1 ] && INCG_DAEMONS=("${INCG[@]}")

# ---- the volume --------------------------------------------------------

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=tcp://127.0.0.1:$port
sock=$T/c1.sock
mkdir -p "$T/d1" "$mnt"
"${INCG_DAEMONS[@]}" "$PEERD" --id 1 --listen "$addr" --data "$T/d1" --control "$sock" </dev/null >"$T/peerd1.log" 2>&1 &
peerd_pid=$!
PIDS+=("$peerd_pid")
for ((k = 0; k < 300; k++)); do
	[ -S "$sock" ] && "$PEERCTL" -s "$sock" status >/dev/null 2>&1 && break
	kill -0 "$peerd_pid" 2>/dev/null || fail "peerd exited before it was ready"
	sleep 0.1
done
"$PEERCTL" -s "$sock" volume create vol "$SIZE" >"$T/peerctl.log" 2>&1 || fail "volume create failed: $(cat "$T/peerctl.log")"

"${INCG_DAEMONS[@]}" "$FUSED" --group "$addr" "${FUSED_ARGS[@]}" -f "$mnt" </dev/null >"$T/fused.log" 2>&1 &
fused_pid=$!
PIDS+=("$fused_pid")
for ((k = 0; k < 300; k++)); do
	[ -e "$mnt/vol" ] && break
	kill -0 "$fused_pid" 2>/dev/null || fail "fused exited before the mount was ready"
	sleep 0.1
done
[ -e "$mnt/vol" ] || fail "no $mnt/vol after 30 s"
fuse_conn=$(awk -v p="$mnt" '$5 == p { split($3, d, ":"); print d[2] }' /proc/self/mountinfo)
loop=$(losetup --direct-io=on -f --show "$mnt/vol") || fail "losetup --direct-io=on failed"
log "peerd $peerd_pid, fused $fused_pid${FUSED_ARGS[*]:+ (${FUSED_ARGS[*]})}, $loop (dio $(cat "/sys/block/${loop#/dev/}/loop/dio"))"

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
size=${PV_MEMTEST_RANDOM:-50%}
do_verify=1
EOF
t0=$(date +%s)
"${INCG[@]}" timeout -k 10 "$TIMEOUT" fio --output-format=json --output="$T/fio.json" \
	"$T/pressure.fio" >"$T/fio.log" 2>&1
rc=$?
t1=$(date +%s)
# oom: processes OOM-killed in the cgroup; hits: times the limit was reached
# (v2: memory.events "max"; v1: memory.failcnt).
oom=0
hits=0
events=""
peak="?"
if [ "$CGV" = 2 ]; then
	events=$(tr '\n' ' ' <"$CG/memory.events")
	peak=$(cat "$CG/memory.peak" 2>/dev/null || echo "?")
	oom=$(awk '$1 == "oom_kill" {print $2}' "$CG/memory.events")
	hits=$(awk '$1 == "max" {print $2}' "$CG/memory.events")
	log "fio exit $rc after $((t1 - t0)) s; memory.events: $events; memory.peak: $peak"
elif [ "$CGV" = 1 ]; then
	oom=$(awk '$1 == "oom_kill" {print $2}' "$CG/memory.oom_control")
	# With memory.memsw.limit_in_bytes equal to the memory limit the memsw
	# counter is charged first and reaches its limit first, so the hits
	# are counted in memory.memsw.failcnt, not memory.failcnt.
	fc=$(cat "$CG/memory.failcnt")
	swfc=$(cat "$CG/memory.memsw.failcnt" 2>/dev/null || echo 0)
	hits=$((fc + swfc))
	peak=$(cat "$CG/memory.max_usage_in_bytes" 2>/dev/null || echo "?")
	# Some kernels (seen on 6.18) leave both failcnt at 0 even while the
	# cgroup sits at its limit and reclaims: a peak at the limit counts too.
	# reclaim holds usage a few pages under the limit: a peak within 1 MiB
	# of it counts as reached
	limit=$(cat "$CG/memory.limit_in_bytes")
	[ "$hits" -gt 0 ] || [ "$peak" = "?" ] || [ "$peak" -lt $((limit - (1 << 20))) ] || hits=1
	events="failcnt $fc, memsw.failcnt $swfc, oom_control: $(tr '\n' ' ' <"$CG/memory.oom_control")"
	log "fio exit $rc after $((t1 - t0)) s; $events; memory.max_usage_in_bytes: $peak"
else
	log "fio exit $rc after $((t1 - t0)) s"
fi
[ $rc = 124 ] || [ $rc = 137 ] && stalled=1
[ $stalled = 1 ] && fail "fio did not complete within $TIMEOUT s under a memory limit of $MEM_MAX (a stall or deadlock)"
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
[ "${oom:-0}" = 0 ] || fail "$oom process(es) OOM-killed in the cgroup (limit $MEM_MAX)"
kill -0 "$peerd_pid" 2>/dev/null || fail "peerd died under memory pressure"
kill -0 "$fused_pid" 2>/dev/null || fail "fused died under memory pressure"
if [ "${hits:-0}" -gt 0 ]; then
	log "the limit was reached $hits time(s)"
elif [ "${PV_MEMTEST_REQUIRE_PRESSURE:-0}" = 1 ]; then
	fail "the memory limit $MEM_MAX was never reached ($events): no pressure; raise PV_MEMTEST_SIZE or lower PV_MEMTEST_MAX"
else
	log "note: the memory limit was never reached ($events); raise PV_MEMTEST_SIZE or lower PV_MEMTEST_MAX"
fi
exit 0
