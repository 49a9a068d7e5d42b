#!/usr/bin/env bash
# health: 'peerctl health' tells at a glance whether the group is healthy,
# by its first line and its exit status (0 HEALTH_OK, 4 HEALTH_ERR): a
# member that is down is named, and so is every volume with pages on it,
# with the share that cannot be reached; 'volume list' shows such a volume
# as degraded in its STATE column; all is well again once the member is
# back; a volume larger than the free space is created (volumes are thin)
# and shown as overcommitted (HEALTH_WARN, 3). The JSON form carries the
# same.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

group_of_three
ctl 1 volume create spread 64M >/dev/null
ctl 1 volume create onone 16M --servers 1 >/dev/null

ctl 1 health >"$T/h.out" && rc=0 || rc=$?
assert_eq "$rc" 0 "health exit status with every member up ($(cat "$T/h.out"))"
assert_eq "$(head -n 1 "$T/h.out")" HEALTH_OK "health of a group with every member up"
grep -q "space: 80.0 MiB provisioned in 2 volumes" "$T/h.out" || fail "health: no space line: $(cat "$T/h.out")"
assert_eq "$(ctl 1 volume list | awk '$1 == "spread" { print $NF }')" ok "STATE of spread with all up"

# volumes are thin: one larger than all the group has free is created,
# logged and shown as overcommitted (HEALTH_WARN), and deleted again
room=$(ctl 1 group show --json | json "sum(m['free'] + m['bytes'] for m in d['members'])")
big=$(((room / (1 << 30) + 8) * 2))G
ctl 2 volume create thin "$big" >/dev/null || fail "a thin volume of $big, over the group's free space, was refused"
ctl 1 health >"$T/h.out" && rc=0 || rc=$?
assert_eq "$rc" 3 "health exit status when overcommitted ($(cat "$T/h.out"))"
assert_eq "$(head -n 1 "$T/h.out")" HEALTH_WARN "health when overcommitted"
grep -q "overcommitted: the volumes provision" "$T/h.out" || fail "health does not say overcommitted: $(cat "$T/h.out")"
grep -q "volume thin .* overcommitted" "$T/peerd2.log" || fail "server 2 did not log the overcommitment"
ctl 1 volume delete thin >/dev/null
ctl 1 health >/dev/null || fail "health not OK after the thin volume was deleted"

routing_json 1 spread "$T/routing.json"
pages2=$(json "sum(r['last_page'] - r['first_page'] + 1 for r in d['routing'] if r['owner'] == 2)" <"$T/routing.json")
((pages2 > 0)) || fail "server 2 owns no page of spread"
kill9_peerd 2
wait_member_state 1 2 down
ctl 1 health >"$T/h.out" && rc=0 || rc=$?
assert_eq "$rc" 4 "health exit status with a member down ($(cat "$T/h.out"))"
assert_eq "$(head -n 1 "$T/h.out")" HEALTH_ERR "health with a member down"
grep -q "server 2 (.*) is down" "$T/h.out" || fail "health does not name server 2 as down: $(cat "$T/h.out")"
grep -q "volume spread: $pages2 of its 16 pages" "$T/h.out" || fail "health does not say how much of spread is unreachable: $(cat "$T/h.out")"
grep -q "volume onone" "$T/h.out" && fail "health names onone, which has no page on server 2: $(cat "$T/h.out")"
assert_eq "$(ctl 1 volume list | awk '$1 == "spread" { print $(NF-3), $(NF-2), $(NF-1), $NF }')" "degraded: server 2 down" "STATE of spread with server 2 down"
assert_eq "$(ctl 1 volume list | awk '$1 == "onone" { print $NF }')" ok "STATE of onone with server 2 down"
assert_eq "$(ctl 1 --json health | json 'd["status"]')" HEALTH_ERR "health --json status"
log "with server 2 down: $(tr '\n' '|' <"$T/h.out")"

run_peerd 2
wait_member_state 1 2 up
ctl 1 health >"$T/h.out" && rc=0 || rc=$?
assert_eq "$rc" 0 "health exit status once server 2 is back ($(cat "$T/h.out"))"
