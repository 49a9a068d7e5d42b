#!/usr/bin/env bash
# snapshot-prefix: the consistency a coordinated snapshot promises
# (issue 15). Two writers write sequence numbers 1, 2, 3, ... to 48 blocks
# each, spread over the pages of all three servers and sharing chunks, each
# write issued after the previous one completed; meanwhile 8 snapshots are
# made, hold and timestamp mode in turn, each through a random server.
# Every snapshot, read through MOUNT/vol@NAME, must hold exactly a prefix
# 1..k of each writer's writes: block b holds the last number n <= k with
# n % 48 == b, never a later write without an earlier one. The writes'
# pause (pause_ms of each snapshot) is logged. A snapshot asked while
# pages of the volume move waits for the moves under way (the queued ones
# wait for it); the last four snapshots are made once more while pages of
# the volume are being moved (twelve pages the writers write, in pieces of
# 256 KiB, with their snapshot chunks), and every page asked to move does.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVRAW"

group_weighted 1 1 1
ctl 1 volume create vol 64M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"

# page moves under way (6 MiB of data at 1 MB/s): a snapshot waits for
# those that run and is made
dd if=/dev/urandom of="$T/mnt/vol" bs=1M count=64 oflag=direct conv=notrunc status=none
ctl 1 set migrate.max-mbps 1 >/dev/null
routing_json 1 vol "$T/routing.json"
owner=$(json "[r['owner'] for r in d['routing'] if r['first_page'] <= 5 <= r['last_page']][0]" <"$T/routing.json")
to=$((owner % 3 + 1))
for p in $(json "' '.join(str(p) for r in d['routing'] if r['owner'] == $owner for p in range(r['first_page'], r['last_page'] + 1))" <"$T/routing.json" | cut -d' ' -f1-6); do
	ctl 1 page move vol "$p" --to "$to" --async >/dev/null
done
[ "$(ctl "$owner" migrations --json | json "len(d['migrations'])")" != 0 ] ||
	log "note: the moves ended before snapshot early was asked"
ctl 2 snapshot create vol early >/dev/null || fail "a snapshot asked while pages move failed"
ctl 1 set migrate.max-mbps 0 >/dev/null
# until no server lists a move (the list comes with heartbeats: a second
# late) and the target has switched the last page (a snapshot goes then)
for _ in $(seq 150); do
	moving=0
	for n in 1 2 3; do
		[ "$(ctl "$n" migrations --json | json "len(d['migrations'])")" = 0 ] || moving=1
	done
	[ "$moving" = 0 ] && break
	sleep 0.2
done
[ "$moving" = 0 ] || fail "pages still move 30 s after the throttle was lifted"
ctl 3 snapshot delete vol early >/dev/null || fail "snapshot early could not be deleted"
assert_eq "$(ctl 3 snapshot list vol --json | json "len(d['snapshots'])")" 0 \
	"snapshots after deleting early"

# two writers, each of its own numbers 1, 2, 3, ...: 4 KiB blocks at
# b MiB + (b % 4) * 64 KiB (+ 4 KiB for the second), b = n % 48: the two
# share every chunk, so a write stamped before a timestamp-mode cut may
# meet a chunk the other writer changed after it (RESTAMP)
cat >"$T/writer.py" <<'EOF'
import mmap, os, struct, sys
path, stop, last, shift = sys.argv[1:5]
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
n = 0
while not os.path.exists(stop):
    n += 1
    b = n % 48
    buf.seek(0)
    buf.write(struct.pack("<Q", n) * 512)
    os.pwritev(fd, [buf], b * 1048576 + (b % 4) * 65536 + int(shift))
    if n % 100 == 0:
        open(last, "w").write(str(n))
open(last, "w").write(str(n))
EOF
writers=()
for w in 0 1; do
	"$PYTHON" "$T/writer.py" "$T/mnt/vol" "$T/stop" "$T/last$w" $((w * 4096)) &
	writers+=($!)
	pv_record pids "$!"
