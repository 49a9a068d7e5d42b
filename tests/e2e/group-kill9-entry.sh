#!/usr/bin/env bash
# group-kill9-entry: kill -9 of the server fused is connected to, in a group
# of three, in the middle of a fio verify write load. fused moves its
# connection to another holder of the volume and re-sends what was in
# flight: pages owned by the other servers stay readable while the dead
# one is down; when it is back, fio ends with zero verify errors and a
# read-only verify pass through a fresh mount is clean.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

VICTIM=1
group_of_three
ctl 1 volume create vol 256M >/dev/null
routing_json 2 vol "$T/routing.json"
other_page=$(json "next(r['first_page'] for r in d['routing'] if r['owner'] == 2)" <"$T/routing.json")

# fused knows all three addresses and reaches server 1 first.
mount_fused "$T/mnt" "$(addr_of 1),$(addr_of 2),$(addr_of 3)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
dev=$(loop_attach "$T/mnt/vol")

write_crash_load "$T/load.fio" "$dev" 4242

log "fio load started"
timeout 170 fio --output-format=json --output="$T/fio-load.json" "$T/load.fio" \
	>"$T/fio-load.out" 2>&1 &
fio_pid=$!
PV_PIDS+=("$fio_pid")

sleep 4
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the crash: $(cat "$T/fio-load.out")"
kill9_peerd "$VICTIM"
log "server $VICTIM (fused's server) killed"

# With server 1 gone, a page owned by server 2 can only be read if fused
# moved to server 2 or 3.
timeout 30 dd if="$T/mnt/vol" of=/dev/null bs=1M count=1 skip=$((other_page * 4)) iflag=direct \
	status=none || fail "page $other_page (owner 2) not readable while fused's server $VICTIM is down"
log "page $other_page (owner 2) readable through another server while server $VICTIM is down"
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while server $VICTIM was down: $(cat "$T/fio-load.out")"

run_peerd "$VICTIM"
wait_member_state 2 "$VICTIM" up
log "server $VICTIM restarted"

wait "$fio_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || { cat "$T/fio-load.out" "$T/fio-load.json" >&2; fail "fio across the crash exited $rc"; }
check_fio "$T/fio-load.json" load-across-entry-crash
log "fio across the crash of fused's server: zero errors"

loop_detach "$dev"
umount_fused "$T/mnt"
mount_fused "$T/mnt2" "$(addr_of 3)"
wait_path_exists "$T/mnt2/vol" || fail "$T/mnt2/vol did not appear"
dev=$(loop_attach "$T/mnt2/vol")
sed -i "s|^filename=.*|filename=$dev|" "$T/load.fio"
timeout 120 fio --output-format=json --output="$T/fio-verify.json" --verify_only "$T/load.fio" ||
	{ cat "$T/fio-verify.json" >&2; fail "verify-only pass exited non-zero"; }
check_fio "$T/fio-verify.json" verify-only-after-entry-crash
loop_detach "$dev"
umount_fused "$T/mnt2"
log "read-only verify through server 3 clean"
