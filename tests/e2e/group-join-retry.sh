#!/usr/bin/env bash
# group-join-retry: a JOIN whose answer is lost does not wedge the group
# (issue 12, defect 2). Servers 1 and 2 form a group; server 3 sends JOIN to
# server 1 while server 2 is stopped (SIGSTOP), so the change that adds
# server 3 waits for server 2's answer; server 3 is killed (kill -9) before
# the change commits, then server 2 is continued: the group commits server 3
# as a member and the answer goes nowhere. Server 3 restarts as a group of
# one. A retried 'group join' must succeed (the member answers a JOIN from a
# server already listed with the same id and address with the committed
# catalog), and the group must work: a volume create through each server
# commits on all three, which agree on the catalog.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

for n in 1 2 3; do start_peerd "$n"; done
for n in 1 2 3; do wait_peerd "$n"; done
ctl 1 group init >/dev/null
ctl 2 group join "$(addr_of 1)" >/dev/null
wait_group_up 1 2

# The change adding server 3 cannot commit while server 2 is stopped (it
# needs every member); server 3 dies before it does.
kill -STOP "${PEERD_PID[2]}"
log "server 2 stopped"
ctl 3 group join "$(addr_of 1)" >"$T/join1.out" 2>&1 &
join_pid=$!
PV_PIDS+=("$join_pid")
deadline=$((SECONDS + 10))
until grep -q "joining the group at" "$T/peerd3.log"; do
	((SECONDS < deadline)) || fail "server 3 did not send JOIN"
	sleep 0.05
done
# server 1 has the JOIN and waits for server 2 (which is marked down only
# after 3 s without heartbeats, and fails the change after 5 s)
sleep 0.5
kill9_peerd 3
kill "$join_pid" 2>/dev/null || true # peerctl would wait its 30 s
kill -CONT "${PEERD_PID[2]}"
log "server 3 killed before the commit; server 2 continued"
deadline=$((SECONDS + 15))
until grep -q "catalog change 'add server 3.*committed" "$T/peerd1.log"; do
	((SECONDS < deadline)) || fail "the group did not commit server 3 (see peerd1.log)"
	sleep 0.2
done
log "the group committed server 3; its answer was lost"
[ "$(ctl 1 group show --json | json "len(d['members'])")" = 3 ] ||
	fail "server 1 does not list server 3"

# server 3 comes back a group of one, listed as a member by the group
run_peerd 3
[ "$(ctl 3 group show --json | json "len(d['members'])")" = 1 ] ||
	log "server 3 healed by itself before the retry"

# the retry succeeds (whether or not server 3 healed meanwhile)
ctl 3 group join "$(addr_of 1)" >"$T/join2.out" 2>&1 ||
	fail "retried group join failed: $(cat "$T/join2.out")"
log "retried group join: $(head -n 1 "$T/join2.out")"
[ "$(ctl 3 group show --json | json "len(d['members'])")" = 3 ] ||
	fail "server 3 is not in the group of three after the retry"
wait_group_up 1 2 3

# the group works: a volume create through each server commits everywhere
for n in 1 2 3; do
	ctl "$n" volume create "v$n" 64M >/dev/null || fail "volume create through server $n failed"
done
for n in 1 2 3; do
	assert_eq "$(ctl "$n" volume list --json | json "len(d['volumes'])")" 3 "volumes on server $n"
done
same_catalog 1 2 3
log "all three servers hold the same catalog with the three volumes"

# a JOIN repeated by a member is answered, not refused
ctl 3 group join "$(addr_of 2)" >/dev/null || fail "a repeated join through server 2 failed"
log "a repeated join is answered (idempotent)"
grep -q "asked to join again: already a member" "$T/peerd1.log" ||
	fail "server 1 never answered a repeated JOIN with its catalog"
