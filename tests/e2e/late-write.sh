#!/usr/bin/env bash
# late-write: a late copy of a write never overwrites newer data (issue 12,
# defect 3). fused's entry server E is stopped (SIGSTOP) with a write A to a
# page owned by another server O sitting unread in its socket; fused
# declares E dead after 3 s and re-sends A through the next holder, which
# forwards it to O: the write completes. Then newer data B goes to the same
# block and completes. When E is continued it reads the old copy of A and
# forwards it to O; O must refuse it (the client was answered for A and has
# moved on: its request id is below the client's low-water mark, which O
# learnt from B's forwarded part). The block must read B.
#
# Rounds: E moves on to the next holder each time (fused's route follows
# the failover), O is the server that is neither E nor the next holder, so
# both copies reach O forwarded. The first mount uses links and shared
# memory (all on one host), the second ZeroMQ without shared memory. The
# writes are 64 KiB (at least BATCH_IO_MAX), so E sends the late part on
# at once, in the round it reads it.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd dd sha256sum
need_bin "$PEERD" "$PEERCTL" "$FUSED"

BS=$((64 << 10))
group_of_three
ctl 1 volume create vol 96M >/dev/null
routing_json 1 vol "$T/routing.json"
page_size=$(ctl 1 volume show vol --json | json "d['page_size']")

# first_page_of OWNER: the first page of vol that OWNER owns.
first_page_of()
{
	json "next(r['first_page'] for r in d['routing'] if r['owner'] == $1)" <"$T/routing.json"
}

next_of() { echo $(($1 % 3 + 1)); }

sum_of() { sha256sum <"$1" | cut -d' ' -f1; }

# late_refusals N: how many refused late copies server N has logged
late_refusals() { grep -c "refused a late copy" "$T/peerd$1.log" || true; }

# late_round MOUNT E K: one round through MOUNT, whose entry server is E,
# on the K-th 64 KiB block of a page of the third server.
late_round()
{
	local mnt=$1 e=$2 k=$3 e2 o page off got t0
	e2=$(next_of "$e")
	o=$(next_of "$e2")
	page=$(first_page_of "$o")
	off=$(((page * page_size + k * BS) / BS)) # in blocks of BS
	head -c "$BS" /dev/urandom >"$T/a$k"
	head -c "$BS" /dev/urandom >"$T/b$k"

	kill -STOP "${PEERD_PID[$e]}"
	log "round $k: entry server $e stopped; write A to page $page (owner $o) block $off"
	t0=$SECONDS
	timeout 40 dd if="$T/a$k" of="$mnt/vol" bs="$BS" seek="$off" oflag=direct conv=notrunc \
		status=none || fail "round $k: write A did not complete with server $e stopped"
	log "round $k: write A completed after $((SECONDS - t0)) s (re-sent through server $e2)"
	timeout 40 dd if="$T/b$k" of="$mnt/vol" bs="$BS" seek="$off" oflag=direct conv=notrunc \
		status=none || fail "round $k: write B did not complete"
	got=$(dd if="$mnt/vol" bs="$BS" skip="$off" count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1)
	assert_eq "$got" "$(sum_of "$T/b$k")" "round $k: block after write B (server $e still stopped)"
	log "round $k: write B completed; continuing server $e"
	refused=$(late_refusals "$o")
	kill -CONT "${PEERD_PID[$e]}"
	# E reads the old copy of A at once and forwards it to O
	t0=$SECONDS
	while (($(late_refusals "$o") == refused && SECONDS - t0 < 6)); do
		sleep 0.2
	done
	got=$(dd if="$mnt/vol" bs="$BS" skip="$off" count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1)
	if [ "$got" = "$(sum_of "$T/a$k")" ]; then
		fail "round $k: the late copy of write A (held by server $e) overwrote the newer data B"
	fi
	assert_eq "$got" "$(sum_of "$T/b$k")" "round $k: block after server $e woke"
	if (($(late_refusals "$o") > refused)); then
		REFUSED_ROUNDS=$((REFUSED_ROUNDS + 1))
		log "round $k: server $o refused the late copy; the block still holds B"
	else
		# e.g. server E took fused's new shared memory offer before the
		# old copy, and refused that copy's memory (NO_SHM)
		log "round $k: the block still holds B; the late copy did not reach server $o"
	fi
	wait_member_state "$e2" "$e" up
}

# fused reaches (and so enters through) the first address of its list
group_list() { echo "$(addr_of "$1") $(addr_of "$(next_of "$1")") $(addr_of "$(next_of "$(next_of "$1")")")"; }

e=1
# shellcheck disable=SC2046
mount_fused "$T/m1" $(group_list "$e")
wait_path_exists "$T/m1/vol" || fail "$T/m1/vol did not appear"
# a first write through every server's pages warms up links and shared memory
dd if=/dev/zero of="$T/m1/vol" bs=1M count=$((3 * page_size >> 20)) oflag=direct conv=notrunc \
	status=none
REFUSED_ROUNDS=0
for k in 0 1 2; do
	late_round "$T/m1" "$e" "$k"
	e=$(next_of "$e")
done
umount_fused "$T/m1"
# the owner refused the late copy at least once: the rounds proved something
((REFUSED_ROUNDS > 0)) || fail "no late copy reached an owner through mount m1"

# shellcheck disable=SC2046
mount_fused "$T/m2" $(group_list "$e") -- --no-links --shm-slots 0
wait_path_exists "$T/m2/vol" || fail "$T/m2/vol did not appear"
REFUSED_ROUNDS=0
for k in 3 4; do
	late_round "$T/m2" "$e" "$k"
	e=$(next_of "$e")
done
umount_fused "$T/m2"
((REFUSED_ROUNDS > 0)) || fail "no late copy reached an owner through mount m2"

