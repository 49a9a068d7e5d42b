#!/usr/bin/env bash
# group-bad-input: wrong group and volume commands get a clear error (exit 1,
# one 'peerctl: ' line naming the problem) and change nothing in any
# server's catalog ('group show --json' / 'volume list --json'): joining
# through an address where nothing listens, joining twice, init of a
# member, a duplicate server id, a server with volumes joining, --servers
# naming an unknown or repeated server. Peer messages from a server that is not a member are refused
# (REFUSED) and logged, and change nothing either.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"
need_cmd python3

group_of_three
ctl 1 volume create keep 64M >/dev/null
# Outsiders: 4 is a fresh server, 5 a fresh server with a volume of its own,
# 6 claims id 2 (a member's id) on 127.0.0.6.
start_peerd 4 --max-volume-size 1P
start_peerd 5
mkdir -p "$(data_of 6)"
echo "=== $(date +%T) start: peerd --id 2 --listen $(addr_of 6) ===" >>"$T/peerd6.log"
"$PEERD" --id 2 --listen "$(addr_of 6)" --data "$(data_of 6)" --control "$(sock_of 6)" \
	</dev/null >>"$T/peerd6.log" 2>&1 &
PEERD_PID[6]=$!
PV_PIDS+=("$!")
wait_peerd 4
wait_peerd 5
wait_peerd 6
ctl 5 volume create mine 16M >/dev/null

# Every server's catalog view before; unchanged() compares with it.
declare -A VIEW=()
views=$(catalog_views 1 2 3 4 5 6)
while read -r n v; do VIEW[$n]=$v; done <<<"$views"
unchanged()
{
	local n v views
	views=$(catalog_views 1 2 3 4 5 6)
	assert_eq "$(wc -l <<<"$views")" 6 "catalog views after: $*"
	while read -r n v; do
		assert_eq "$v" "${VIEW[$n]}" "server $n's catalog after: $*"
	done <<<"$views"
}
all_up()
{
	wait_group_up 1 2 3
}

# ---------------------------------------------------------------- join
# Nothing listens on 127.0.0.9:$PV_PORT: server 4's join waits for an
# answer until its own bound (25 s, well within peerctl's --timeout 60).
# It runs in the background while the checks below, none on server 4, go
# on; it is waited for (and server 4 given its next check) after them.
t0=$SECONDS
(
	PV_CTL_FILES=$T/ctl-dead expect_ctl_error 4 1 "no answer|not answer|unreachable|listening|refused|connect" \
		--timeout 60 group join "tcp://127.0.0.9:$PV_PORT"
	echo $((SECONDS - t0)) >"$T/dead-join.secs"
) &
dead_join=$!
PV_PIDS+=("$dead_join")

# A member joins again, through the member it joined by and through another:
# a join is safe to retry (issue 12, defect 2), so it succeeds and changes
# nothing; joining its own address is refused.
ctl 2 group join "$(addr_of 1)" >/dev/null || fail "a member joining its group again failed"
ctl 2 group join "$(addr_of 3)" >/dev/null || fail "a member joining its group again failed"
expect_ctl_error 3 1 "own address" group join "$(addr_of 3)"
expect_ctl_error 1 1 "already" group init
unchanged "a member joining again / init of a member"

# A duplicate server id: another peerd with --id 2.
expect_ctl_error 6 1 "id 2|server 2|duplicate|already a member" group join "$(addr_of 1)"
expect_ctl_error 6 1 "id 2|server 2|duplicate|already a member" group join "$(addr_of 3)"
unchanged "a server with a member's id joining"

# A server with a volume of its own may not join.
expect_ctl_error 5 1 "volume" group join "$(addr_of 2)"
unchanged "a server with volumes joining"

all_up

# ---------------------------------------------------------------- volume create
for n in 1 2 3; do
	expect_ctl_error "$n" 1 "server 7" volume create bad 64M --servers 2,7
done
expect_ctl_error 2 1 "server 2|twice|duplicate" volume create bad 64M --servers 2,2
unchanged "volume create with --servers naming an unknown/repeated server"


# ---------------------------------------------------------------- peer messages from outsiders
# HEARTBEAT (64) from server 99, and from the receiver's own id; CAT_FETCH
# (68, members only: the catalog must not leak) from server 99.
for n in 1 2; do
	r=$(pv_send_peer_msg "$(addr_of "$n")" 64 99)
	[[ $r == "10 "* ]] || fail "HEARTBEAT from server 99 to server $n: expected REFUSED (10), got '$r'"
	grep -qi "99" <<<"$r" || fail "HEARTBEAT from server 99 refused without naming it: '$r'"
	log "HEARTBEAT from server 99 to server $n: $r"
done
r=$(pv_send_peer_msg "$(addr_of 1)" 64 1)
[[ $r == "10 "* ]] || fail "HEARTBEAT claiming the receiver's own id 1: expected REFUSED (10), got '$r'"
r=$(pv_send_peer_msg "$(addr_of 3)" 68 99)
[[ $r == "10 "* ]] || fail "CAT_FETCH from server 99: expected REFUSED (10), got '$r'"
log "CAT_FETCH from server 99: $r"
grep -qiE "(heartbeat|message).*(server 99|99).*refused|refused.*99" "$T/peerd1.log" ||
	fail "server 1 did not log the refused heartbeat from server 99"
unchanged "peer messages from a non-member"
all_up

# ---------------------------------------------------------------- join, continued
wait "$dead_join" || fail "server 4's join through an address where nothing listens: see above"
secs=$(cat "$T/dead-join.secs")
((secs <= 40)) || fail "join through a dead address took ${secs}s"
log "join through a dead address failed after ${secs}s"
unchanged "join through an address where nothing listens"

# A bad address.
expect_ctl_error 4 1 "address|endpoint|invalid|tcp" group join "not-an-address"
unchanged "join with a malformed address"
all_up

# ---------------------------------------------------------------- a good join, then again
ctl 4 group join "$(addr_of 3)" >/dev/null || fail "a fresh server could not join after all that"
wait_group_up 1 2 3 4
v=$(catalog_view 4)
for n in 1 2 3; do assert_eq "$(catalog_view "$n")" "$v" "server $n's catalog vs the new member's"; done
ctl 4 group join "$(addr_of 1)" >/dev/null || fail "joining the same group again failed"
assert_eq "$(catalog_view 1)" "$v" "server 1's catalog after the new member joined again"
log "a fresh server joins; joining again succeeds and changes nothing"
