#!/usr/bin/env bash
# catalog-stalled-coordinator: a coordinator that stalls longer than the
# catalog lock time after its PREPAREs succeeded (issue 12, defect 1) never
# makes two catalogs under one version. Server 1 runs 'volume create
# stalled' and, once every member accepted its PREPARE, stalls its decision
# for the lock time + 2 s (test hook PEERD_TEST_HOOKS=stall-before-commit,
# peerd/change.c: a SIGSTOP would do the same, but a server stopped that
# long is seen down and nobody starts a change meanwhile; the hook keeps the
# rest of the server, heartbeats included, running). Past the lock time the
# test creates 'other' through server 2. Before the fix server 2's PREPARE
# was accepted everywhere (server 1's lock had expired), 'other' committed,
# and then server 1 committed its own change as the same version: it
# installed it, the others skipped it: two catalogs under one version. Now server 1 aborts its stale change (reported failed) and all
# three end with the same catalog version and hash; what each create
# reported matches the catalog.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

export PEERD_TEST_HOOKS="stall-before-commit=volume stalled "
group_of_three

"$PEERCTL" -s "$(sock_of 1)" --timeout 90 volume create stalled 64M >"$T/stalled.out" 2>&1 &
pa=$!
deadline=$((SECONDS + 15))
until grep -q "test hook: stalling" "$T/peerd1.log"; do
	((SECONDS < deadline)) || fail "server 1 did not stall its decision"
	sleep 0.1
done
log "server 1 stalls after its PREPAREs succeeded; waiting past the lock time (10 s)"
sleep 10.5
"$PEERCTL" -s "$(sock_of 2)" --timeout 90 volume create other 64M >"$T/other.out" 2>&1 &
pb=$!
wait "$pa" && ra=0 || ra=$?
wait "$pb" && rb=0 || rb=$?
log "create stalled through 1 -> exit $ra: $(cat "$T/stalled.out")"
log "create other through 2 -> exit $rb: $(cat "$T/other.out")"

wait_catalogs_agree 30 1 2 3
for n in 1 2 3; do
	names=$(ctl "$n" volume list --json | json "' '.join(sorted(v['name'] for v in d['volumes']))")
	has_stalled=no has_other=no
	[[ " $names " == *" stalled "* ]] && has_stalled=yes
	[[ " $names " == *" other "* ]] && has_other=yes
	assert_eq "$has_stalled" "$([ "$ra" = 0 ] && echo yes || echo no)" \
		"server $n lists 'stalled' as its create reported (exit $ra)"
	assert_eq "$has_other" "$([ "$rb" = 0 ] && echo yes || echo no)" \
		"server $n lists 'other' as its create reported (exit $rb)"
done
[ "$ra" != 0 ] && ! grep -qi "stalled for" "$T/stalled.out" &&
	log "note: the stalled create failed for another reason: $(cat "$T/stalled.out")"
log "one catalog on all three servers: $(catalog_state 1)"
