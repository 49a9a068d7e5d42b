#!/usr/bin/env bash
# daemon-mode: `peerd --daemon` returns (exit 0) only once it serves, keeps
# serving in the background and stops cleanly on SIGTERM; --pid-file holds
# its pid while it runs; a --daemon that cannot start (port in use, data
# directory locked) exits non-zero with the reason on stderr; fused without -f
# returns once the mount works, keeps serving, and exits by itself when
# unmounted.
. "$(dirname "$0")/common.sh"
need_fuse
need_cmd ss cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"

mkdir -p "$(data_of 1)"
timeout 30 "$PEERD" --id 1 --listen "$(addr_of 1)" --data "$(data_of 1)" \
	--control "$(sock_of 1)" --daemon --pid-file "$T/peerd1.pid" </dev/null >"$T/peerd1.log" 2>&1 && rc=0 || rc=$?
assert_eq "$rc" 0 "exit status of peerd --daemon"
# The daemon's pid: the process listening on this test's own port.
pid=$(ss -Hltnp "sport = :$PV_PORT" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)
[ -n "$pid" ] || fail "nothing listens on $(addr_of 1) after peerd --daemon returned"
assert_eq "$(cat "$T/peerd1.pid" 2>/dev/null)" "$pid" "--pid-file of peerd --daemon"
PV_PIDS+=("$pid")
pv_record pids "$pid"
grep -q "/peerd$" <(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1) || fail "pid $pid on port $PV_PORT is not our peerd"
# ready when it returned: the control socket answers at once
ctl 1 status >/dev/null || fail "peerctl status fails right after peerd --daemon returned"
assert_eq "$(ps -o sid= -p "$pid" | tr -d ' ')" "$pid" "session of the daemon (setsid)"
log "peerd --daemon: pid $pid serving"

# A --daemon that cannot start says why on stderr and exits non-zero, at
# once: the port is taken (another data directory), or the data directory
# is locked by the running server (another port).
mkdir -p "$(data_of 2)"
timeout 30 "$PEERD" --id 2 --listen "$(addr_of 1)" --data "$(data_of 2)" \
	--control "$T/c2.sock" --daemon --pid-file "$T/peerd2.pid" </dev/null >"$T/second.out" 2>&1 && rc=0 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "peerd --daemon on a port in use: exit $rc ($(cat "$T/second.out"))"
grep -qi "cannot listen on $(addr_of 1)" "$T/second.out" || fail "peerd --daemon on a port in use: no reason on stderr: $(cat "$T/second.out")"
[ -e "$T/peerd2.pid" ] && fail "a peerd that did not start wrote its pid file"
log "ok: --daemon on a port in use: exit $rc: $(grep -i 'cannot listen' "$T/second.out")"
timeout 30 "$PEERD" --id 1 --listen "tcp://127.0.0.2:$PV_PORT" --data "$(data_of 1)" \
	--control "$T/c3.sock" --daemon </dev/null >"$T/third.out" 2>&1 && rc=0 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "peerd --daemon on a locked data directory: exit $rc ($(cat "$T/third.out"))"
grep -qi "lock" "$T/third.out" || fail "peerd --daemon on a locked data directory: no reason on stderr: $(cat "$T/third.out")"
log "ok: --daemon on a locked data directory: exit $rc: $(head -n 1 "$T/third.out")"
ctl 1 status >/dev/null || fail "the running peerd stopped answering after the failed starts"
ctl 1 volume create dvol 16M >/dev/null

# fused without -f
mkdir -p "$T/mnt"
timeout 30 "$FUSED" --group "$(addr_of 1)" "$T/mnt" </dev/null >"$T/fused-mnt.log" 2>&1 && rc=0 || rc=$?
pv_record fusemounts "$T/mnt"
assert_eq "$rc" 0 "exit status of fused (daemonizing)"
is_mounted "$T/mnt" || fail "fused returned but $T/mnt is not mounted"
fpid=""
for p in /proc/[0-9]*; do
	tr "\\0" "\\n" 2>/dev/null <"$p/cmdline" | grep -qxF "$T/mnt" || continue
	tr "\\0" "\\n" 2>/dev/null <"$p/cmdline" | head -n1 | grep -q '/fused$' || continue
	fpid=${p#/proc/}
done
[ -n "$fpid" ] || fail "no fused process serves $T/mnt"
PV_PIDS+=("$fpid")
pv_record pids "$fpid"
[ -f "$T/mnt/dvol" ] || fail "dvol is not in the mount of the daemonized fused"
make_random "$T/x" 2
dd if="$T/x" of="$T/mnt/dvol" bs=1M oflag=direct conv=notrunc status=none
cmp <(dd if="$T/mnt/dvol" bs=1M count=2 iflag=direct status=none) "$T/x" || fail "IO through the daemonized fused"
log "fused daemonized: pid $fpid serving $T/mnt"

fusermount3 -u "$T/mnt"
for _ in $(seq 1 100); do
	kill -0 "$fpid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$fpid" 2>/dev/null && fail "fused (pid $fpid) still runs 10 s after its mount was unmounted"

kill -TERM "$pid"
for _ in $(seq 1 100); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "peerd --daemon (pid $pid) still runs 10 s after SIGTERM"
[ -e "$T/peerd1.pid" ] && fail "peerd left its pid file behind after SIGTERM"
[ -S "$(sock_of 1)" ] && log "note: the control socket file stays after peerd stopped"
log "both stopped cleanly"
