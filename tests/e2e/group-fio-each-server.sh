#!/usr/bin/env bash
# group-fio-each-server: fio verify=crc32c (random 4 KiB, sequential 1 MiB,
# and 768 KiB writes that cross page boundaries) on a volume spread over a
# group of three, with fused given only one server's address, for each of
# the three servers in turn: zero errors. Then every round's region is
# verified once more through another server than the one that wrote it.
# Everything goes on links (include/link.h): fused's to the server it was
# given, and between the servers: every server has a link up to each other
# one, and records went both ways. (BATCH, the ZeroMQ path's batching, is
# checked in group-links, where one server has no links.)
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_of_three
for n in 1 2 3; do wait_links_up "$n" 2; done
# 3 regions of 128 MiB, one per round; pages of 4 MiB over servers 1,2,3.
ctl 3 volume create vol 384M >/dev/null
assert_eq "$(ctl 1 volume show vol --json | json "sorted(d['holders'])")" "[1, 2, 3]" "holders of vol"

# jobfile DEV ROUND FILE: region ROUND (1..3) of the volume, its own seed.
jobfile()
{
	local base=$((($2 - 1) * 128))
	cat >"$3" <<EOF
[global]
filename=$1
direct=1
ioengine=libaio
verify=crc32c
verify_fatal=1
verify_dump=0
do_verify=1
randrepeat=1
randseed=$((4242 + $2))
runtime=100

[rand]
rw=randwrite
bs=4k
iodepth=16
offset=${base}M
size=64M
io_size=8M

[seq]
stonewall
rw=write
bs=1M
iodepth=8
offset=$((base + 64))M
size=40M

[cross]
stonewall
rw=write
bs=768k
iodepth=4
offset=$((base + 104))M
size=24M
EOF
}

for n in 1 2 3; do
	mnt=$T/mnt$n
	mount_fused "$mnt" "$(addr_of "$n")"
	wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
	dev=$(loop_attach "$mnt/vol")
	jobfile "$dev" "$n" "$T/round$n.fio"
	run_fio "through-server-$n" "$T/round$n.fio"
	# fused's connection for vol is on server n, the only address it has
	# and a holder of vol.
	deadline=$((SECONDS + 15))
	while (($(status_field "$n" clients) < 1)); do
		((SECONDS < deadline)) || fail "server $n does not count fused as a client (status clients = 0)"
		sleep 0.5
	done
	# fused talks to it on a link of its own, next to the two peers'
	assert_eq "$(status_field "$n" peer_links_accepted)" 3 "server $n: links accepted with fused on it"
	grep -q "link to tcp://127.0.0.$n:[0-9]* up" "$T/fused-mnt$n.log" ||
		fail "fused did not log its link to server $n as up"
	loop_detach "$dev"
	umount_fused "$mnt"
	wait_status "$n" peer_links_accepted 2
done
log "fio verify clean through each of the three servers"

for n in 1 2 3; do
	assert_eq "$(status_field "$n" peer_links_up)" 2 "server $n: outgoing peer links up"
	assert_eq "$(status_field "$n" peer_links_accepted)" 2 "server $n: peer links accepted"
	s=$(status_field "$n" link_records_sent)
	r=$(status_field "$n" link_records_received)
	# as an entry it sent parts and got answers; as an owner the reverse
	((s > 1000 && r > 1000)) || fail "server $n: only $s records sent and $r received on peer links"
	log "server $n: peer links: $s records sent, $r received"
done

# Cross-check: round n's data read back through server n%3+1.
for n in 1 2 3; do
	other=$((n % 3 + 1))
	mnt=$T/mnt-verify$n
	mount_fused "$mnt" "$(addr_of "$other")"
	wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
	dev=$(loop_attach "$mnt/vol")
	jobfile "$dev" "$n" "$T/verify$n.fio"
	run_fio "round-$n-verified-through-server-$other" "$T/verify$n.fio" --verify_only
	loop_detach "$dev"
	umount_fused "$mnt"
done
log "every round's data verifies through another server"
