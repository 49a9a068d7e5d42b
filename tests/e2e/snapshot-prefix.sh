#!/usr/bin/env bash
# snapshot-prefix: the consistency a coordinated snapshot promises
# (issue 15). A writer writes sequence numbers 1, 2, 3, ... to 48 blocks
# spread over the pages of all three servers, each write issued after the
# previous one completed; meanwhile 4 hold-mode snapshots are made, each
# through a random server. Every snapshot must hold exactly a prefix 1..k
# of the writes: block b holds the last number n <= k with n % 48 == b,
# never a later write without an earlier one. The writers' pause (pause_ms
# of each snapshot) is logged. A snapshot asked while pages of the volume
# move is refused with the reason, and the volume's pages refuse to move
# once it has snapshots; both leave everything as it was.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVRAW"

group_weighted 1 1 1
ctl 1 volume create vol 64M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"

# a page move under way: a snapshot is refused, nothing is left of it
ctl 1 set migrate.max-mbps 1 >/dev/null
routing_json 1 vol "$T/routing.json"
owner=$(json "[r['owner'] for r in d['routing'] if r['first_page'] <= 5 <= r['last_page']][0]" <"$T/routing.json")
to=$((owner % 3 + 1))
ctl 1 page move vol 5 --to "$to" --async >/dev/null
dd if=/dev/urandom of="$T/mnt/vol" bs=1M seek=5 count=1 oflag=direct conv=notrunc status=none
expect_fail_msg "moving" ctl 2 snapshot create vol early
ctl 1 set migrate.max-mbps 0 >/dev/null
for _ in $(seq 100); do
	[ "$(ctl 1 migrations --json | json "len(d['migrations'])")" = 0 ] && break
	sleep 0.2
done
assert_eq "$(ctl 3 snapshot list vol --json | json "len(d['snapshots'])")" 0 \
	"snapshots after a refused create"

# the writer: 4 KiB blocks at b MiB + (b % 4) * 64 KiB, b = n % 48
cat >"$T/writer.py" <<'EOF'
import mmap, os, struct, sys
path, stop, last = sys.argv[1:4]
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
n = 0
while not os.path.exists(stop):
    n += 1
    b = n % 48
    buf.seek(0)
    buf.write(struct.pack("<Q", n) * 512)
    os.pwritev(fd, [buf], b * 1048576 + (b % 4) * 65536)
    if n % 100 == 0:
        open(last, "w").write(str(n))
open(last, "w").write(str(n))
EOF
"$PYTHON" "$T/writer.py" "$T/mnt/vol" "$T/stop" "$T/last" &
writer=$!
pv_record pids "$writer"
sleep 1
pauses=()
for i in 1 2 3 4; do
	n=$((RANDOM % 3 + 1))
	out=$(ctl "$n" snapshot create vol "s$i" --json) || fail "snapshot s$i through server $n failed"
	pauses+=("$(json "d['pause_ms']" <<<"$out")")
	log "snapshot s$i through server $n: writes held $(json "d['pause_ms']" <<<"$out") ms"
	sleep 0.7
done
touch "$T/stop"
wait "$writer" || fail "the writer failed"
pv_forget pids "$writer"
log "writer stopped after $(cat "$T/last") writes; pauses (ms): ${pauses[*]}"

# the volume's pages no longer move
expect_fail_msg "snapshots" ctl 1 page move vol 7 --to "$to"

# every snapshot read through a random server holds a prefix 1..k
check_prefix()
{
	local name=$1 id via
	id=$(ctl 1 snapshot show vol "$name" --json | json "d['id']")
	via=$((RANDOM % 3 + 1))
	for b in $(seq 0 47); do
		"$PVRAW" -S "$id" "$(addr_of "$via")" read vol $((b * 1048576 + (b % 4) * 65536)) \
			4096 "$T/blk.$b" >/dev/null || fail "reading $name block $b failed"
	done
	"$PYTHON" - "$T" "$name" <<'EOF' || fail "snapshot $name is not a prefix of the writes"
import struct, sys
t, name = sys.argv[1:3]
got = []
for b in range(48):
    data = open("%s/blk.%d" % (t, b), "rb").read()
    v = struct.unpack("<Q", data[:8])[0]
    if data != data[:8] * 512:
        sys.exit("%s block %d is torn" % (name, b))
    got.append(v)
k = max(got)
for b in range(48):
    want = k - ((k - b) % 48)
    if want < 1:
        want = 0  # never written: zeros
    if got[b] != want:
        sys.exit("%s: block %d holds %d, but the last write to it up to %d is %d"
                 % (name, b, got[b], k, want))
print("%s holds writes 1..%d" % (name, k))
EOF
}
prev=0
for i in 1 2 3 4; do
	msg=$(check_prefix "s$i")
	log "$msg"
	k=${msg##*..}
	[ "$k" -gt "$prev" ] || fail "snapshot s$i (1..$k) is not later than the one before (1..$prev)"
	prev=$k
done
[ "$prev" -le "$(cat "$T/last")" ] || fail "a snapshot holds more writes than were made"
