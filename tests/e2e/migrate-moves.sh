#!/usr/bin/env bash
# migrate-moves: pages move between every pair of a group of three while a
# client reads and writes them. A volume of 1 MiB pages spread over servers
# 1, 2 and 3, fused mounted through server 1, a loop device on it (direct
# IO) and fio on the loop device the whole time (random 4 KiB writes
# verified as they go, verify_backlog, and a random read/write mix,
# crc32c). Meanwhile PV_MIGRATE_MOVES (default 100) page moves in 64 KiB
# pieces, asked at random servers, of random pages to random other
# servers (the first six cover every ordered pair), two in three waiting
# for the move (sync), one in three --async. Then: every move landed (each
# page's owner is the last server it was sent to, on all three servers),
# no move is left in progress, fio saw zero verify errors in every round,
# a verify-only pass over the last round's writes is clean, and no server
# holds data of a page it does not own (SEEK_DATA over each page range of
# its data file: the source punches a page out after the switch). Last, a
# file system phase: mkfs.ext4, files written while PV_MIGRATE_FS_MOVES
# (default 10) more pages move, fsck -fn clean, the files read back.
# PV_MIGRATE_SEED fixes the random choices (logged).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio losetup mkfs.ext4 fsck.ext4 sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

MOVES=${PV_MIGRATE_MOVES:-100}
FS_MOVES=${PV_MIGRATE_FS_MOVES:-10}
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
# half, verified likewise. Rate-limited: a round lasts ~10 s.
load_writes()
{
	rand_write_load "$1" "$2" "$3" $((SIZE_MB / 2))M 12M 1200k verify_backlog=64
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
io_size=20M
verify_backlog=64
rate=1000k,1000k
FIO
}
fio_loop_start load_round "$dev" "$SEED"

# expected owner of every page after the moves: the last target, or the
# initial owner
# shellcheck disable=SC2207
want=($(owners_of 1 vol))
declare -A async_to=() # page -> target of an --async move not seen done
pairs=""
# a page not moving (as far as this test knows) and another server
pick()
{
	local n
	while :; do
		page=$((RANDOM % SIZE_MB))
		[ -z "${async_to[$page]:-}" ] && break
	done
	from=${want[$page]}
	n=$((RANDOM % 2))
	to=$(((from + n) % 3 + 1)) # one of the other two
}
# the async moves that are done are forgotten (the owner's page show)
settle_async()
{
	local p
	for p in "${!async_to[@]}"; do
		if [ "$(page_field "${async_to[$p]}" vol "$p" "'%s %s' % (d['owner'], bool(d.get('moving')))")" = "${async_to[$p]} False" ]; then
			unset "async_to[$p]"
		fi
	done
}

t0=$SECONDS
for ((i = 1; i <= MOVES; i++)); do
	settle_async
	if ((i <= 6)); then # every ordered pair once, first
		from=$(((i - 1) / 2 + 1))
		to=$(((from + i % 2) % 3 + 1))
		page=""
		for ((p = 0; p < SIZE_MB; p++)); do
			if [ "${want[$p]}" = "$from" ] && [ -z "${async_to[$p]:-}" ]; then
				page=$p
				break
			fi
		done
		[ -n "$page" ] || fail "no page of server $from left to move"
	else
		pick
	fi
	at=$((RANDOM % 3 + 1)) # asked at any server
	mode=sync
	((i % 3 == 0)) && mode=async
	args=(page move vol "$page" --to "$to" --piece 64K)
	[ "$mode" = async ] && args+=(--async)
	ctl "$at" --timeout 120 "${args[@]}" >"$T/move.out" 2>&1 ||
		fail "move $i ($mode, at server $at): page $page $from->$to failed: $(cat "$T/move.out")"
	pairs+=" $from$to"
	want[page]=$to
	if [ "$mode" = async ]; then
		async_to[$page]=$to
	else
		# a move that waited is done: the target says it owns the page
		got=$(page_field "$to" vol "$page" "d['owner']")
		assert_eq "$got" "$to" "move $i: owner of page $page at server $to right after 'page move' returned"
	fi
	((i % 20 == 0)) && log "$i moves done ($((SECONDS - t0)) s)"
done
log "$MOVES moves issued in $((SECONDS - t0)) s"
for pr in 12 13 21 23 31 32; do
	grep -qw "$pr" <<<"$pairs" || fail "no move from ${pr:0:1} to ${pr:1:1}"
done

# every move lands, everywhere
wait_no_migrations "$PV_MOVE_WAIT" 1 2 3
wait_routing_agree 30 vol 1 2 3
got=$(owners_of 1 vol)
[ "$got" = "${want[*]}" ] || fail "owners after the moves differ from the last targets:
want ${want[*]}
got  $got"
log "every page is where it was sent last, on all three servers"

rounds=$(fio_loop_stop)
load_writes "$T/verify.fio" "$dev" $((SEED + rounds))
fio_verify_only verify-after-moves "$T/verify.fio"
wait_no_stray 15 vol 1 2 3
log "no server holds data of a page it does not own"

# file system phase: files written while pages move
async_to=()
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
	pick
	ctl $((RANDOM % 3 + 1)) --timeout 120 page move vol "$page" --to "$to" --piece 64K >"$T/move.out" 2>&1 ||
		fail "file system phase, move $i: page $page $from->$to failed: $(cat "$T/move.out")"
	want[page]=$to
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
