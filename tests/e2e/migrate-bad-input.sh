#!/usr/bin/env bash
# migrate-bad-input: moves and placement changes that cannot be done are
# refused with one clear line ("peerctl: ..."), a non-zero exit, and
# nothing changed (every server's catalog and routing identical before and
# after): a page that does not exist, a volume that does not exist, a
# reversed range, a piece size that does not divide the page, a target
# that is not a member, not allowed for the volume, or down; a page already
# moving; set-servers naming no server, a non-member or only a down server
# (the pages would be nowhere); evacuate and set-weight of a non-member, a
# weight of 0; group leave of a server that owns pages (says how many).
# A move to the page's owner is no error: exit 0, "already"; but while the
# page is moving away from it, it is refused as moving.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

group_weighted 1 1 1
for n in 1 2 3; do wait_links_up "$n" 2; done
ctl 1 volume create vol 16M --page-size 1M >/dev/null
ctl 1 volume create two 16M --page-size 1M --servers 1,2 >/dev/null

# views WHEN N...: each server N's catalog and both volumes' routing, one
# line each, into $T/viewN.WHEN (three pythons for all the servers).
views()
{
	local when=$1 n c r1 r2
	shift
	c=$(catalog_views "$@")
	r1=$(routing_views vol "$@")
	r2=$(routing_views two "$@")
	for n in "$@"; do
		grep "^$n " <<<"$c"$'\n'"$r1"$'\n'"$r2" | cut -d' ' -f2- >"$T/view$n.$when"
	done
}
snapshot() { views before "$@"; }
unchanged()
{
	local n
	views after "$@"
	for n in "$@"; do
		cmp -s "$T/view$n.before" "$T/view$n.after" ||
			fail "$1: server $n's catalog or routing changed: $(diff "$T/view$n.before" "$T/view$n.after")"
	done
}

# refused RCS REGEX N ARGS...: peerctl ARGS on server N exits with one of
# RCS ("1|5"), nothing on stdout, one line "peerctl: ..." on stderr
# matching REGEX (extended, case-insensitive).
refused()
{
	local rcs=$1 re=$2 n=$3 rc err
	shift 3
	ctl "$n" "$@" >"$T/ctl.out" 2>"$T/ctl.err" && rc=0 || rc=$?
	err=$(cat "$T/ctl.err")
	[[ "|$rcs|" == *"|$rc|"* ]] || fail "peerctl $*: exit $rc, expected $rcs (stderr: $err) (stdout: $(cat "$T/ctl.out"))"
	[ ! -s "$T/ctl.out" ] || fail "peerctl $*: stdout on error: $(cat "$T/ctl.out")"
	[ "$(grep -c '' "$T/ctl.err")" = 1 ] || [ "$rc" = 2 ] || fail "peerctl $*: not one line on stderr: $err"
	[[ $err == "peerctl: "* ]] || fail "peerctl $*: stderr does not start with 'peerctl: ': $err"
	grep -qiE -- "$re" <<<"$(head -n 1 "$T/ctl.err")" || fail "peerctl $*: '$err' does not match /$re/"
	log "ok (exit $rc): peerctl $* -> $err"
}

# owned_by ID VOL: the first page of VOL server ID owns.
owned_by()
{
	local o p=0
	for o in $(owners_of 1 "$2"); do
		[ "$o" = "$1" ] && { echo "$p"; return 0; }
		p=$((p + 1))
	done
	fail "server $1 owns no page of $2"
}
p1=$(owned_by 1 vol)
t1=$(owned_by 1 two)

snapshot 1 2 3
refused "1|5" "page 16\b|16 .*(exist|range|pages)|(exist|range|pages).*\b16\b" 1 page move vol 16 --to 2
refused "1|5" "page 99999|99999" 2 page move vol 99999 --to 2
refused "1|5" "nosuch" 1 page move nosuch 0 --to 2
refused "1|2" "range|first|last|5-2" 1 page move vol 5-2 --to 2
refused "1|2" "piece" 1 page move vol "$p1" --to 2 --piece 3000
refused "1|2" "piece" 1 page move vol "$p1" --to 2 --piece 2M
refused "1|5" "\b9\b.*member|member.*\b9\b" 1 page move vol "$p1" --to 9
refused "1" "allowed|servers of|not .*two|two.*\b3\b" 3 page move two "$t1" --to 3
unchanged 1 2 3

# a move to the owner: nothing to do, and said so
ctl 2 page move vol "$p1" --to 1 >"$T/ok.out" 2>&1 || fail "page move to the owner exited non-zero: $(cat "$T/ok.out")"
grep -qi already "$T/ok.out" || fail "page move to the owner does not say 'already': $(cat "$T/ok.out")"
unchanged 1 2 3

# set-servers that would leave pages nowhere, non-members, weights
refused "1|2|5" "server|empty|at least" 1 volume set-servers vol ""
refused "1|5" "\b9\b" 1 volume set-servers vol 1,9
refused "1|5" "nosuch" 1 volume set-servers nosuch 1,2
refused "1|5" "\b9\b" 1 server evacuate 9
refused "1|5" "\b9\b" 1 group set-weight 9 2
refused "1|2" "weight" 1 group set-weight 2 0
# group leave of a server that owns pages: how many
n2=$(ctl 1 group show --json | json "next(m['pages'] for m in d['members'] if m['id'] == 2)")
((n2 > 0)) || fail "server 2 owns no page"
refused "1" "\b$n2 pages?\b" 1 group leave 2
unchanged 1 2 3

# a page already moving: moves paused, so that it stays in progress
ctl 1 migrate pause >/dev/null || fail "migrate pause failed"
ctl 1 page move vol "$p1" --to 2 --piece 64K --async >"$T/ok.out" 2>&1 ||
	fail "page move --async failed: $(cat "$T/ok.out")"
wait_migration_piece 1 vol "$p1" 0 >/dev/null
refused "1" "moving|in progress|already" 3 page move vol "$p1" --to 3
refused "1" "moving|in progress|already" 1 page move vol "$p1" --to 2
# to its owner while it is leaving: not "already there" (it will not be)
refused "1" "moving|in progress" 2 page move vol "$p1" --to 1
refused "1" "moving|in progress" 1 page move vol "$p1" --to 1
assert_eq "$(page_field 2 vol "$p1" "d['owner']")" 1 "owner of page $p1 while the moves are paused"
ctl 1 migrate resume >/dev/null || fail "migrate resume failed"
wait_page_owner 2 vol "$p1" 2
wait_no_migrations 30 1 2 3
wait_routing_agree 30 vol 1 2 3
log "page $p1 moved to 2 once the refusals were checked"

# a target that is down; set-servers onto a down server only
snapshot 1 2
stop_peerd 3
wait_member_state 1 3 down
p2=$(owned_by 2 vol)
refused "1" "down|unreachable|not up|\b3\b" 1 page move vol "$p2" --to 3
refused "1" "down|unreachable|not up|\b3\b" 2 volume set-servers vol 3
unchanged 1 2
log "every refusal left the catalog and the routing as they were"
