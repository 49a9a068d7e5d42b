#!/usr/bin/env bash
# migrate-moves: pages move between every pair of a group of three while a
# client reads and writes them. A volume of 1 MiB pages spread over servers
# 1, 2 and 3, fused mounted through server 1, a loop device on it (direct
# IO) and fio on the loop device the whole time (random 4 KiB writes
# verified as they go, verify_backlog, and a random read/write mix,
# crc32c). Meanwhile PV_MIGRATE_MOVES (default 100) page moves in 64 KiB
# pieces, asked at random servers, of random pages to random other
# servers (the first six cover every ordered pair), one in three waiting
# for the move (sync), two in three --async (a page picked while an
# earlier move of it is still going is refused "already moving" or "is moving from": picked
# again). Then: every move landed (each
# page's owner is the last server it was sent to, on all three servers),
# no move is left in progress, fio saw zero verify errors in every round,
# a verify-only pass over the last round's writes is clean, and no server
# holds data of a page it does not own (SEEK_DATA over each page range of
# its data file: the source punches a page out after the switch). Last, a
# file system phase: mkfs.ext4, files written while PV_MIGRATE_FS_MOVES
# (default 6) more pages move, fsck -fn clean, the files read back.
# PV_MIGRATE_SEED fixes the random choices (logged). A longer run:
# PV_MIGRATE_MOVES=2000 PV_TEST_TIMEOUT=3000.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio losetup mkfs.ext4 fsck.ext4 sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

MOVES=${PV_MIGRATE_MOVES:-100}
FS_MOVES=${PV_MIGRATE_FS_MOVES:-6}
SEED=${PV_MIGRATE_SEED:-$((RANDOM * 32768 + RANDOM))}
SIZE_MB=64 # 64 pages of 1 MiB
RANDOM=$SEED
log "seed $SEED (PV_MIGRATE_SEED), $MOVES moves"

group_weighted 1 1 1
ctl 1 volume create vol ${SIZE_MB}M --page-size 1M >/dev/null
assert_eq "$(ctl 1 volume show vol --json | json "d['pages']")" "$SIZE_MB" "pages of vol"

mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
dev=$(loop_attach "$T/mnt/vol")

# One round of the load: random 4 KiB writes over the first half, each
# verified soon after (verify_backlog) and all at the end (the job the
# verify-only pass repeats: it must come first, so that its random seed is
# the same in a file of it alone); a random read/write mix over the second
# half, verified likewise. Rate-limited: a round lasts ~4 s.
load_writes()
{
	rand_write_load "$1" "$2" "$3" $((SIZE_MB / 2))M 4M 1200k verify_backlog=64
}
load_round()
{
	load_writes "$1" "$2" "$3"
	cat >>"$1" <<FIO

[mix]
rw=randrw
rwmixread=50
bs=4k
iodepth=8
offset=$((SIZE_MB / 2))M
size=$((SIZE_MB / 2))M
io_size=4M
verify_backlog=64
rate=1000k,1000k
FIO
}
fio_loop_start load_round "$dev" "$SEED"

# expected owner of every page after the moves: the last target, or the
# initial owner
# shellcheck disable=SC2207
want=($(owners_of 1 vol))
pairs="" busy=0

# move I PAGE TO MODE: page move of PAGE to TO, asked at a random server,
# waiting for it (sync) or not (async). Returns 1 if refused because the
# page is still moving (an earlier --async move of it: the caller picks
# again); fails on any other error.
move()
{
	local i=$1 page=$2 to=$3 mode=$4 at=$((RANDOM % 3 + 1)) args rc
	args=(page move vol "$page" --to "$to" --piece 64K)
	[ "$mode" = async ] && args+=(--async)
	ctl_within 120 "$at" "${args[@]}" >"$T/move.out" 2>&1 && rc=0 || rc=$?
	if [ "$rc" != 0 ]; then
		grep -qE "already moving|is moving from" "$T/move.out" && { busy=$((busy + 1)); return 1; }
		fail "move $i ($mode, at server $at): page $page ${want[$page]}->$to failed (exit $rc, 124: not done in 120 s): $(cat "$T/move.out") $(ctl "$at" migrations 2>&1)"
	fi
	echo "move $i $mode at $at: page $page ${want[$page]}->$to: $(tr '\n' ' ' <"$T/move.out")" >>"$T/moves.log"
	pairs+=" ${want[$page]}$to"
	want[page]=$to
}

