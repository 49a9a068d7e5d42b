#!/usr/bin/env bash
# group-remove: a member that is down for good can be removed, and losing
# its pages is never silent (issue 12, defect 4). Three servers, a volume
# across all, data written to a page of server 1 and one of server 3;
# 'group remove 3' is refused while server 3 is up; server 3 is killed
# (kill -9); without --force the command names the pages lost per volume
# and changes nothing; with --force the two others commit the change
# without server 3 and catalog changes work again (volume create); reads of
# server 1's page return its data, reads and writes of server 3's page fail
# with an I/O error (the page is lost: no second copy); server 3, restarted,
# is refused by the members, says so in its log and in 'status' (state
# removed) and refuses commands.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_of_three
ctl 1 volume create vol 64M >/dev/null
routing_json 1 vol "$T/routing.json"
p1=$(json "next(r['first_page'] for r in d['routing'] if r['owner'] == 1)" <"$T/routing.json")
p3=$(json "next(r['first_page'] for r in d['routing'] if r['owner'] == 3)" <"$T/routing.json")
n3=$(pages_by_owner "$T/routing.json" | awk '$1 == 3 {print $2}')
log "page $p1 is server 1's, page $p3 server 3's; server 3 owns $n3 pages"

mount_fused "$T/mnt" "$(addr_of 1),$(addr_of 2)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
make_random "$T/data" 4
for p in "$p1" "$p3"; do
	dd if="$T/data" of="$T/mnt/vol" bs=1M seek=$((p * 4)) count=4 oflag=direct conv=notrunc \
		status=none || fail "write of page $p failed"
done

# refused while it is up
expect_ctl_error 1 1 "server 3 .* is up" group remove 3 --force
kill9_peerd 3
wait_member_state 1 3 down
wait_member_state 2 3 down
v_before=$(catalog_view 1)

# without --force: what is lost, and nothing changes
expect_ctl_error 1 1 "loses the $n3 pages .*volume vol: $n3 of 16 pages.*--force" group remove 3
assert_eq "$(catalog_view 1)" "$v_before" "catalog after group remove without --force"
# a catalog change still needs server 3 (that is what remove is for)
expect_ctl_error 2 1 "server 3" volume create blocked 64M

ctl 2 group remove 3 --force >"$T/remove.out" || fail "group remove 3 --force failed"
cat "$T/remove.out" >&2
grep -q "server 3 removed from the group" "$T/remove.out" || fail "no 'removed' line"
grep -q "lost: volume vol, $n3 pages" "$T/remove.out" || fail "the loss was not printed"
same_catalog 1 2
assert_eq "$(ctl 1 group show --json | json "[m['id'] for m in d['members']]")" "[1, 2]" "members"
assert_eq "$(ctl 1 group show --json | json "[(r['id'], r['how']) for r in d['removed']]")" \
	'[[3, "removed"]]' "removed list"
assert_eq "$(ctl 1 volume show vol --json | json "d['pages_lost']")" "$n3" "pages_lost of vol"

# catalog changes work again with the remaining members
ctl 1 volume create vol2 64M >/dev/null || fail "volume create after the removal failed"
ctl 2 volume delete vol2 >/dev/null || fail "volume delete after the removal failed"
same_catalog 1 2
log "catalog changes work again with servers 1 and 2"

# IO: server 1's page reads back; server 3's page fails, reads and writes
assert_eq "$(range_sum "$T/mnt/vol" $((p1 * 4)) 4)" "$(range_sum "$T/data" 0 4)" "page $p1 data"
out=$(timeout 60 dd if="$T/mnt/vol" of=/dev/null bs=1M skip=$((p3 * 4)) count=4 iflag=direct \
	2>&1) && fail "read of lost page $p3 succeeded"
grep -qi "input/output error" <<<"$out" || fail "read of lost page $p3: $out"
out=$(timeout 60 dd if="$T/data" of="$T/mnt/vol" bs=1M seek=$((p3 * 4)) count=4 oflag=direct \
	conv=notrunc 2>&1) && fail "write of lost page $p3 succeeded"
grep -qi "input/output error" <<<"$out" || fail "write of lost page $p3: $out"
grep -q "page $p3 is lost: its owner, server 3, was removed" "$T"/fused*.log "$T"/peerd*.log ||
	fail "no log names the lost page $p3"
log "IO to the lost page fails with an I/O error; server 1's page reads back"

# server 3 comes back: refused, and it knows
start_peerd 3
wait_status 3 state removed 20
status_field 3 removed | grep -q "server 3 was removed from group" || fail "status: $(ctl 3 status)"
grep -q "server 3 was removed from group" "$T/peerd3.log" || fail "server 3 did not log its removal"
grep -q "server 3 was removed from the group at catalog version" "$T/peerd1.log" ||
	fail "server 1 did not log refusing the removed server"
expect_ctl_error 3 1 "removed" volume create x 64M
r=$(pv_send_peer_msg "$(addr_of 2)" 64 3)
[[ $r == "10 server 3 was removed from the group at catalog version "* ]] ||
	fail "HEARTBEAT from server 3: '$r'"
assert_eq "$(ctl 1 group show --json | json "[m['id'] for m in d['members']]")" "[1, 2]" \
	"members after server 3 came back"
log "the removed server is refused and says so"
umount_fused "$T/mnt"
