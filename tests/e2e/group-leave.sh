#!/usr/bin/env bash
# group-leave: a member that owns no pages leaves the group cleanly: it is
# told and becomes a group of one again (and may join again); a member that
# owns pages is refused, naming how many (move them off first: server evacuate).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

group_of_three
ctl 1 volume create vol 64M --servers 1,2 >/dev/null
v_before=$(catalog_view 1)

expect_ctl_error 2 1 "server 1 owns 8 pages .*peerctl server evacuate 1" group leave 1
expect_ctl_error 1 5 "not a member" group leave 9
assert_eq "$(catalog_view 1)" "$v_before" "catalog after refused leaves"

gid=$(status_field 1 group_id)
ctl 1 group leave 3 >"$T/leave.out" || fail "group leave 3 failed"
grep -q "server 3 left the group" "$T/leave.out" || fail "unexpected output: $(cat "$T/leave.out")"
same_catalog 1 2
assert_eq "$(ctl 1 group show --json | json "[m['id'] for m in d['members']]")" "[1, 2]" "members"
# server 3 was told: a group of one again, without the group's volumes
deadline=$((SECONDS + 15))
until [ "$(ctl 3 group show --json | json "len(d['members'])")" = 1 ]; do
	((SECONDS < deadline)) || fail "server 3 is not a group of one after leaving"
	sleep 0.3
done
[ "$(status_field 3 group_id)" != "$gid" ] || fail "server 3 kept the group id"
assert_eq "$(ctl 3 volume list --json | json "len(d['volumes'])")" 0 "volumes on server 3"
assert_eq "$(status_field 3 state)" member "server 3's state"
ctl 2 volume create vol2 64M >/dev/null || fail "volume create after the leave failed"
same_catalog 1 2
log "server 3 left; the group of two works"

# it may come back (it owned nothing)
ctl 3 group join "$(addr_of 2)" >/dev/null || fail "server 3 could not join again"
wait_group_up 1 2 3
same_catalog 1 2 3
log "server 3 joined again"
