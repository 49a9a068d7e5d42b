#!/usr/bin/env bash
# balance-quiet: the page rebalancer leaves a group alone when it should.
# Three equal servers, one volume over all (96 pages of 1 MiB),
# balance.interval 1 s. A uniform workload (fio: random 4 KiB reads and
# writes over the whole device, verified) well past the rebalancer's
# floor moves no page, while every rebalancer judges it (idle or fair).
# Then, after 'peerctl balance off', a workload on three pages of server 1
# (which then carries over 60% of the load) moves none either. Moves are
# counted three ways: "rebalance:" and "migrate: ... moved" lines in the
# servers' logs, and the recent moves 'balance status --json' lists.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"
RUNTIME=${PV_QUIET_RUNTIME:-8}

# moves: every page move any server logged or lists, one a line.
moves()
{
	local n
	# page moves only ("rebalance: VOL page P A->B: ..."): client traffic
	# judgements (connbal.c) log "rebalance: server N carries ..." too
	grep -hE -e 'rebalance: [^ ]+ page [0-9]+ [0-9]+->[0-9]+' -e 'migrate: volume .* moved' \
		"$T"/peerd[123].log || true
	for n in 1 2 3; do
		ctl "$n" balance status --json | json "'\n'.join(r['text'] for r in d['recent'])"
	done | grep -E 'rebalance: [^ ]+ page [0-9]+ [0-9]+->[0-9]+' || true
}

# states: each server's rebalancer state, space separated.
states()
{
	local n out=""
	for n in 1 2 3; do out+="$(ctl "$n" balance status --json | json "d['state']") "; done
	echo "${out% }"
}

# all_off: whether every rebalancer is off (else prints their states).
all_off()
{
	local st
	st=$(states)
	[ "$st" = "off off off" ] || { echo "$st"; return 1; }
}

group_weighted 1 1 1
ctl 1 volume create vol 96M --page-size 1M >/dev/null
ctl 2 set balance.interval 1s >/dev/null
routing_json 1 vol "$T/routing.json"
assert_eq "$(pages_by_owner "$T/routing.json" | tr '\n' ' ')" "1 32 2 32 3 32 " "pages per server"

mnt=$T/mnt
mount_fused "$mnt" "$(addr_of 1)"
wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
dev=$(loop_attach "$mnt/vol")

# 1. uniform: the whole device
randrw_job "$T/uniform.fio" "$dev" "$RUNTIME" 96M 0
fio_bg uniform "$T/uniform.fio"
sleep $((RUNTIME / 2 + 1))
ctl 2 load --json >"$T/load-uniform.json"
ctl 2 load >&2
total=$(json "d['total_load']" <"$T/load-uniform.json")
awk -v t="$total" 'BEGIN { exit !(t >= 200) }' ||
	fail "the uniform workload carries $total load/s: too little to judge by (floor 50)"
st=$(states)
log "uniform: $total load/s; rebalancers: $st"
[[ " $st " =~ ^(\ (idle|fair))+\ $ ]] || fail "rebalancer states under a uniform load: $st"
fio_done uniform
sleep 2 # the rates still hold the load: the rebalancers judge on
m=$(moves)
[ -z "$m" ] || fail "pages moved under a uniform workload: $m"
log "uniform workload: no page moved"

# 2. skewed, with the rebalancer off: three pages of server 1
ctl 3 balance off >/dev/null
wait_for 10 "the rebalancers are not all off" all_off
read -r -a hot < <(owned_pages 1 vol 1 3)
[ "${#hot[@]}" = 3 ] || fail "server 1 owns fewer than 3 pages of vol: ${hot[*]}"
randrw_job "$T/hot.fio" "$dev" "$RUNTIME" 1M "${hot[@]/%/M}"
fio_bg hot "$T/hot.fio"
sleep $((RUNTIME / 2 + 1))
share=$(share_of 2 1)
ctl 2 load >&2
log "skewed: server 1 carries $share of the load"
awk -v s="$share" 'BEGIN { exit !(s > 0.6) }' ||
	fail "server 1's share $share is not over 60% under a load on its pages"
fio_done hot
sleep 2
m=$(moves)
[ -z "$m" ] || fail "pages moved with the rebalancer off: $m"
all_off || fail "rebalancer states after a skewed load with balance off: $(states)"
loop_detach "$dev"
umount_fused "$mnt"
log "no page moved: uniform load, and balance off under a skewed one"
