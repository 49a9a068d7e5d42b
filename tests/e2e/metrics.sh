#!/usr/bin/env bash
# metrics: peerd --metrics-listen serves the Prometheus text format. Two
# servers, each with its metrics on 127.0.0.N:MPORT; what /metrics answers
# passes a strict checker of the format (tests/tools/check-prom-text.py;
# 'promtool check metrics' too where it is installed) before and after IO;
# the group's picture agrees (both members up on both, one catalog
# version, every page owned once); after fio (random writes, verified) the
# request, byte and latency counters rose on both servers, by at least
# what fio did; another path is 404, another method 405; a second peerd
# on a metrics address in use fails to start and says why; a server with
# metrics stops cleanly.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio curl
need_bin "$PEERD" "$PEERCTL" "$FUSED"
CHECK=$PV_REPO/tests/tools/check-prom-text.py

MPORT=$(pv_free_port)
while [ "$MPORT" = "$PV_PORT" ]; do MPORT=$(pv_free_port); done
murl() { echo "http://127.0.0.$1:$MPORT${2:-/metrics}"; }

# scrape N FILE: server N's /metrics into FILE, checked strictly.
scrape()
{
	curl -sS --max-time 5 -o "$2" "$(murl "$1")" || fail "server $1: curl $(murl "$1") failed"
	"$PYTHON" "$CHECK" --prefix peervol_ "$2" || fail "server $1: /metrics is not valid (in $2)"
	if command -v promtool >/dev/null; then
		promtool check metrics <"$2" || fail "server $1: promtool check metrics failed"
	fi
}

# values FILE 'NAME{label="v",...}'...: for each series, the sum of the
# matching samples in FILE, one a line.
values()
{
	local file=$1 q=() s
	shift
	for s in "$@"; do q+=(--sum "$s"); done
	"$PYTHON" "$CHECK" "${q[@]}" "$file" 2>/dev/null
}

# at_least A B: whether A >= B (numbers).
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# shows N 'SERIES' MIN: whether server N's /metrics has SERIES (summed) at
# MIN or more now (else prints what it has).
shows()
{
	local v
	curl -sS --max-time 5 -o "$T/now$1.txt" "$(murl "$1")" || return 1
	v=$(values "$T/now$1.txt" "$2")
	at_least "$v" "$3" || { echo "$2 is $v"; return 1; }
}

for n in 1 2; do start_peerd "$n" --metrics-listen "127.0.0.$n:$MPORT"; done
for n in 1 2; do wait_peerd "$n"; done
for n in 1 2; do
	grep -qF "metrics on $(murl "$n")" "$T/peerd$n.log" ||
		fail "server $n did not log its metrics address"
done
ctl 1 group init >/dev/null
ctl 2 group join "$(addr_of 1)" >/dev/null
wait_group_up 1 2
ctl 1 volume create vol 32M --page-size 1M >/dev/null

# the format, and the group's picture, before any IO
for n in 1 2; do
	wait_for 10 "server $n: metrics do not show both members up" \
		shows "$n" 'peervol_member_up' 2
	wait_for 10 "server $n: metrics do not show the volume" \
		shows "$n" 'peervol_volume_pages{volume="vol"}' 32
	scrape "$n" "$T/before$n.txt"
done
{ read -r v1; read -r o1; } < <(values "$T/before1.txt" peervol_catalog_version peervol_pages_owned)
{ read -r v2; read -r o2; read -r up1; } < <(values "$T/before2.txt" peervol_catalog_version \
	peervol_pages_owned 'peervol_member_up{server="1"}')
assert_eq "$v1" "$v2" "catalog version in server 1's and server 2's metrics"
assert_eq "$up1" 1 "server 1 up, as server 2 shows it"
assert_eq "$((o1 + o2))" 32 "pages of vol owned by servers 1 and 2 together"
grep -q '^# TYPE peervol_request_duration_seconds histogram$' "$T/before1.txt" ||
	fail "no latency histogram"