done
sleep 1
# 8 snapshots, hold and timestamp mode in turn, each through a random
# server; before the fifth, twelve of the pages written start to move
pauses=()
moving_at=()
for i in 1 2 3 4 5 6 7 8; do
	if [ "$i" = 5 ]; then
		ctl 1 set migrate.max-mbps 4 >/dev/null
		routing_json 1 vol "$T/routing2.json"
		json "'\\n'.join('%d %d' % (p, r['owner'] % 3 + 1) for r in d['routing'] for p in range(r['first_page'], r['last_page'] + 1) if p < 48 and p % 4 == 1)" \
			<"$T/routing2.json" >"$T/moves"
		while read -r p dest; do
			ctl 1 page move vol "$p" --to "$dest" --piece 256K --async >/dev/null ||
				fail "page move vol $p --to $dest failed"
		done <"$T/moves"
	fi
	if ((i >= 5)); then
		moving_at+=("$(ctl 1 migrations --json | json "len(d['migrations'])")")
	fi
	n=$((RANDOM % 3 + 1))
	mode=hold
	((i % 2)) || mode=timestamp
	out=$(ctl "$n" snapshot create vol "s$i" --mode "$mode" --json) ||
		fail "snapshot s$i ($mode mode) through server $n failed"
	pauses+=("$(json "d['pause_ms']" <<<"$out")")
	log "snapshot s$i ($mode mode) through server $n: writes paused $(json "d['pause_ms']" <<<"$out") ms at most"
	sleep 0.4
done
touch "$T/stop"
for w in "${writers[@]}"; do
	wait "$w" || fail "a writer failed"
	pv_forget pids "$w"
done
log "writers stopped after $(cat "$T/last0") and $(cat "$T/last1") writes; pauses (ms): ${pauses[*]}"

# the pages asked to move did, with their snapshot chunks (checked below)
log "moves listed by server 1 as snapshots s5..s8 were asked: ${moving_at[*]}"
[ "${moving_at[0]}" != 0 ] || fail "no move was under way when snapshot s5 was asked"
ctl 1 set migrate.max-mbps 0 >/dev/null
while read -r p dest; do
	wait_page_owner 1 vol "$p" "$dest"
done <"$T/moves"
log "$(wc -l <"$T/moves") pages moved while snapshots s5..s8 were made"

# every snapshot, read through its file in the mount, holds a prefix 1..k
# of each writer's numbers, and a later snapshot a longer one
cat >"$T/check.py" <<'EOF'
import json, os, struct, sys
path, prev = sys.argv[1], json.loads(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
ks = []
for w in (0, 1):
    got = []
    for b in range(48):
        data = os.pread(fd, 4096, b * 1048576 + (b % 4) * 65536 + w * 4096)
        if data != data[:8] * 512:
            sys.exit("%s: writer %d's block %d is torn" % (path, w, b))
        got.append(struct.unpack("<Q", data[:8])[0])
    k = max(got)
    for b in range(48):
        want = k - ((k - b) % 48)
        if want < 1:
            want = 0  # never written: zeros
        if got[b] != want:
            sys.exit("%s: writer %d's block %d holds %d, but its last write up to %d is %d"
                     % (path, w, b, got[b], k, want))
    if k < prev[w]:
        sys.exit("%s: writer %d's prefix 1..%d is shorter than the snapshot before's (1..%d)"
                 % (path, w, k, prev[w]))
    ks.append(k)
print(json.dumps(ks))
EOF
prev='[0, 0]'
for i in 1 2 3 4 5 6 7 8; do
	wait_path_exists "$T/mnt/vol@s$i"
	prev=$("$PYTHON" "$T/check.py" "$T/mnt/vol@s$i" "$prev") ||
		fail "snapshot s$i is not a prefix of each writer's writes"
	log "s$i holds writes 1..$(json "d[0]" <<<"$prev") and 1..$(json "d[1]" <<<"$prev")"
done
[ "$(json "d[0]" <<<"$prev")" -le "$(cat "$T/last0")" ] ||
	fail "a snapshot holds more writes than were made"
