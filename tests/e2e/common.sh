# common.sh: shared set-up for the end-to-end tests. Source it first thing:
#
#   . "$(dirname "$0")/common.sh"
#
# It gives each test a fresh temp dir ($T), one free TCP port ($PV_PORT) that
# server N uses on 127.0.0.N, helpers to start and stop real peerd and fused
# processes, attach loop devices and run peerctl, and ONE cleanup routine,
# trapped on EXIT, INT and TERM, that always undoes everything the test did:
#
#   SIGCONT our PIDs (a test may have stopped one) -> umount file systems on
#   our loop devices -> losetup -d our loop devices -> unmount our fused
#   mounts -> kill our PIDs (never by name) -> the test's own steps
#   (pv_on_cleanup) -> dump logs on failure -> rm -rf $T
#
# Exit codes: 0 pass, 1 fail, 77 skip (with the reason on stdout).
#
# Never use a bare `wait`: peerd, fused and the watchdog are children of the
# test script, so it would wait for them (until the watchdog stops the test
# after $PV_TEST_TIMEOUT s). Wait for the PIDs you started: `wait "$pid"`.
# Environment: PV_BUILD (build tree, default <repo>/build), PV_KEEP=1 keeps
# $T for a look after the run, PV_REQUIRE_BINARIES=1 turns a missing binary
# into a failure instead of a skip (scripts/test sets it).

set -euEo pipefail

PV_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PV_REPO=$(cd "$PV_E2E_DIR/../.." && pwd)
PV_BUILD=${PV_BUILD:-$PV_REPO/build}
PEERD=$PV_BUILD/peerd/peerd
PEERCTL=$PV_BUILD/peerd/ctl/peerctl
FUSED=$PV_BUILD/fused/fused
PVRAW=$PV_BUILD/tests/tools/pvraw
PVHOLES=$PV_BUILD/tests/tools/pvholes
PV_TEST=$(basename "$0" .sh)

# How long (seconds) to wait for a server or a mount to become ready; the
# sanitizer build starts slower.
PV_WAIT=${PV_WAIT:-30}
# fused --timeout for the tests' mounts: bounded so that a dead server makes
# IO fail within the test's time instead of hanging it.
PV_FUSED_TIMEOUT=${PV_FUSED_TIMEOUT:-60}

declare -A PEERD_PID=()   # server id -> pid of its running peerd
declare -A PEERD_ARGS=()  # server id -> extra args it was started with
declare -A FUSED_PID=()   # mount point -> pid of its fused
PV_PIDS=()                # every pid we started, in start order
PV_CLEANUP_HOOKS=()       # functions the cleanup calls (pv_on_cleanup)
# Loop devices and mounts are recorded in files under $T, not in arrays, so
# that helpers called in $(...) subshells still register them for cleanup.
PV_CLEANED=0
PV_FAILED=0

log() { printf '[%s %s] %s\n' "$PV_TEST" "$(date +%T)" "$*" >&2; }

fail()
{
	echo "FAIL: $PV_TEST: $*" >&2
	PV_FAILED=1
	exit 1
}

skip()
{
	echo "SKIP: $PV_TEST: $*"
	exit 77
}

