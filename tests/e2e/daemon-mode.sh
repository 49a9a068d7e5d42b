#!/usr/bin/env bash
# daemon-mode: `peerd --daemon` returns (exit 0) only once it serves, keeps
# serving in the background and stops cleanly on SIGTERM; fused without -f
# returns once the mount works, keeps serving, and exits by itself when
# unmounted.
. "$(dirname "$0")/common.sh"
need_fuse
need_cmd ss cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"

mkdir -p "$(data_of 1)"
timeout 30 "$PEERD" --id 1 --listen "$(addr_of 1)" --data "$(data_of 1)" \
	--control "$(sock_of 1)" --daemon </dev/null >"$T/peerd1.log" 2>&1 && rc=0 || rc=$?
assert_eq "$rc" 0 "exit status of peerd --daemon"
# The daemon's pid: the process listening on this test's own port.
pid=$(ss -Hltnp "sport = :$PV_PORT" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)
[ -n "$pid" ] || fail "nothing listens on $(addr_of 1) after peerd --daemon returned"
PV_PIDS+=("$pid")
pv_record pids "$pid"
grep -q "/peerd$" <(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1) || fail "pid $pid on port $PV_PORT is not our peerd"
# ready when it returned: the control socket answers at once
ctl 1 status >/dev/null || fail "peerctl status fails right after peerd --daemon returned"
assert_eq "$(ps -o sid= -p "$pid" | tr -d ' ')" "$pid" "session of the daemon (setsid)"
log "peerd --daemon: pid $pid serving"
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
[ -S "$(sock_of 1)" ] && log "note: the control socket file stays after peerd stopped"
log "both stopped cleanly"
