#!/usr/bin/env bash
# group-load-balance: the load monitor and the page rebalancer on a group of
# three equal servers (balance.interval 1 s). An idle group moves nothing.
# Then fio (random 4 KiB reads and writes, verify=crc32c) on three pages
# owned by server 1: 'peerctl load' asked of each server gives the same
# figures (the same fold, or within an exchange interval), server 1 carries
# over 60% of the load at first; the rebalancer moves hot pages off it,
# logging each move with its reason, until its share is under 50%; no page
# moves twice; fio verifies clean throughout.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_weighted 1 1 1
ctl 1 volume create vol 96M --page-size 1M >/dev/null
ctl 2 set balance.interval 1s >/dev/null
assert_eq "$(ctl 3 balance status --json | json "[d['on'], d['interval_s']]")" "[true, 1]" \
	"balance status on server 3"

# idle: several intervals, nothing moves
sleep 5
for n in 1 2 3; do
	grep -q 'rebalance:' "$T/peerd$n.log" && fail "server $n moved a page of an idle group"
	state=$(ctl "$n" balance status --json | json "d['state']")
	[ "$state" = idle ] || fail "server $n: balance state '$state' on an idle group, expected idle"
done
log "idle group: no move"

read -r -a hot < <(owned_pages 1 vol 1 3)
[ "${#hot[@]}" = 3 ] || fail "server 1 owns fewer than 3 pages of vol: ${hot[*]}"
log "hot pages (owned by server 1): ${hot[*]}"

mnt=$T/mnt
mount_fused "$mnt" "$(addr_of 1)"
wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
dev=$(loop_attach "$mnt/vol")
randrw_job "$T/hot.fio" "$dev" "${PV_LOAD_RUNTIME:-80}" 1M "${hot[@]/%/M}"
timeout 200 fio --output-format=json --output="$T/fio-hot.json" "$T/hot.fio" &
fio_pid=$!
PV_PIDS+=("$fio_pid")

sleep 3
first=$(share_of 2 1)
log "server 1 carries $first of the load (as server 2 sees it)"
python3 -c "import sys; sys.exit(0 if $first > 0.6 else 1)" || fail "server 1's share $first is not over 60% under a load on its pages"
# the figures agree: one server's line in each server's view is the same
# fold (same at_ms: the same numbers) or one at most an exchange interval
# (a heartbeat, 1 s, and its delivery) apart; three rounds of views
same=0
for round in 1 2 3; do
	for i in 1 2 3; do ctl "$i" load --json >"$T/load$i.json"; done
	n=$(python3 - "$T"/load1.json "$T"/load2.json "$T"/load3.json <<'EOF'
import json, sys
views = [json.load(open(f)) for f in sys.argv[1:]]
same = 0
for sid in (1, 2, 3):
    lines = [[s for s in v["servers"] if s["id"] == sid][0] for v in views]
    for a in lines[1:]:
        b = lines[0]
        assert a["figures"] and b["figures"], (sid, "no figures")
        dt = abs(a["at_ms"] - b["at_ms"])
        assert dt <= 2500, (sid, "folds", dt, "ms apart")
        if dt == 0:
            for k in ("load", "read_iops", "write_iops", "p99_us"):
                assert a[k] == b[k], (sid, k, a[k], b[k])
            same += 1
print(same)
EOF
) || fail "load figures differ between servers (views in $T/load*.json)"
	same=$((same + n))
done
((same > 0)) || fail "no two servers showed the same fold of a member in three rounds"
log "load figures agree between servers ($same lines from the same fold)"
ctl 1 load --pages vol >"$T/pages.txt"
grep -qE "^vol +${hot[0]} " "$T/pages.txt" || { cat "$T/pages.txt" >&2; fail "load --pages vol does not list hot page ${hot[0]}"; }
ctl 3 load >&2
ctl 3 load --clients >&2

# the rebalancer sheds pages until server 1's share is under 50%: with one
# of its three hot pages left, plus its work as the client's entry server,
# it settles at 41-45% (45% under the sanitizers, slower there), from 60-100%
deadline=$((SECONDS + ${PV_LOAD_CONVERGE:-70}))
while :; do
	share=$(share_of 1 1)
	python3 -c "import sys; sys.exit(0 if $share < 0.50 else 1)" && break
	((SECONDS < deadline)) || { ctl 1 balance status >&2; ctl 1 load >&2; fail "server 1 still carries $share of the load"; }
	kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the load was balanced"
	log "server 1: share $share, rebalancer $(ctl 1 balance status --json | json "d['state']")"
	sleep 2
done
log "server 1 now carries $share of the load"
ctl 2 load >&2
ctl 1 balance status >&2
grep -h 'rebalance:' "$T"/peerd1.log >&2 || fail "no rebalance line in server 1's log"
grep -qE 'rebalance: vol page [0-9]+ 1->[23]: server 1 carries [0-9]+% of the load, fair share 33%, page [0-9]+ carries [0-9]+%' \
	"$T/peerd1.log" || fail "the rebalance line does not give its reason"
ctl 3 balance status --json | json "d['recent']" | grep -q 'rebalance: vol page' ||
	fail "balance status on server 3 does not show server 1's move"

wait "$fio_pid" || { cat "$T/fio-hot.json" >&2; fail "fio failed"; }
check_fio "$T/fio-hot.json" hot-pages
# no page moved twice: no back and forth
dup=$(grep -ho 'rebalance: vol page [0-9]*' "$T"/peerd*.log | sort | uniq -d)
[ -z "$dup" ] || fail "pages moved more than once: $dup"
loop_detach "$dev"
umount_fused "$mnt"
log "hot pages moved off server 1, each once, fio verify clean"
