#!/usr/bin/env bash
# two-mounts: two fused mounts of one volume behave like two hosts on one
# SAN volume: a write completed through one (O_DIRECT) is read back through
# the other, both ways, also through buffered reads of the fused file (no
# data caching in fused), and after a TRIM through one the other reads
# zeros.
. "$(dirname "$0")/common.sh"
need_fuse
need_cmd cmp fallocate
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create shared 32M >/dev/null
mount_fused "$T/m1" "$(addr_of 1)"
mount_fused "$T/m2" "$(addr_of 1)"
[ -f "$T/m1/shared" ] && [ -f "$T/m2/shared" ] || fail "the volume is not in both mounts"

read_at() # read_at FILE OFF_MiB LEN_MiB [direct]
{
	local flag=""
	[ "${4:-}" = direct ] && flag=iflag=direct
	dd if="$1" bs=1M skip="$2" count="$3" $flag status=none
}

for round in 1 2 3; do
	make_random "$T/a" 2
	dd if="$T/a" of="$T/m1/shared" bs=1M seek=$((round * 2)) oflag=direct conv=notrunc status=none
	cmp <(read_at "$T/m2/shared" $((round * 2)) 2 direct) "$T/a" ||
		fail "round $round: a direct write through m1 is not read back (O_DIRECT) through m2"
	cmp <(read_at "$T/m2/shared" $((round * 2)) 2) "$T/a" ||
		fail "round $round: a direct write through m1 is not read back (buffered) through m2"

	make_random "$T/b" 1
	dd if="$T/b" of="$T/m2/shared" bs=1M seek=$((round * 2)) oflag=direct conv=notrunc status=none
	cmp <(read_at "$T/m1/shared" $((round * 2)) 1 direct) "$T/b" ||
		fail "round $round: a direct write through m2 is not read back (O_DIRECT) through m1"
	cmp <(read_at "$T/m1/shared" $((round * 2)) 1) "$T/b" ||
		fail "round $round: a direct write through m2 is not read back (buffered) through m1"
done
log "writes through each mount are seen by the other"

# Small unaligned-in-page writes (4 KiB) interleaved.
for i in $(seq 0 15); do
	printf 'block %04d from m%d' "$i" $((i % 2 + 1)) | dd of="$T/m$((i % 2 + 1))/shared" bs=4096 seek=$((4096 + i)) oflag=direct conv=notrunc,sync status=none
done
for i in $(seq 0 15); do
	got=$(dd if="$T/m$((2 - i % 2))/shared" bs=4096 skip=$((4096 + i)) count=1 iflag=direct status=none | tr -d '\0')
	assert_eq "$got" "$(printf 'block %04d from m%d' "$i" $((i % 2 + 1)))" "4 KiB block $i through the other mount"
done

# A punch through m1 is zeros through m2.
fallocate --punch-hole --keep-size -o $((2 << 20)) -l $((2 << 20)) "$T/m1/shared"
cmp -n $((2 << 20)) <(read_at "$T/m2/shared" 2 2 direct) /dev/zero ||
	fail "a hole punched through m1 does not read as zeros through m2"

# Both mounts count as open clients while a file is held open in each.
exec {fd1}<"$T/m1/shared" {fd2}<"$T/m2/shared"
opened=0
for _ in $(seq 1 60); do
	opened=$(ctl 1 --json volume show shared | json 'd["open_clients"]')
	[ "$opened" = 2 ] && break
	sleep 0.5
done
# and each is named: its client id and host (the server it talks to lists it)
by=$(ctl 1 --json volume show shared |
	json 'sorted((len(e["client"]), e["host"], e["server"]) for e in d["open_by"])')
ids=$(ctl 1 --json volume show shared | json 'len(set(e["client"] for e in d["open_by"]))')
human=$(ctl 1 volume show shared | grep '^open by:' || true)
exec {fd1}<&- {fd2}<&-
assert_eq "$opened" 2 "open_clients with the volume open in two mounts"
host=$(hostname)
assert_eq "$by" "[[16, \"$host\", 1], [16, \"$host\", 1]]" "open_by with the volume open in two mounts"
assert_eq "$ids" 2 "two distinct client ids in open_by"
echo "$human" | grep -Eq "^open by: +$host \(client [0-9a-f]{16}\), $host \(client [0-9a-f]{16}\)$" ||
	fail "volume show's open by line: '$human'"