# Where a command fails under set -e, say which one (with the call chain)
# before the cleanup runs; once, and not from inside $(...) subshells, whose
# failure the caller's line reports.
pv_on_err()
{
	local rc=$1 cmd=$2 where="" i
	PV_FAILED=1
	[ "$BASH_SUBSHELL" = 0 ] && [ -z "${PV_ERR_SHOWN:-}" ] || return 0
	PV_ERR_SHOWN=1
	for ((i = 0; i + 1 < ${#BASH_SOURCE[@]}; i++)); do
		where="${BASH_SOURCE[i + 1]##*/}:${BASH_LINENO[i]}${where:+ -> $where}"
	done
	echo "FAIL: $PV_TEST: $where: \"$cmd\" exited $rc" >&2
}
trap 'pv_on_err $? "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- cleanup

pv_cleanup()
{
	local why=$1 rc=$2 i pid dev mnt
	set +e
	trap - ERR
	[ "$PV_CLEANED" = 1 ] && return
	PV_CLEANED=1
	cd / # never keep a mount busy ourselves
	case $why in
	INT) rc=130 ;;
	TERM) rc=143 ;;
	esac
	[ "$rc" != 0 ] && [ "$rc" != 77 ] && PV_FAILED=1

	[ -n "${PV_WATCHDOG:-}" ] && kill "$PV_WATCHDOG" 2>/dev/null && wait "$PV_WATCHDOG" 2>/dev/null

	# 0. a process the test stopped (SIGSTOP) would hold up every step
	#    below (IO that waits for it, a TERM it never takes): continue it
	for pid in $( (printf '%s\n' "${PV_PIDS[@]}"; pv_list pids) | awk 'NF && !seen[$0]++'); do
		pv_ours "$pid" && kill -CONT "$pid" 2>/dev/null
	done

	# 1. file systems mounted on our loop devices (ours or found on them)
	for mnt in $(pv_list mounts | tac); do
		pv_umount_fs "$mnt"
	done
	for dev in $(pv_list loops); do
		pv_our_loop "$dev" || continue
		for mnt in $(findmnt -rn -o TARGET -S "$dev" 2>/dev/null | tac); do
			pv_umount_fs "$mnt"
		done
	done
	# 2. our loop devices
	for dev in $(pv_list loops); do
		pv_our_loop "$dev" || continue
		losetup -d "$dev" 2>/dev/null || { sleep 1; losetup -d "$dev"; }
	done
	# 3. our fused mounts, then 4. every process we started
	for mnt in $(pv_list fusemounts | tac); do
		pv_unmount_fused "$mnt"
	done
	for pid in $( (printf '%s\n' "${PV_PIDS[@]}"; pv_list pids) | tac | awk 'NF && !seen[$0]++'); do
		pv_kill_pid "$pid"
	done
	# 5. the test's own steps, last registered first
	for ((i = ${#PV_CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
		"${PV_CLEANUP_HOOKS[i]}"
	done

	# Sanitizer reports in the daemons' logs fail the test even when every
	# check passed: a server that misbehaves quietly is still a failure.
	if [ -d "${T:-}" ] && grep -lqE 'ERROR: (Address|Leak)Sanitizer|runtime error:' \
		"$T"/*.log 2>/dev/null; then
		echo "FAIL: $PV_TEST: sanitizer report in a daemon log" >&2
		rc=1
		PV_FAILED=1
	fi
	if [ "$PV_FAILED" = 1 ] && [ "$rc" = 0 ]; then
		rc=1
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		pv_dump_logs
		[ "$rc" -gt 1 ] && [ "$rc" -lt 128 ] && rc=1
	fi
	if [ -n "${T:-}" ] && [ -d "$T" ]; then
		if [ "${PV_KEEP:-0}" = 1 ]; then
			echo "kept $T" >&2
		else
			rm -rf --one-file-system "$T"
		fi
	fi
	[ "$rc" = 0 ] && echo "PASS: $PV_TEST"
	exit "$rc"
}

# pv_on_cleanup FUNC: the cleanup calls FUNC (with set +e) once every
# process the test started is stopped, before the logs are dumped and $T is
# removed: for what a test changes outside $T (installed packages, say).
pv_on_cleanup()
{
	PV_CLEANUP_HOOKS+=("$1")
}

# pv_list KIND / pv_record KIND VALUE: the resources recorded for cleanup.
pv_list()
{
	[ -f "${T:-/nonexistent}/.pv-$1" ] && cat "$T/.pv-$1"
	return 0
}

pv_record()
{
	echo "$2" >>"$T/.pv-$1"
}

# pv_forget KIND VALUE: drops a resource that was released already.
pv_forget()
{
	[ -f "$T/.pv-$1" ] || return 0
	grep -vxF -- "$2" "$T/.pv-$1" >"$T/.pv-$1.new" || true
	mv "$T/.pv-$1.new" "$T/.pv-$1"
}

# pv_our_loop DEV: whether DEV is attached to a file of this test (a loop
# number released by us may since belong to someone else).
pv_our_loop()
{
	local back
	back=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 1
	case $back in "$T"/*) return 0 ;; esac
	return 1
}

# is_mounted DIR: reads /proc/self/mountinfo only, so a dead FUSE mount
# (ENOTCONN on stat) still counts as mounted.
is_mounted()
{
	awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo
}

pv_dump_logs()
{
	local f
	[ -d "${T:-}" ] || return 0
	for f in "$T"/*.log; do
		[ -f "$f" ] || continue
		echo "----- $(basename "$f") (last 150 lines) -----" >&2
		tail -n 150 "$f" >&2
	done
	echo "----- end of logs -----" >&2
}

# Unmounts a file system that lives on one of our loop devices; a busy one is
# detached lazily so that the loop device can still go.
pv_umount_fs()
{
	local mnt=$1
	is_mounted "$mnt" || return 0
	timeout 60 umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
}

pv_unmount_fused()
{
	local mnt=$1 pid=${FUSED_PID[$1]:-} n
	if is_mounted "$mnt"; then
		timeout 20 fusermount3 -u "$mnt" 2>/dev/null ||
			timeout 20 umount "$mnt" 2>/dev/null ||
			fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	fi
	# fused exits by itself once unmounted; give it a moment.
	if [ -n "$pid" ]; then
		for ((n = 0; n < 50; n++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
}

# pv_ours PID: whether PID is still a process this test started: a child of
# the script, or (a daemon) one whose command line names our temp dir. A
# pid of ours that exited may have been reused by now.
pv_ours()
{
	local ppid
	ppid=$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')
	[ -n "$ppid" ] || return 1
	[ "$ppid" = $$ ] && return 0
	tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "$T/"
}

# TERM, then KILL after 5 s. Only pids this test started.
pv_kill_pid()
{
	local pid=$1 n
	pv_ours "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for ((n = 0; n < 50; n++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# The watchdog: ctest kills a test that overruns its TIMEOUT with SIGKILL,
# which no trap sees, so the test stops itself a little earlier: TERM to
# the script (the trap cleans up) and to the command it is waiting for.
# It waits with the read builtin on a FIFO, so no process is left over.
PV_TEST_TIMEOUT=${PV_TEST_TIMEOUT:-270}
pv_watchdog()
{
	mkfifo "$T/.watchdog"
	(
		trap - ERR
		set +e
		read -r -t "$PV_TEST_TIMEOUT" <>"$T/.watchdog"
		echo "FAIL: $PV_TEST: still running after ${PV_TEST_TIMEOUT}s (PV_TEST_TIMEOUT): stopping it" >&2
		kill -TERM $$
		# the command the script waits for (not our servers and mounts:
		# the cleanup takes those down in order)
		for p in $(ps -o pid= --ppid $$); do
			[ "$p" = "$BASHPID" ] && continue
			grep -qx "$p" "$T/.pv-pids" 2>/dev/null && continue
			kill -TERM "$p" 2>/dev/null
		done
	) &
	PV_WATCHDOG=$!
}

for pv_sig in EXIT INT TERM; do
	# shellcheck disable=SC2064
	trap "pv_cleanup $pv_sig \$?" "$pv_sig"
done
unset pv_sig

# ---------------------------------------------------------------- checks

need_root()
{
	[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts, loop devices)"
}

need_fuse()
{
	need_root
	[ -c /dev/fuse ] || modprobe fuse 2>/dev/null || true
	[ -c /dev/fuse ] || skip "no /dev/fuse (modprobe fuse failed)"
	command -v fusermount3 >/dev/null || skip "fusermount3 not installed (apt-get install fuse3)"
}

need_loop()
{
	need_root
	[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true
	[ -e /dev/loop-control ] || skip "no /dev/loop-control (modprobe loop failed)"
}

need_cmd()
{
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || skip "'$c' is not installed (scripts/test installs it)"
	done
}

# need_bin PATH...: a binary of the build tree. Missing: skip, or fail when
# PV_REQUIRE_BINARIES=1.
need_bin()
{
	local b
	for b in "$@"; do
		[ -x "$b" ] && continue
		if [ "${PV_REQUIRE_BINARIES:-0}" = 1 ]; then
			fail "$b was not built (PV_BUILD=$PV_BUILD)"
		fi
		skip "$b was not built (PV_BUILD=$PV_BUILD)"
	done
}

# ---------------------------------------------------------------- temp dir, port

T=$(mktemp -d "${TMPDIR:-/tmp}/pv-$PV_TEST.XXXXXX")
chmod 755 "$T"

# A port in 20000-60000 that no socket listens on, on any address.
pv_free_port()
{
	local port n
	for ((n = 0; n < 200; n++)); do
		# below the kernel's ephemeral range (32768-60999 on Debian):
		# peerd's link listeners (port 0) and every outgoing connection
		# take ports there, and a test running beside this one could
		# hold the port by the time peerd binds it
		port=$((20000 + RANDOM % 12700))
		if ! ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			echo "$port"
			return 0
		fi
	done
	fail "no free TCP port found in 20000-32699"
}
pv_watchdog
need_cmd ss python3 awk findmnt ps
# The Debian python3 (scripts/test installs it) starts in a fraction of the
# time of a version-manager shim, and the tests call it often.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
PV_PORT=$(pv_free_port)

# ---------------------------------------------------------------- peerd

addr_of() { echo "tcp://127.0.0.$1:$PV_PORT"; }
sock_of() { echo "$T/c$1.sock"; }
data_of() { echo "$T/d$1"; }

# start_peerd N [extra args]: server N on 127.0.0.N:$PV_PORT, data $T/dN,
# control $T/cN.sock, log $T/peerdN.log (appended across restarts). Does
# not wait; see wait_peerd.
start_peerd()
{
	local n=$1
	shift
	need_bin "$PEERD"
	if [ -n "${PEERD_PID[$n]:-}" ] && kill -0 "${PEERD_PID[$n]}" 2>/dev/null; then
		fail "start_peerd $n: already running (pid ${PEERD_PID[$n]})"
	fi
	mkdir -p "$(data_of "$n")"
	PEERD_ARGS[$n]="$*"
	echo "=== $(date +%T) start: peerd --id $n --listen $(addr_of "$n") $* ===" >>"$T/peerd$n.log"
	"$PEERD" --id "$n" --listen "$(addr_of "$n")" --data "$(data_of "$n")" \
		--control "$(sock_of "$n")" "$@" </dev/null >>"$T/peerd$n.log" 2>&1 &
	PEERD_PID[$n]=$!
	PV_PIDS+=("$!")
	pv_record pids "$!"
	log "started peerd $n (pid $!) on $(addr_of "$n")"
}

# wait_peerd N: until the control socket answers status; fails if peerd
# exits or does not get ready within $PV_WAIT s.
wait_peerd()
{
	local n=$1 pid=${PEERD_PID[$1]:-} deadline=$((SECONDS + PV_WAIT)) PV_CTL_POLL=1
	[ -n "$pid" ] || fail "wait_peerd $n: not started"
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null && rc=0 || rc=$?
			fail "peerd $n exited (status $rc) before it was ready"
		fi
		if [ -S "$(sock_of "$n")" ] && ctl "$n" status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	fail "peerd $n not ready after ${PV_WAIT}s"
}

# start_peerd + wait_peerd.
run_peerd()
{
	start_peerd "$@"
	wait_peerd "$1"
}

# stop_peerd N: SIGTERM and wait. A clean shutdown exits 0 (143 is accepted
# for a server that does not catch TERM); anything else fails the test,
# since the sanitizers report that way.
stop_peerd()
{
	local n=$1 pid=${PEERD_PID[$1]:-} rc k
	[ -n "$pid" ] || fail "stop_peerd $n: not started"
	kill -TERM "$pid" 2>/dev/null || true
	for ((k = 0; k < 10 * PV_WAIT; k++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null || true
		unset "PEERD_PID[$n]"
		fail "peerd $n did not exit within ${PV_WAIT}s of SIGTERM"
	fi
	wait "$pid" 2>/dev/null && rc=0 || rc=$?
	unset "PEERD_PID[$n]"
	case $rc in
	0 | 143) log "stopped peerd $n (status $rc)" ;;
	*) fail "peerd $n exited with status $rc on SIGTERM" ;;
	esac
}

# kill9_peerd N: SIGKILL, as a crash.
kill9_peerd()
{
	local n=$1 pid=${PEERD_PID[$1]:-}
	[ -n "$pid" ] || fail "kill9_peerd $n: not started"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PEERD_PID[$n]"
	log "killed peerd $n with SIGKILL"
}

peerd_alive()
{
	local pid=${PEERD_PID[$1]:-}
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# ctl N args...: peerctl on server N's control socket. Within a wait
# helper (which sets PV_CTL_POLL as a local) peerctl runs without
# LeakSanitizer's check at exit: a poll repeats one read-only command many
# times, and in the sanitizer build that check costs ~70 ms of CPU a
# process here (a quarter of a test's CPU); every other call keeps it.
ctl()
{
	local n=$1
	shift
	if [ -n "${PV_CTL_POLL:-}" ]; then
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$PEERCTL" -s "$(sock_of "$n")" "$@"
	else
		"$PEERCTL" -s "$(sock_of "$n")" "$@"
	fi
}

# ---------------------------------------------------------------- fused

# mount_fused MOUNT ADDR... [-- extra fused args]: runs fused in the
# foreground (-f) in the background so that we own its pid; waits until
# MOUNT is a mount point. ADDRs are joined with commas for --group.
mount_fused()
{
	local mnt=$1 group="" extra=() pid
	shift
	need_bin "$FUSED"
	while [ $# -gt 0 ]; do
		if [ "$1" = -- ]; then
			shift
			extra=("$@")
			break
		fi
		group=${group:+$group,}$1
		shift
	done
	mkdir -p "$mnt"
	local lname
	lname=fused-$(basename "$mnt")
	echo "=== $(date +%T) fused --group $group ${extra[*]} -f $mnt ===" >>"$T/$lname.log"
	"$FUSED" --group "$group" --timeout "$PV_FUSED_TIMEOUT" "${extra[@]}" -f "$mnt" \
		</dev/null >>"$T/$lname.log" 2>&1 &
	pid=$!
	FUSED_PID[$mnt]=$pid
	pv_track_mount "$mnt" "$pid" fused
}

# pv_track_mount MOUNT PID WHAT: records a FUSE daemon started in the
# background (PID) and its MOUNT for cleanup, then waits until MOUNT is a
# mount point; fails if PID exits first or after $PV_WAIT s.
pv_track_mount()
{
	local mnt=$1 pid=$2 what=$3 deadline=$((SECONDS + PV_WAIT))
	PV_PIDS+=("$pid")
	pv_record pids "$pid"
	pv_record fusemounts "$mnt"
	while ((SECONDS < deadline)); do
		is_mounted "$mnt" && { log "mounted $what at $mnt (pid $pid)"; return 0; }
		kill -0 "$pid" 2>/dev/null || fail "$what for $mnt exited before the mount was ready"
		sleep 0.1
	done
	fail "$what mount $mnt not ready after ${PV_WAIT}s"
}

# mount_volume: STYLE.md's name for mount_fused.
mount_volume() { mount_fused "$@"; }

# umount_fused MOUNT: unmounts and waits for that fused to exit.
umount_fused()
{
	local mnt=$1 pid=${FUSED_PID[$1]:-}
	fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt failed"
	if [ -n "$pid" ]; then
		local k
		for ((k = 0; k < 10 * PV_WAIT; k++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && fail "fused for $mnt still running after unmount"
		wait "$pid" 2>/dev/null || true
	fi
	log "unmounted fused at $mnt"
}

# wait_path_exists PATH [SECONDS] / wait_path_gone PATH [SECONDS]
wait_path_exists()
{
	local deadline=$((SECONDS + ${2:-$PV_WAIT}))
	while ((SECONDS < deadline)); do
		[ -e "$1" ] && return 0
		sleep 0.2
	done
	return 1
}

wait_path_gone()
{
	local deadline=$((SECONDS + ${2:-$PV_WAIT}))
	while ((SECONDS < deadline)); do
		[ -e "$1" ] || return 0
		sleep 0.2
	done
	return 1
}

# ---------------------------------------------------------------- loop devices, file systems

# loop_attach FILE: prints the loop device, attached with direct IO, and
# records it for cleanup. Fails if direct IO did not take.
loop_attach()
{
	local file=$1 dev
	need_loop
	dev=$(losetup --direct-io=on -f --show "$file") || fail "losetup --direct-io=on -f --show $file failed"
	pv_record loops "$dev"
	if [ -r "/sys/block/${dev#/dev/}/loop/dio" ] &&
		[ "$(cat "/sys/block/${dev#/dev/}/loop/dio")" != 1 ]; then
		fail "$dev: direct IO is off after losetup --direct-io=on (FUSE file must allow O_DIRECT)"
	fi
	echo "$dev"
}

# loop_detach DEV
loop_detach()
{
	losetup -d "$1" || fail "losetup -d $1 failed"
	pv_forget loops "$1"
	log "detached $1"
}

# mount_fs DEV DIR [mount options]: mounts and records it for cleanup.
mount_fs()
{
	local dev=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	mount "$@" "$dev" "$dir" || fail "mount $dev $dir failed"
	pv_record mounts "$dir"
}

# ---------------------------------------------------------------- assertions

# expect_fail_msg "substring" cmd...: cmd must exit non-zero (exactly
# $EXPECT_RC when set) and print substring (case-insensitive) on stdout or
# stderr.
expect_fail_msg()
{
	local want=$1 rc out
	shift
	out=$("$@" 2>&1) && rc=0 || rc=$?
	if [ "$rc" = 0 ]; then
		fail "expected failure, got success: $* -> $out"
	fi
	if [ -n "${EXPECT_RC:-}" ] && [ "$rc" != "$EXPECT_RC" ]; then
		fail "expected exit $EXPECT_RC, got $rc: $* -> $out"
	fi
	if ! grep -qiF -- "$want" <<<"$out"; then
		fail "expected message containing '$want': $* -> (exit $rc) $out"
	fi
	log "ok (exit $rc, '$want'): $*"
}

# expect_ctl_error N RC REGEX args...: peerctl on server N must exit RC,
# print nothing on stdout and exactly one line on stderr (usage errors, RC
# 2, may add hint lines) that starts with "peerctl: " and matches REGEX
# (extended, case-insensitive). Its output goes to $PV_CTL_FILES.out and
# .err (default $T/ctl; a check run in the background names its own).
expect_ctl_error()
{
	local n=$1 want_rc=$2 re=$3 rc f=${PV_CTL_FILES:-$T/ctl}
	shift 3
	ctl "$n" "$@" >"$f.out" 2>"$f.err" && rc=0 || rc=$?
	local out err lines
	out=$(cat "$f.out")
	err=$(cat "$f.err")
	lines=$(grep -c '' "$f.err" || true)
	[ "$rc" = "$want_rc" ] || fail "peerctl $*: expected exit $want_rc, got $rc (stderr: $err) (stdout: $out)"
	[ -z "$out" ] || fail "peerctl $*: expected no stdout on error, got: $out"
	# one line; a usage error (2) may add a hint such as "try 'peerctl --help'"
	if [ "$want_rc" = 2 ]; then
		[ "$lines" -ge 1 ] || fail "peerctl $*: nothing on stderr"
	else
		[ "$lines" = 1 ] || fail "peerctl $*: expected one line on stderr, got $lines: $err"
	fi
	err=$(head -n 1 "$f.err")
	[[ $err == "peerctl: "* ]] || fail "peerctl $*: stderr does not start with 'peerctl: ': $err"
	grep -qiE -- "$re" <<<"$err" || fail "peerctl $*: message '$err' does not match /$re/"
	log "ok (exit $rc): peerctl $* -> $err"
}

# json EXPR: evaluates a Python expression over the JSON on stdin (as d).
json()
{
	"$PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "$1"
}

# assert_eq GOT WANT WHAT
assert_eq()
{
	[ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"
}

# sha256 of a byte range of a file or device, read with O_DIRECT when the
# path is a block device: range_sum PATH OFFSET_MiB LENGTH_MiB
range_sum()
{
	local flag=""
	[ -b "$1" ] && flag=iflag=direct
	dd if="$1" bs=1M skip="$2" count="$3" $flag status=none | sha256sum | cut -d' ' -f1
}

# make_random FILE MiB: a file of random bytes.
make_random()
{
	head -c "$(($2 << 20))" /dev/urandom >"$1"
}
