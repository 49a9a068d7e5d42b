#!/usr/bin/env bash
# migrate-crash: a page move survives kill -9 of either side at a random
# piece and resumes from the piece in transit, never from the start, with
# no write lost. A group of three (server 3's data directory on pvlazyfs),
# a volume of 4 MiB pages, fused through server 1, a loop device, moves
# slowed to 1 MB/s (set migrate.max-mbps 1) so that a 4 MiB page in 64 KiB
# pieces takes seconds.
#   round 1: fio verify write load; page of 2 -> 3; kill -9 of the source
#            (2) once the move is at piece >= 2 (random); restarted on its
#            data directory it logs "resuming at piece K" with K at least
#            the piece seen in transit (and no new "moving" line); the move
#            completes (page show: owner 3); fio ends with zero errors and
#            a verify-only pass is clean.
#   round 2: the same with the target (3) killed: the move resumes at
#            K >= the piece seen once it is back.
#   round 3 (PV_MIGRATE_LAZYFS=1, default): power cut of the target: data
#            A written to a page of 1 and flushed, the page moving to 3,
#            data B written over it and flushed mid-move, then kill -9 of 3
#            and its unsynced writes dropped (pvlazyfs); restarted, the move
#            resumes (K >= 2), completes, and the page reads back B exactly.
# After each round no server holds data of a page it does not own.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
. "$(dirname "$0")/lazyfs-lib.sh"
need_fuse
need_loop
need_cmd fio losetup cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVLAZYFS"

LAZY=${PV_MIGRATE_LAZYFS:-1}
SIZE_MB=64 # 16 pages of 4 MiB
PAGE_MB=4
PIECES=64 # of 64 KiB

mount_lazyfs "$T/back3" "$(data_of 3)"
group_weighted 1 1 1
for n in 1 2 3; do wait_links_up "$n" 2; done
ctl 1 volume create vol ${SIZE_MB}M --page-size ${PAGE_MB}M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
dev=$(loop_attach "$T/mnt/vol")

# first_page_of N: the first page of vol server N owns (as server 1 sees it).
first_page_of()
{
	local o p=0
	for o in $(owners_of 1 vol); do
		[ "$o" = "$1" ] && { echo "$p"; return 0; }
		p=$((p + 1))
	done
	fail "server $1 owns no page of vol"
}

# resumed_at SRC DST PAGE SRC_MARK DST_MARK: the line saying where the move
# of PAGE resumed: the source's "resuming at piece K" or the target's
# "incoming ... at piece K" after the marks; fails if neither is there.
resumed_at()
{
	log_line "$1" "$4" "migrate: volume vol page $3: resuming at piece [0-9]+ of $PIECES" ||
		log_line "$2" "$5" "migrate: volume vol page $3: incoming from $1 at piece [0-9]+ of $PIECES"
}

# resumed_piece SRC DST PAGE SRC_MARK DST_MARK: waits for resumed_at and
# prints the piece K it names.
resumed_piece()
{
	local line
	line=$(wait_for "$PV_MOVE_WAIT" "the move of page $3 $1->$2 did not log resuming" resumed_at "$@")
	log "resumed: $line"
	sed -E 's/.* at piece ([0-9]+) of .*/\1/' <<<"$line"
}

# start_slow_move SRC DST PAGE: moves at 1 MB/s, PAGE of vol from SRC to
# DST in 64 KiB pieces, --async; waits for the source's start line.
start_slow_move()
{
	local mark
	ctl 1 set migrate.max-mbps 1 >/dev/null || fail "set migrate.max-mbps 1 failed"
	mark=$(log_mark "$1")
	ctl 1 page move vol "$3" --to "$2" --piece 64K --async >"$T/move.out" 2>&1 ||
		fail "page move vol $3 --to $2 --async failed: $(cat "$T/move.out")"
	wait_log "$1" "$mark" "migrate: volume vol page $3: moving $1->$2 in $PIECES pieces of 65536 bytes" >/dev/null
}