log "metrics valid on both servers; catalog version $v1; 32 pages owned once"

# bad requests: another path, another method
code() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }
assert_eq "$(code "$(murl 1 /)")" 404 "GET /"
assert_eq "$(code "$(murl 1 /metricsx)")" 404 "GET /metricsx"
assert_eq "$(code -X POST -d x=1 "$(murl 1)")" 405 "POST /metrics"
assert_eq "$(code -X DELETE "$(murl 2)")" 405 "DELETE /metrics"
curl -sS --max-time 5 -o /dev/null -D "$T/headers" "$(murl 1)"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/headers" ||
	fail "content type: $(grep -i content-type "$T/headers")"
log "404 for other paths, 405 for other methods, text/plain version 0.0.4"

# IO: 1024 random 4 KiB writes over the volume (both servers' pages), verified
mnt=$T/mnt
mount_fused "$mnt" "$(addr_of 1)"
wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
dev=$(loop_attach "$mnt/vol")
fio_job "$T/io.fio" "$dev" 14
printf '\n[w]\nrw=randwrite\nbs=4k\niodepth=8\nsize=32M\nio_size=4M\n' >>"$T/io.fio"
run_fio io "$T/io.fio"

# counters rise: what fio did shows within a fold and a rendering (2 s)
writes=0 wbytes=0 reads=0 answered=0
for n in 1 2; do
	wait_for 10 "server $n: its write counter did not rise" \
		shows "$n" 'peervol_requests_total{op="write",volume="vol"}' 1
done
sleep 2 # fio's last second folded (load.c) and rendered (metrics.c) on both
for n in 1 2; do
	scrape "$n" "$T/after$n.txt"
	{ read -r w; read -r r; read -r wb; read -r c; } < <(values "$T/after$n.txt" \
		'peervol_requests_total{op="write",volume="vol"}' \
		'peervol_requests_total{op="read",volume="vol"}' \
		'peervol_bytes_total{op="write",volume="vol"}' peervol_request_duration_seconds_count)
	c0=$(values "$T/before$n.txt" peervol_request_duration_seconds_count)
	log "server $n: $w writes ($wb bytes), $r reads served; $c answers timed (before: $c0)"
	at_least "$w" 100 || fail "server $n served only $w writes of fio's 1024 spread over both"
	at_least "$r" 100 || fail "server $n served only $r reads (fio's verify)"
	at_least "$c" "$((c0 + 100))" || fail "server $n: the latency histogram did not count fio's requests"
	writes=$(($(printf '%.0f' "$w") + writes))
	reads=$(($(printf '%.0f' "$r") + reads))
	wbytes=$(($(printf '%.0f' "$wb") + wbytes))
done
at_least "$writes" 1024 || fail "writes served, both servers: $writes, fio wrote 1024"
at_least "$reads" 1024 || fail "reads served, both servers: $reads, fio verified 1024"
at_least "$wbytes" $((4 << 20)) || fail "bytes written, both servers: $wbytes, fio wrote 4 MiB"
share=$(values "$T/after1.txt" 'peervol_member_load_share')
at_least "$share" 0.99 || fail "the members' load shares add up to $share in server 1's metrics"
log "counters rose: $writes writes ($wbytes bytes) and $reads reads on the two servers"

loop_detach "$dev"
umount_fused "$mnt"

# a metrics address in use: a clear start-up error, exit 1
EXPECT_RC=1 expect_fail_msg "cannot serve metrics on 127.0.0.1:$MPORT: Address already in use" \
	timeout 30 "$PEERD" --id 3 --listen "tcp://127.0.0.3:$PV_PORT" --data "$T/d3" \
	--control "$T/c3.sock" --metrics-listen "127.0.0.1:$MPORT"
# and a server with metrics stops cleanly (its HTTP thread joined)
stop_peerd 2
stop_peerd 1
log "metrics served, valid, rising with IO; a busy address refused"
