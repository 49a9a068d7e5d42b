#!/usr/bin/env bash
# migrate-stale-routing: a server that did not see pages move still
# serves the latest data, and every server serves the moved layout after a
# restart. A group of three, volume vol (32 pages of 1 MiB), fused A
# through server 1.
#   1. Server 3 is stopped; pages of 1 move to 2 and of 2 to 1; a known
#      pattern is written to each moved page through A. Restarted, server 3
#      holds the owners' routing (volume show --routing=full), and fused B,
#      mounted through server 3 alone, reads every moved page back.
#   2. Server 3 is frozen (SIGSTOP) while more pages move between 1 and 2
#      and new data goes to them through A; thawed, before it can have
#      caught up, a new fused mounted through 3 alone reads the new data;
#      then 3's routing agrees with the owners'.
#   3. Every server is restarted: each holds the same routing as before,
#      and A reads every moved page back.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"

SIZE_MB=32

group_weighted 1 1 1
for n in 1 2 3; do wait_links_up "$n" 2; done
ctl 1 volume create vol ${SIZE_MB}M --page-size 1M >/dev/null
mount_fused "$T/a" "$(addr_of 1)"
wait_path_exists "$T/a/vol" || fail "$T/a/vol did not appear"

# move_some N: moves N pages of 1 to 2 and N of 2 to 1 (asked at server 1,
# waiting for each); then server 1 shows each on its new owner. Sets MOVED
# to the pages moved.
move_some()
{
	local owners p o n1=0 n2=0 to
	# shellcheck disable=SC2207
	owners=($(owners_of 1 vol))
	MOVED=()
	for ((p = 0; p < SIZE_MB; p++)); do
		o=${owners[$p]}
		if [ "$o" = 1 ] && ((n1 < $1)); then
			to=2 n1=$((n1 + 1))
		elif [ "$o" = 2 ] && ((n2 < $1)); then
			to=1 n2=$((n2 + 1))
		else
			continue
		fi
		ctl 1 --timeout 60 page move vol "$p" --to "$to" --piece 256K >"$T/move.out" 2>&1 ||
			fail "page move vol $p --to $to failed: $(cat "$T/move.out")"
		owners[p]=$to
		MOVED+=("$p")
	done
	((n1 == $1 && n2 == $1)) || fail "moved $n1 pages of 1 and $n2 of 2, wanted $1 each"
	assert_eq "$(owners_of 1 vol)" "${owners[*]}" "owners after moving pages ${MOVED[*]}"
	log "moved pages ${MOVED[*]}"
}

# write_pages TAG PAGES...: a fresh random MiB per page through A (direct
# IO, not flushed: a FLUSH waits for every server holding pages of the
# volume, and server 3 is down or frozen meanwhile); kept as $T/TAG-PAGE,
# and LAST[PAGE]=TAG.
declare -A LAST=()
write_pages()
{
	local tag=$1 p
	shift
	for p in "$@"; do
		make_random "$T/$tag-$p" 1
		dd if="$T/$tag-$p" of="$T/a/vol" bs=1M seek="$p" count=1 oflag=direct conv=notrunc \
			status=none || fail "writing page $p through A failed"
		LAST[$p]=$tag
	done
}

# read_pages MOUNT: every page written reads back through MOUNT as last
# written.
read_pages()
{
	local mnt=$1 p
	for p in "${!LAST[@]}"; do
		timeout 60 dd if="$mnt/vol" of="$T/got" bs=1M skip="$p" count=1 iflag=direct status=none ||
			fail "reading page $p through $mnt failed"
		cmp -s "$T/got" "$T/${LAST[$p]}-$p" ||
			fail "page $p through $mnt is not the data last written (${LAST[$p]})"
	done
}

# 1. down during the moves, restarted after
stop_peerd 3
wait_member_state 1 3 down
move_some 3
write_pages one "${MOVED[@]}"
run_peerd 3
wait_group_up 1 2 3
wait_routing_agree 30 vol 1 2 3
log "server 3, down during the moves, holds the moved layout after its restart"
mount_fused "$T/b" "$(addr_of 3)"
wait_path_exists "$T/b/vol" || fail "$T/b/vol did not appear"
# B's requests go through server 3: it lists B as having vol open
exec 9<"$T/b/vol"
deadline=$((SECONDS + 15))
until ctl 3 volume show vol --json | json "d['open_by']" | grep -q client; do
	((SECONDS < deadline)) || fail "server 3 does not list fused B as having vol open"
	sleep 0.3
done
read_pages "$T/b"
exec 9<&-
log "fused through server 3 reads the moved pages' latest data"
umount_fused "$T/b"

# 2. frozen during the moves, a fresh client through it as soon as it is
# thawed (fused would leave a server silent for 3 s, so B is mounted
# again rather than kept)
kill -STOP "${PEERD_PID[3]}"
wait_member_state 1 3 down
move_some 2
write_pages two "${MOVED[@]}"
kill -CONT "${PEERD_PID[3]}"
mount_fused "$T/b2" "$(addr_of 3)"
wait_path_exists "$T/b2/vol" || fail "$T/b2/vol did not appear"
read_pages "$T/b2"
log "fused through server 3, thawed after more moves, reads their latest data"
wait_group_up 1 2 3
wait_routing_agree 30 vol 1 2 3

# 3. every server restarted: the same routing
for n in 1 2 3; do routing_view "$n" vol >"$T/routing$n.before"; done
for n in 1 2 3; do stop_peerd "$n"; done
for n in 1 2 3; do start_peerd "$n"; done
for n in 1 2 3; do wait_peerd "$n"; done
wait_group_up 1 2 3
for n in 1 2 3; do
	routing_view "$n" vol >"$T/routing$n.after"
	cmp -s "$T/routing$n.before" "$T/routing$n.after" ||
		fail "server $n's routing changed across the restart: $(diff "$T/routing$n.before" "$T/routing$n.after")"
done
for n in 2 3; do
	cmp -s "$T/routing1.after" "$T/routing$n.after" || fail "servers 1 and $n hold different routing after the restart"
done
read_pages "$T/a"
log "after a restart of every server the routing is the same and the moved pages read back"