t0=$SECONDS
for ((i = 1; i <= MOVES; i++)); do
	mode=async # two in three --async, one in three waiting
	((i % 3 == 0)) && mode=sync
	for ((try = 0; ; try++)); do
		((try < 50)) || fail "move $i: every page picked was still moving"
		if ((i <= 6)); then # every ordered pair once, first
			from=$(((i - 1) / 2 + 1))
			to=$(((from + i % 2) % 3 + 1))
			page=-1
			for ((p = try; p < SIZE_MB; p++)); do
				[ "${want[$p]}" = "$from" ] && { page=$p; break; }
			done
			((page >= 0)) || fail "no page of server $from left to move"
		else
			page=$((RANDOM % SIZE_MB))
			to=$(((want[page] + RANDOM % 2) % 3 + 1)) # one of the other two
		fi
		move "$i" "$page" "$to" "$mode" && break
	done
	if [ "$mode" = sync ] && ((i % 5 == 0)); then
		# a move that waited is done: the target says it owns the page
		assert_eq "$(page_field "$to" vol "$page" "d['owner']")" "$to" \
			"move $i: owner of page $page at server $to right after 'page move' returned"
	fi
	((i % 20 == 0)) && log "$i moves done ($((SECONDS - t0)) s)"
done
log "$MOVES moves issued in $((SECONDS - t0)) s ($busy picks of a page still moving)"
for pr in 12 13 21 23 31 32; do
	grep -qw "$pr" <<<"$pairs" || fail "no move from ${pr:0:1} to ${pr:1:1}"
done

# every move lands, everywhere
wait_no_migrations "$PV_MOVE_WAIT" 1 2 3
wait_routing_agree 30 vol 1 2 3
got=$(owners_of 1 vol)
if [ "$got" != "${want[*]}" ]; then
	# shellcheck disable=SC2206
	g=($got)
	for ((p = 0; p < SIZE_MB; p++)); do
		[ "${g[$p]}" = "${want[$p]}" ] && continue
		echo "page $p: owner ${g[$p]}, sent last to ${want[$p]}; its moves:" >&2
		grep -E "page $p " "$T/moves.log" >&2 || true
		grep -hE "migrate: volume vol page $p\b" "$T"/peerd[123].log | sort >&2 || true
	done
	fail "owners after the moves differ from the last targets"
fi
log "every page is where it was sent last, on all three servers"

fio_loop_stop
load_writes "$T/verify.fio" "$dev" $((SEED + FIO_ROUNDS))
fio_verify_only verify-after-moves "$T/verify.fio"
wait_no_stray 15 vol 1 2 3
log "no server holds data of a page it does not own"

# file system phase: files written while pages move
mkfs.ext4 -q -F -E nodiscard "$dev" || fail "mkfs.ext4 on $dev failed"
fsck.ext4 -fn "$dev" >"$T/fsck0.out" 2>&1 || { cat "$T/fsck0.out" >&2; fail "fsck after mkfs failed"; }
mount_fs "$dev" "$T/fs"
make_random "$T/f1" 8
(
	for ((j = 0; j < 4; j++)); do
		cp "$T/f1" "$T/fs/f$j"
		sync -f "$T/fs/f$j"
	done
) &
cp_pid=$!
PV_PIDS+=("$cp_pid")
for ((i = 1; i <= FS_MOVES; i++)); do
	page=$((RANDOM % SIZE_MB))
	move "fs-$i" "$page" $(((want[page] + RANDOM % 2) % 3 + 1)) sync ||
		fail "file system phase: page $page still moving after waiting for every move"
done
wait "$cp_pid" || fail "writing the files failed"
umount "$T/fs" || fail "umount $T/fs failed"
pv_forget mounts "$T/fs"
fsck.ext4 -fn "$dev" >"$T/fsck1.out" 2>&1 || { cat "$T/fsck1.out" >&2; fail "fsck -fn after the moves is not clean"; }
mount_fs "$dev" "$T/fs" -o ro
for ((j = 0; j < 4; j++)); do
	cmp -s "$T/f1" "$T/fs/f$j" || fail "file f$j differs after the moves"
done
umount "$T/fs"
pv_forget mounts "$T/fs"
wait_no_migrations "$PV_MOVE_WAIT" 1 2 3
wait_no_stray 15 vol 1 2 3
log "file system clean and its files intact after $FS_MOVES more moves"
