#!/usr/bin/env bash
# security-rotate: rolling a new membership secret with no downtime
# (docs/security.md, "Rolling a new membership secret"). Three servers with
# a group key and a mount with a client key; fio writes and verifies
# through the whole roll while every server is restarted with the key of
# each step in turn (--rotate: phase 1, --finish: phase 2, --finish: the
# old secret dropped), one at a time, the group up again after each
# restart. Then fio's verify is clean, the client key still mounts, and a
# server holding only the old key can no longer join.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

"$PEERCTL" group keygen --out "$T/k0.key" >/dev/null || fail "group keygen failed"
PV_GROUP_ARGS="--auth $T/k0.key" group_weighted 1 1 1
ctl 1 volume create vol 64M >/dev/null
ctl 1 client add host1 --out "$T/host1.key" >/dev/null || fail "client add failed"
mount_fused "$T/m" "$(addr_of 1)" -- --auth "$T/host1.key"
wait_path_exists "$T/m/vol" || fail "vol did not appear"

fio --verify_state_save=0 --name=roll --filename="$T/m/vol" --direct=1 --ioengine=psync --rw=randwrite --bs=16k \
	--size=48M --time_based --runtime=600 --verify=crc32c --do_verify=0 \
	--verify_state_save=1 --output="$T/fio-write.out" \
	>/dev/null 2>&1 &
FIO=$!
PV_PIDS+=("$FIO")
sleep 2

"$PEERCTL" group keygen --rotate "$T/k0.key" --out "$T/k1.key" >"$T/k1.out" ||
	fail "keygen --rotate failed"
grep -q "phase 1" "$T/k1.out" || fail "keygen --rotate said: $(cat "$T/k1.out")"
"$PEERCTL" group keygen --finish "$T/k1.key" --out "$T/k2.key" >/dev/null || fail "keygen --finish (phase 2) failed"
"$PEERCTL" group keygen --finish "$T/k2.key" --out "$T/k3.key" >/dev/null || fail "keygen --finish (end) failed"
grep -q "^roll 1" "$T/k1.key" || fail "k1.key is not phase 1"
grep -q "^roll 2" "$T/k2.key" || fail "k2.key is not phase 2"
grep -q "^previous" "$T/k3.key" && fail "k3.key still holds the previous secret"
EXPECT_RC=1 expect_fail_msg "in a roll already" "$PEERCTL" group keygen --rotate "$T/k1.key" --out "$T/x.key"
EXPECT_RC=1 expect_fail_msg "not in a roll" "$PEERCTL" group keygen --finish "$T/k0.key" --out "$T/x.key"

for step in 1 2 3; do
	for n in 1 2 3; do
		stop_peerd "$n"
		start_peerd "$n" --auth "$T/k$step.key"
		wait_peerd "$n"
		wait_group_up 1 2 3
		kill -0 "$FIO" 2>/dev/null || fail "fio stopped during step $step (server $n): $(tail -n 5 "$T/fio-write.out")"
	done
	log "roll step $step: every server restarted, the group up"
done
grep -q "roll phase 1" "$T/peerd1.log" || fail "server 1 did not say it was in roll phase 1"
grep -q "roll phase 2" "$T/peerd1.log" || fail "server 1 did not say it was in roll phase 2"

kill -INT "$FIO" 2>/dev/null || true
wait "$FIO" 2>/dev/null || true
grep -q "err= 0" "$T/fio-write.out" || fail "fio's writes failed during the roll: $(grep -m1 err= "$T/fio-write.out")"
fio --verify_state_save=0 --name=roll --filename="$T/m/vol" --direct=1 --ioengine=psync --rw=randwrite --bs=16k \
	--size=48M --verify=crc32c --verify_only --verify_state_load=1 --verify_fatal=1 \
	--output="$T/fio-verify.out" ||
	fail "fio verify after the roll failed: $(tail -n 5 "$T/fio-verify.out")"
log "fio wrote through 9 restarts and verifies clean"
umount_fused "$T/m"
mount_fused "$T/m" "$(addr_of 2)" -- --auth "$T/host1.key"
wait_path_exists "$T/m/vol" || fail "the client key does not mount after the roll"

# a server with only the old key: shut out
run_peerd 4 --auth "$T/k0.key"
ctl 4 group join "$(addr_of 1)" --timeout 5 >"$T/join.out" 2>&1 &&
	fail "a server with the old key joined after the roll: $(cat "$T/join.out")"
assert_eq "$(ctl 1 group show --json | json "len(d['members'])")" 3 "members after the old key's join"
log "a server with the old secret cannot join"
log "PASS"
