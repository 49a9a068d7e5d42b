#!/usr/bin/env bash
# group-subset-placement: a volume created with --servers 2,3 has its pages
# only on servers 2 and 3; fused, given only server 1's address (which holds
# nothing of it), moves its connection for that volume to server 2 or 3: IO
# works, servers 2/3 count fused as a client and server 1 does not.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_of_three
ctl 1 volume create sub 96M --servers 2,3 >/dev/null
routing_json 1 sub "$T/routing.json"
assert_eq "$(json "sorted(d['servers'])" <"$T/routing.json")" "[2, 3]" "allowed servers of sub"
assert_eq "$(json "sorted(d['holders'])" <"$T/routing.json")" "[2, 3]" "holders of sub"
assert_eq "$(pages_by_owner "$T/routing.json" | cut -d' ' -f1 | tr '\n' ' ')" "2 3 " \
	"owners in sub's routing"
log "sub: pages on servers 2,3 only ($(pages_by_owner "$T/routing.json" | tr '\n' ' '))"

for n in 1 2 3; do
	assert_eq "$(status_field "$n" clients)" 0 "clients on server $n before the mount"
done

mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/sub" || fail "$T/mnt/sub did not appear"
assert_eq "$(stat -c %s "$T/mnt/sub")" $((96 << 20)) "size of $T/mnt/sub"

# IO across every page (pages of 4 MiB alternate over 2 and 3), sampling
# the client counts while it runs.
make_random "$T/a" 96
sample_clients()
{
	local end=$((SECONDS + 90))
	while ((SECONDS < end)); do
		echo "$(status_field 1 clients) $(status_field 2 clients) $(status_field 3 clients)"
		sleep 0.5
	done >>"$T/clients.samples" 2>/dev/null
}
sample_clients &
sampler=$!
PV_PIDS+=("$sampler")
dd if="$T/a" of="$T/mnt/sub" bs=1M oflag=direct conv=notrunc,fsync status=none ||
	fail "write through fused (given server 1 only) to a volume on servers 2,3 failed"
cmp <(dd if="$T/mnt/sub" bs=1M iflag=direct status=none) "$T/a" ||
	fail "data read back through fused differs from what was written"
# Unaligned, page-crossing writes and reads too.
head -c 3000000 /dev/urandom >"$T/b"
dd if="$T/b" of="$T/mnt/sub" bs=1000000 seek=$((4 << 20)) oflag=seek_bytes conv=notrunc,fsync status=none
cmp <(dd if="$T/mnt/sub" bs=1000000 count=3 skip=$((4 << 20)) iflag=skip_bytes status=none) "$T/b" ||
	fail "page-crossing write at 4 MiB does not read back"
log "IO works through fused given only server 1's address"

# Steady state: fused pings the servers it uses for sub (2 or 3) every
# second; a client is counted for 10 s after its last ping. Wait until
# server 1 counts no client while 2 or 3 does, at most 30 s.
deadline=$((SECONDS + 30))
while :; do
	c1=$(status_field 1 clients)
	c2=$(status_field 2 clients)
	c3=$(status_field 3 clients)
	((c1 == 0 && c2 + c3 >= 1)) && break
	if ((SECONDS >= deadline)); then
		grep -h 'client .* connected' "$T"/peerd*.log >&2 || true
		fail "client counts (status --json 'clients') on servers 1,2,3 are $c1,$c2,$c3 after 30 s:" \
			"expected 0 on server 1 (holds nothing of sub) and >= 1 on server 2 or 3"
	fi
	sleep 1
done
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null || true
log "fused's connection is on server(s) $( ((c2)) && echo -n 2) $( ((c3)) && echo -n 3), not on server 1"
if awk '$1 > 0 { f = 1 } END { exit !f }' "$T/clients.samples"; then
	# Not a failure (it expired), but worth knowing: something fused sent
	# to server 1 while it mounted or did IO was a PING.
	log "note: server 1 counted fused as a client for a while during the run" \
		"(samples 'c1 c2 c3': $(sort -u "$T/clients.samples" | tr '\n' ';'))"
fi

cmp <(dd if="$T/mnt/sub" bs=1M count=4 iflag=direct status=none) <(head -c $((4 << 20)) "$T/a") ||
	fail "data differs on the last read"
umount_fused "$T/mnt"
