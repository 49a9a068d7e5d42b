#!/usr/bin/env bash
# group-kill9-resume: kill -9 of one server of a group of three (not the one
# fused is connected to) in the middle of a fio verify write load: requests
# for pages elsewhere keep completing, a catalog change (volume create)
# while it is down is refused with an error naming it, 'group show' shows
# it down; restarted on the same data directory it is shown up again (and
# the peer links to it are made again), IO to its pages resumes, fio ends
# with zero verify errors, a read-only verify pass afterwards is clean and
# the restarted server takes catalog changes.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

VICTIM=2
group_of_three
ctl 1 volume create vol 256M >/dev/null
routing_json 1 vol "$T/routing.json"
# A page owned by server 3 (neither the victim nor fused's server), to read
# while the victim is down.
other_page=$(json "next(r['first_page'] for r in d['routing'] if r['owner'] == 3)" <"$T/routing.json")

mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
dev=$(loop_attach "$T/mnt/vol")

# Rate-limited so that the write phase lasts ~15 s and the crash lands in
# it: random 4 KiB over the first 128 MiB, sequential 1 MiB over the rest,
# both at once; each verifies what it wrote at the end.
write_crash_load "$T/load.fio" "$dev" 777

log "fio load started"
timeout 170 fio --output-format=json --output="$T/fio-load.json" "$T/load.fio" \
	>"$T/fio-load.out" 2>&1 &
fio_pid=$!
PV_PIDS+=("$fio_pid")

# Let it write for a while, then crash the victim mid-load.
sleep 4
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the crash: $(cat "$T/fio-load.out")"
kill9_peerd "$VICTIM"

# A catalog change is refused while a member is down, naming it.
t0=$SECONDS
ctl 1 --timeout 60 volume create while-down 64M >"$T/create.out" 2>&1 && rc=0 || rc=$?
took=$((SECONDS - t0))
[ "$rc" != 0 ] || fail "volume create with server $VICTIM down succeeded: $(cat "$T/create.out")"
grep -qE "server $VICTIM\b|127\.0\.0\.$VICTIM:$PV_PORT" "$T/create.out" ||
	fail "volume create with server $VICTIM down: message does not name it (id or address): $(cat "$T/create.out")"
((took <= 15)) || fail "volume create with server $VICTIM down took ${took}s to be refused (expected about 5 s)"
log "volume create refused in ${took}s: $(cat "$T/create.out")"
for n in 1 3; do
	ctl "$n" volume list --json | json "[v['name'] for v in d['volumes']]" | grep -q while-down &&
		fail "server $n lists volume while-down, whose creation was refused"
done

# group show marks it down, on both survivors.
wait_member_state 1 "$VICTIM" down
wait_member_state 3 "$VICTIM" down
log "server $VICTIM shown down by servers 1 and 3"

# A page owned by server 3 still reads (through fused -> server 1 -> 3).
timeout 20 dd if="$T/mnt/vol" of=/dev/null bs=1M count=1 skip=$((other_page * 4)) iflag=direct \
	status=none || fail "a read of page $other_page (owner 3) failed or hung while server $VICTIM was down"
log "page $other_page (owner 3) readable while server $VICTIM is down"
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while server $VICTIM was down: $(cat "$T/fio-load.out")"

run_peerd "$VICTIM"
wait_member_state 1 "$VICTIM" up
wait_member_state 3 "$VICTIM" up
wait_member_state "$VICTIM" 1 up
log "server $VICTIM restarted and shown up again"
# the peer links to the restarted server are made again (its new listener
# port comes in its heartbeats)
for n in 1 2 3; do wait_links_up "$n" 2; done
log "peer links up again between all three"

wait "$fio_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || { cat "$T/fio-load.out" "$T/fio-load.json" >&2; fail "fio across the crash exited $rc"; }
check_fio "$T/fio-load.json" load-across-crash
log "fio across the crash: zero errors"

# Read-only verify of everything once more, through a fresh mount.
loop_detach "$dev"
umount_fused "$T/mnt"
mount_fused "$T/mnt2" "$(addr_of 1)"
wait_path_exists "$T/mnt2/vol" || fail "$T/mnt2/vol did not appear"
dev=$(loop_attach "$T/mnt2/vol")
sed -i "s|^filename=.*|filename=$dev|" "$T/load.fio"
timeout 120 fio --output-format=json --output="$T/fio-verify.json" --verify_only "$T/load.fio" ||
	{ cat "$T/fio-verify.json" >&2; fail "verify-only pass exited non-zero"; }
check_fio "$T/fio-verify.json" verify-only-after-restart
loop_detach "$dev"
umount_fused "$T/mnt2"

# The restarted server is a full member again: catalog changes pass and
# reach it.
ctl 1 volume create after 64M >/dev/null || fail "volume create after the restart failed"
for n in 1 2 3; do
	ctl "$n" volume list --json | json "[v['name'] for v in d['volumes']]" | grep -q '"after"' ||
		fail "server $n does not list the volume created after the restart"
done
log "catalog changes work again after the restart"
