#!/usr/bin/env bash
# migrate-forgotten: a move that its source forgot is dropped at its
# target, and nothing of the volume changes. A source records a move only
# at piece 0, after the target prepared the page (and, for a volume with
# snapshots, took the page's snapshot chunks): a source killed -9 in
# between restarts knowing nothing of it, while the target keeps the move
# in ("incoming"), the page's space and its chunks, and counts it against
# the moves it takes at a time. Three servers, a volume of 32 MiB pages
# full of random data and one snapshot (so the window before piece 0 is
# long: the page's chunks go first); a page moves and its source is killed
# -9 as soon as the target logs the move in; it restarts with no move. The
# target then drops the move by itself once the source's heartbeats have
# not listed it for 30 s ("the move from server S is dropped"): page show
# there lists no move, the volume and its snapshot read as before, and the
# page then moves to that target and back normally. A kill that comes too
# late (the source resumes the move after its restart) is retried on the
# next page, up to three.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

group_weighted 1 1 1
ctl 1 balance off >/dev/null # the moves under test only
ctl 1 volume create vol 96M --page-size 32M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)" "$(addr_of 2)" "$(addr_of 3)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
make_random "$T/img" 96
dd if="$T/img" of="$T/mnt/vol" bs=1M oflag=direct conv=notrunc status=none
ctl 1 snapshot create vol a >/dev/null
wait_path_exists "$T/mnt/vol@a" || fail "vol@a did not appear"

# moving_at N P: the move of page P that server N shows ("" if none)
moving_at()
{
	ctl "$1" page show vol "$2" --json | json "(d['moving'] or {}).get('state', '')"
}

forgot=
for p in 0 1 2; do
	src=$(ctl 1 page show vol "$p" --json | json "d['owner']")
	dst=$((src % 3 + 1))
	lines=$(wc -l <"$T/peerd$dst.log")
	ctl 1 page move vol "$p" --to "$dst" --async >/dev/null || fail "page move vol $p --to $dst"
	for ((k = 0; k < 3000; k++)); do
		tail -n +"$lines" "$T/peerd$dst.log" | grep -q "volume vol page $p: incoming from $src" && break
		sleep 0.01
	done
	((k < 3000)) || fail "server $dst never took the move of page $p"
	kill9_peerd "$src"
	log "server $src (the source of page $p) killed as server $dst took the move"
	mark=$(wc -l <"$T/peerd$src.log")
	run_peerd "$src" ${PEERD_ARGS[$src]}
	wait_group_up 1 2 3
	if tail -n +"$mark" "$T/peerd$src.log" | grep -q "volume vol page $p: resuming"; then
		log "page $p: the kill came after piece 0 was recorded; the move resumes (next page)"
		for ((k = 0; k < 600; k++)); do
			[ "$(ctl 1 page show vol "$p" --json | json "d['owner']")" = "$dst" ] &&
				[ -z "$(moving_at "$dst" "$p")" ] && break
			sleep 0.1
		done
		continue
	fi
	forgot=$p
	break
done
[ -n "$forgot" ] || fail "three kills came too late: no move was forgotten"
p=$forgot
assert_eq "$(moving_at "$dst" "$p")" "incoming" "server $dst's move of page $p after its source forgot it"

# dropped by the target within the idle time (30 s) and a few heartbeats
for ((k = 0; k < 600; k++)); do
	grep -q "volume vol page $p: the move from server $src is dropped" "$T/peerd$dst.log" && break
	sleep 0.1
done
((k < 600)) || fail "server $dst did not drop the forgotten move of page $p within 60 s"
grep "volume vol page $p: dropping the move in from server $src" "$T/peerd$dst.log" >&2 ||
	fail "server $dst did not log why it dropped the move"
assert_eq "$(moving_at "$dst" "$p")" "" "server $dst's move of page $p after the drop"
assert_eq "$(ctl "$dst" page show vol "$p" --json | json "d['owner']")" "$src" "owner of page $p"
cmp "$T/mnt/vol" "$T/img" || fail "the volume changed"
cmp "$T/mnt/vol@a" "$T/img" || fail "snapshot a changed"
log "the forgotten move is dropped at server $dst; the volume and vol@a read as before"

# the page moves to that target and back as any page does
ctl 1 page move vol "$p" --to "$dst" >/dev/null || fail "page move vol $p --to $dst after the drop"
assert_eq "$(ctl 1 page show vol "$p" --json | json "d['owner']")" "$dst" "owner of page $p after its move"
ctl 1 page move vol "$p" --to "$src" >/dev/null || fail "page move vol $p --to $src (back)"
cmp "$T/mnt/vol" "$T/img" || fail "the volume changed after the moves"
cmp "$T/mnt/vol@a" "$T/img" || fail "snapshot a changed after the moves"
log "page $p moved to server $dst and back; the volume and vol@a read as before"
