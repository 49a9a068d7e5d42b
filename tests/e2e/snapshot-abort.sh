#!/usr/bin/env bash
# snapshot-abort: a hold-mode snapshot never half-exists and never holds
# writes past its timeout (issue 15). (1) A holder SIGSTOPped: the
# snapshot fails within the timeout naming it, writes to the other servers'
# pages go on, and once the holder wakes no trace of the snapshot is left
# on any server (catalog, snapshot files). (2) The coordinator killed (-9)
# between the members' acceptance of the catalog change and its commit
# (test hook stall-before-commit): the snapshot does not exist and every
# server drops its cut (test hook snap-gc-ms shortens the wait). (3) After
# both, a snapshot through the restarted server succeeds.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

export PEERD_TEST_HOOKS="stall-before-commit=snapshot vol@s2,snap-gc-ms=3000"
group_weighted 1 1 1
ctl 1 volume create vol 64M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)"
routing_json 1 vol "$T/routing.json"
page1=$(json "next(r['first_page'] for r in d['routing'] if r['owner'] == 1)" <"$T/routing.json")

# a steady writer on the pages of servers 1 and 2 (FUSE orders direct
# writes to one file: one stuck on stopped server 3 would stall the rest)
pages12=$(json "' '.join(str(p) for r in d['routing'] if r['owner'] != 3 for p in range(r['first_page'], r['last_page'] + 1))" <"$T/routing.json")
cat >"$T/writer.sh" <<EOF2
pages=($pages12)
while [ ! -e "$T/stop" ]; do
	p=\${pages[\$((RANDOM % \${#pages[@]}))]}
	dd if=/dev/urandom of="$T/mnt/vol" bs=64K count=1 seek=\$((p * 16 + RANDOM % 16)) oflag=direct conv=notrunc status=none || exit 1
done
EOF2
bash "$T/writer.sh" &
writer=$!
pv_record pids "$writer"

snap_files()
{
	find "$(data_of 1)" "$(data_of 2)" "$(data_of 3)" -name '*.snap' | wc -l
}

# (1) a stalled holder (while server 1's writes go on)
kill -STOP "${PEERD_PID[3]}"
t0=$SECONDS
expect_fail_msg "server(s) 3" ctl 1 snapshot create vol s1 --timeout 2s
((SECONDS - t0 <= 6)) || fail "the failed snapshot took $((SECONDS - t0)) s (timeout 2 s)"
# writes to server 1's pages run again at once
timeout 5 dd if=/dev/zero of="$T/mnt/vol" bs=4K count=1 seek=$((page1 * 256)) oflag=direct \
	conv=notrunc status=none || fail "a write to server 1's page $page1 waits after the abort"
kill -CONT "${PEERD_PID[3]}"
for _ in $(seq 50); do
	[ "$(snap_files)" = 0 ] && break
	sleep 0.2
done
assert_eq "$(snap_files)" 0 "snapshot files left after the aborted snapshot"
for n in 1 2 3; do
	assert_eq "$(ctl "$n" snapshot list --json | json "len(d['snapshots'])")" 0 \
		"snapshots on server $n after the aborted snapshot"
done
log "a stopped holder: the snapshot failed in $((SECONDS - t0)) s, nothing left"
touch "$T/stop"
wait "$writer" || fail "the writer failed (its writes must go on through the aborted snapshot)"
pv_forget pids "$writer"

# (2) the coordinator dies before its commit
"$PEERCTL" -s "$(sock_of 1)" --timeout 60 snapshot create vol s2 >"$T/s2.out" 2>&1 &
ctlpid=$!
deadline=$((SECONDS + 20))
until grep -q "test hook: stalling" "$T/peerd1.log"; do
	((SECONDS < deadline)) || fail "server 1 did not stall before its commit"
	sleep 0.1
done
kill -9 "${PEERD_PID[1]}"
wait "${PEERD_PID[1]}" 2>/dev/null || true
kill "$ctlpid" 2>/dev/null || true # it would wait for the dead server's answer
wait "$ctlpid" 2>/dev/null || true
log "coordinator killed while its catalog change was prepared everywhere"
unset PEERD_TEST_HOOKS
export PEERD_TEST_HOOKS="snap-gc-ms=3000"
start_peerd 1
wait_peerd 1
wait_group_up 1 2 3
for _ in $(seq 100); do
	[ "$(snap_files)" = 0 ] && break
	sleep 0.2
done
assert_eq "$(snap_files)" 0 "snapshot files left after the coordinator died"
for n in 1 2 3; do
	assert_eq "$(ctl "$n" snapshot list --json | json "len(d['snapshots'])")" 0 \
		"snapshots on server $n after the coordinator died"
done
log "a dead coordinator: no snapshot, every cut dropped"

# (3) the group makes snapshots again
ctl 1 snapshot create vol s3 >/dev/null || fail "a snapshot after the failures failed"
for n in 1 2 3; do
	assert_eq "$(ctl "$n" snapshot list --json | json "[s['name'] for s in d['snapshots']]")" \
		'["s3"]' "snapshots on server $n"
done