# crash_round N VICTIM SRC DST: round N of the fio crash rounds.
crash_round()
{
	local round=$1 victim=$2 src=$3 dst=$4 page kmin k K msrc mdst
	page=$(first_page_of "$src")
	log "round $round: page $page $src->$dst, kill -9 of server $victim mid-move"
	# ~12 s of random writes over the whole volume, verified at the end
	rand_write_load "$T/load$round.fio" "$dev" $((round * 1000 + RANDOM % 1000)) ${SIZE_MB}M 24M 2m
	fio_bg "load$round" "$T/load$round.fio"
	sleep 1
	start_slow_move "$src" "$dst" "$page"
	kmin=$((2 + RANDOM % 16))
	k=$(wait_migration_piece "$src" vol "$page" "$kmin")
	msrc=$(log_mark "$src")
	mdst=$(log_mark "$dst")
	kill9_peerd "$victim"
	log "round $round: server $victim killed with piece $k in transit"
	sleep "0.$((RANDOM % 10))"
	# shellcheck disable=SC2086
	run_peerd "$victim" ${PEERD_ARGS[$victim]}
	wait_group_up 1 2 3
	K=$(resumed_piece "$src" "$dst" "$page" "$msrc" "$mdst")
	((K >= 2 && K >= k)) ||
		fail "round $round: the move resumed at piece $K, but piece $k was in transit (started over?)"
	if tail -n +"$((msrc + 1))" "$T/peerd$src.log" | grep -E "migrate: volume vol page $page: moving $src->$dst"; then
		fail "round $round: the source started the move of page $page again after the crash"
	fi
	ctl 1 set migrate.max-mbps 100 >/dev/null || fail "set migrate.max-mbps 100 failed"
	wait_page_owner "$dst" vol "$page" "$dst"
	wait_page_owner 1 vol "$page" "$dst"
	wait_log "$src" "$msrc" "migrate: volume vol page $page moved $src->$dst \(epoch [0-9]+\)" >/dev/null
	log "round $round: resumed at piece $K (of $PIECES; $k seen in transit), page $page now on $dst"

	fio_done "load$round"
	fio_verify_only "verify$round" "$T/load$round.fio"
	wait_no_migrations 30 1 2 3
	wait_no_stray 15 vol 1 2 3
}

crash_round 1 2 2 3 # the source
crash_round 2 3 2 3 # the target

if [ "$LAZY" = 1 ]; then
	page=$(first_page_of 1)
	make_random "$T/a" $PAGE_MB
	make_random "$T/b" $PAGE_MB
	dd if="$T/a" of="$dev" bs=1M seek=$((page * PAGE_MB)) count=$PAGE_MB oflag=direct conv=fsync status=none
	start_slow_move 1 3 "$page"
	k=$(wait_migration_piece 1 vol "$page" $((2 + RANDOM % 16)))
	dd if="$T/b" of="$dev" bs=1M seek=$((page * PAGE_MB)) count=$PAGE_MB oflag=direct conv=fsync status=none
	k=$(wait_migration_piece 1 vol "$page" $((k + 3)))
	m1=$(log_mark 1)
	m3=$(log_mark 3)
	kill9_peerd 3
	lazy_ctl "$(data_of 3)" drop
	log "round 3: power cut of the target with piece $k of page $page in transit"
	# shellcheck disable=SC2086
	run_peerd 3 ${PEERD_ARGS[3]}
	wait_group_up 1 2 3
	K=$(resumed_piece 1 3 "$page" "$m1" "$m3")
	((K >= 2)) || fail "round 3: the move resumed at piece $K after the target's power cut (started over)"
	ctl 1 set migrate.max-mbps 100 >/dev/null
	wait_page_owner 3 vol "$page" 3
	dd if="$dev" of="$T/got" bs=1M skip=$((page * PAGE_MB)) count=$PAGE_MB iflag=direct status=none
	cmp -s "$T/got" "$T/b" ||
		fail "round 3: page $page does not read back the flushed data B after the target's power cut ($(cmp "$T/got" "$T/b" | head -1))"
	wait_no_stray 15 vol 1 2 3
	log "round 3: resumed at piece $K after the power cut; page $page on 3 holds the flushed data"
fi
