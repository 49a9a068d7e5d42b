#!/usr/bin/env bash
# shm-local: with fused and peerd on one host, block data goes through the
# shared memory fused offers (PV_OP_SHM_ATTACH) instead of the socket, and
# users lose nothing by it:
#   d. fused --shm-slots 0 offers nothing (peerd maps nothing) and its data
#      crosses the socket; IO works.
#   a. default fused: both logs say the memory is shared, peerd maps fused's
#      memfd for fused's client id, large IO leaves the socket nearly idle;
#      fio verify (crc32c, mixed 4k/64k/1m randrw, iodepth 16) through a
#      direct-IO loop device passes, and the volume read through the shared
#      memory, read by socket through the --shm-slots 0 mount and read from
#      peerd's data file give the same sha256.
#   b. kill -9 of peerd while fio (verify) runs through the shared memory,
#      restart on the same --data: fio ends with zero errors, peerd maps the
#      memory again (fused re-attached) and large IO skips the socket again;
#      a verify-only pass by socket is clean.
#   e. SIGSTOP of peerd with 1 MiB reads and writes in flight through the
#      shared memory, SIGCONT after fused declared it dead: the slots it may
#      still touch are set aside, reads return the right bytes, fio verify
#      passes, and large IO skips the socket again.
#   c. a peerd in another PID namespace (unshare --pid --mount-proc), where
#      fused's /proc/PID/fd/N does not exist: fused logs that data goes by
#      socket, peerd maps nothing, fio verify passes.
#   f. a group of two servers on this host, pages spread over both: fio
#      verify through the shared memory (each server offers its client's
#      memory to the other, so forwarded parts go through it too),
#      and through a fused with --shm-slots 2 at iodepth 32 (out of slots:
#      the rest by socket); each mount verifies what the other wrote.
#   h. a group of two servers on this host, fused on one of them (A) only:
#      SIGSTOP of the other (B, owner of half the pages) for ~8 s with
#      verified 1 MiB reads and writes in flight through the shared memory,
#      longer than A waits for a forwarded part (5 s), shorter than fused's
#      --timeout: A answers the parts B holds UNAVAILABLE with
#      PV_F_SHM_LOST, fused sets their slots aside (B may still touch them)
#      and retries; after SIGCONT fio ends with zero errors, and a
#      verify-only pass by socket through B is clean.
#   g. peerd unmaps the memory of a client idle for a while (a minute; for
#      peerd 1 here PV_SHM_EXPIRE_MS, default 20 s, through the test hook
#      shm-expire-ms): the next IO is answered NO_SHM, fused attaches
#      again, IO works and goes through the shared memory again.
# They run in the order d a b e c f h g: d's mount is a's reader by socket,
# and c, f and h run while a's fused sits idle for g.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio sha256sum ss dd
need_bin "$PEERD" "$PEERCTL" "$FUSED"

MAPPED='shared memory mapped; its data skips the socket'

# wait_log FILE REGEX [SECONDS [FROM]]: until FILE has a line matching
# REGEX (ERE), from line FROM on (default 1).
wait_log()
{
	local deadline=$((SECONDS + ${3:-$PV_WAIT}))
	while ((SECONDS < deadline)); do
		tail -n +"${4:-1}" "$1" 2>/dev/null | grep -qE -- "$2" && return 0
		sleep 0.2
	done
	fail "no line matching /$2/ in $(basename "$1") within ${3:-$PV_WAIT}s"
}

# lines FILE: the number of lines in FILE, for wait_log's FROM (+ 1).
lines() { wc -l <"$1"; }

# client_id_of LOG: the client id a fused logged with its first catalog.
client_id_of()
{
	grep -m1 -oE 'client id [0-9a-f]{16}' "$1" | awk '{print $3}'
}

# sock_traffic WHAT MNT CMD...: runs CMD and prints the bytes that crossed
# the socket(s) of the fused of MNT meanwhile.
sock_traffic()
{
	local what=$1 pid=${FUSED_PID[$2]} before after
	shift 2
	before=$(fused_sock_bytes "$pid")
	"$@" || fail "$what: $* failed"
	after=$(fused_sock_bytes "$pid")
	((after >= before)) || fail "$what: socket counters went back ($before -> $after): a reconnect in the middle"
	echo $((after - before))
}

# io_64m FILE_OR_DEV SEEK_MiB: writes 32 MiB of random bytes at SEEK_MiB
# with 1 MiB direct IO, reads them back and compares (64 MiB of block data).
io_64m()
{
	local f=$1 seek=$2
	make_random "$T/io.in" 32
	dd if="$T/io.in" of="$f" bs=1M seek="$seek" oflag=direct conv=notrunc status=none || return 1
	dd if="$f" of="$T/io.out" bs=1M skip="$seek" count=32 iflag=direct status=none || return 1
	cmp -s "$T/io.in" "$T/io.out" || { echo "io_64m: data read back differs at $seek MiB of $f" >&2; return 1; }
}

run_fio()
{
	local what=$1 job=$2 json=$T/fio-$1.json
	shift 2
	log "fio $what"
	(cd "$T" && timeout 200 fio --verify_state_save=0 --output-format=json --output="$json" "$@" "$job") ||
		{ cat "$json" >&2; fail "fio $what exited non-zero"; }
	check_fio "$json" "$what"
}


# mixed_load FILE DEV SIZE IO_SIZE SEED: random reads and writes of 4 KiB,
# 64 KiB and 1 MiB over SIZE of DEV, iodepth 16, verified.
mixed_load()
{
	fio_job "$1" "$2" "$5"
	cat >>"$1" <<FIO

[mixed]
rw=randrw
rwmixwrite=70
bssplit=4k/30:64k/40:1m/30
iodepth=16
size=$3
io_size=$4
FIO
}

# peerd 1 unmaps an idle client's memory after SHM_EXPIRE (PEERD_TEST_HOOKS
# shm-expire-ms; 60 s without it): longer than any pause of a's IO in
# parts a, b and e, shorter than c, f and h, so g need not wait
SHM_EXPIRE_MS=${PV_SHM_EXPIRE_MS:-20000}
run_peerd1() { PEERD_TEST_HOOKS=shm-expire-ms=$SHM_EXPIRE_MS run_peerd 1; }
run_peerd1
ctl 1 volume create vol 320M >/dev/null
data_file=$(data_of 1)/volumes/vol.vol

# ---------------------------------------------------------------- d. --shm-slots 0
mount_fused "$T/msock" "$(addr_of 1)" -- --shm-slots 0
wait_path_exists "$T/msock/vol" || fail "$T/msock/vol did not appear"
n=$(sock_traffic "by socket" "$T/msock" io_64m "$T/msock/vol" 0)
log "fused --shm-slots 0: $((n >> 20)) MiB crossed its socket for 64 MiB of block data"
((n >= 64 << 20)) || fail "fused --shm-slots 0: only $n bytes crossed the socket for 64 MiB of block data"
grep -qiE 'shared memory|block data goes' "$T/fused-msock.log" &&
	fail "fused --shm-slots 0 logs about shared memory: $(grep -iE 'shared memory|block data goes' "$T/fused-msock.log")"
grep -q "$MAPPED" "$T/peerd1.log" && fail "peerd mapped shared memory with only a --shm-slots 0 fused: $(grep "$MAPPED" "$T/peerd1.log")"
grep -q 'memfd:' "/proc/${PEERD_PID[1]}/maps" && fail "peerd has a memfd mapped with only a --shm-slots 0 fused"
assert_eq "$(status_field 1 shm_clients)" 0 "peerctl status shm_clients with only a --shm-slots 0 fused"
log "d: --shm-slots 0: no attach, data by socket, IO works"

# ---------------------------------------------------------------- a. shared memory
# --debug: fused then logs the NO_SHM answers it handles
mount_fused "$T/mnt" "$(addr_of 1)" -- --debug
wait_path_exists "$T/mnt/vol" || fail "$T/mnt/vol did not appear"
wait_log "$T/fused-mnt.log" "server $(addr_of 1) is on this host: block data goes through shared memory"
id_a=$(client_id_of "$T/fused-mnt.log")
[ -n "$id_a" ] || fail "fused did not log its client id"
wait_log "$T/peerd1.log" "client $id_a: [0-9]+ MiB of $MAPPED"
assert_eq "$(grep -c "$MAPPED" "$T/peerd1.log")" 1 "mappings in peerd's log"
grep -q 'memfd:peervol-shm' "/proc/${PEERD_PID[1]}/maps" || fail "peerd has no peervol-shm memfd mapped"
assert_eq "$(status_field 1 shm_clients)" 1 "peerctl status shm_clients with a local fused"
log "a: $(grep -m1 'is on this host' "$T/fused-mnt.log" | sed 's/.*info: //') / $(grep -m1 "$MAPPED" "$T/peerd1.log" | sed 's/.*info: //')"

# what the socket fused wrote reads back through the shared memory
cmp <(dd if="$T/mnt/vol" bs=1M count=32 iflag=direct status=none) "$T/io.in" ||
	fail "data written by socket reads back differently through shared memory"
n=$(sock_traffic "through shared memory" "$T/mnt" io_64m "$T/mnt/vol" 64)
log "default fused: $((n >> 10)) KiB crossed its socket for 64 MiB of block data"
((n < 4 << 20)) || fail "default fused: $n bytes crossed the socket for 64 MiB of block data (shared memory unused?)"
cmp <(dd if="$T/msock/vol" bs=1M skip=64 count=32 iflag=direct status=none) "$T/io.in" ||
	fail "data written through shared memory reads back differently by socket"

dev=$(loop_attach "$T/mnt/vol")
mixed_load "$T/mixed.fio" "$dev" 192M 96M 4242
run_fio mixed-through-shm "$T/mixed.fio"

sum_shm=$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
sum_sock=$(dd if="$T/msock/vol" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
sum_file=$(sha256sum "$data_file" | cut -d' ' -f1)
assert_eq "$sum_sock" "$sum_shm" "sha256 of the volume by socket vs through shared memory"
assert_eq "$sum_file" "$sum_shm" "sha256 of peerd's data file vs the volume through shared memory"
log "a: fio verify passed; volume sha256 ${sum_shm:0:16}... through shared memory, by socket and in the data file"

# ---------------------------------------------------------------- b. kill -9 of peerd mid-load
write_crash_load "$T/load.fio" "$dev" 777
log "fio crash load started"
(cd "$T" && timeout 200 fio --verify_state_save=0 --output-format=json --output="$T/fio-load.json" \
	"$T/load.fio" >"$T/fio-load.out" 2>&1) &
fio_pid=$!
PV_PIDS+=("$fio_pid")
sleep 4
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the crash: $(cat "$T/fio-load.out")"
kill9_peerd 1
sleep 2
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while peerd was down: $(cat "$T/fio-load.out")"
restart_line=$(($(lines "$T/peerd1.log") + 1))
run_peerd1
wait "$fio_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || { cat "$T/fio-load.out" "$T/fio-load.json" >&2; fail "fio across the crash exited $rc"; }
check_fio "$T/fio-load.json" load-across-crash
log "b: fio across kill -9 of peerd: zero errors"
tail -n +"$restart_line" "$T/peerd1.log" | grep -qE "client $id_a: [0-9]+ MiB of $MAPPED" ||
	fail "the restarted peerd did not map fused's shared memory again (fused did not re-attach)"
log "b: fused after the crash: $(grep -cE 'reconnected' "$T/fused-mnt.log") reconnect(s), $(grep -c 'set aside' "$T/fused-mnt.log") slot(s) set aside; restarted peerd: $(tail -n +"$restart_line" "$T/peerd1.log" | grep "$MAPPED" | sed 's/.*info: //')"
grep -q 'set aside' "$T/fused-mnt.log" &&
	log "b: $(grep 'set aside' "$T/fused-mnt.log" | tail -n 1 | sed 's/.*info: //')"
grep -q "no shared memory of client $id_a" "$T/fused-mnt.log" &&
	log "b: NO_SHM from the restarted peerd: $(grep -c "no shared memory of client $id_a" "$T/fused-mnt.log") request(s) re-sent by socket"
# large IO skips the socket again (at 256 MiB: past the crash load's range)
n=$(sock_traffic "through shared memory after the restart" "$T/mnt" io_64m "$T/mnt/vol" 256)
log "b: after the restart $((n >> 10)) KiB crossed the socket for 64 MiB of block data"
((n < 4 << 20)) || fail "after the restart $n bytes crossed the socket for 64 MiB of block data (shared memory not used again)"
# ... and everything the load wrote verifies by socket
dev_sock=$(loop_attach "$T/msock/vol")
sed "s|^filename=.*|filename=$dev_sock|" "$T/load.fio" >"$T/load-sock.fio"
run_fio verify-by-socket-after-crash "$T/load-sock.fio" --verify_only
loop_detach "$dev_sock"

# ---------------------------------------------------------------- e. a stalled peerd
# SIGSTOP peerd, then start 1 MiB writes (fio, verified) and reads (dd)
# through the shared memory: fused declares the silent server dead after
# 3 s, sets aside the slots of what was in flight (the server may still
# touch them), re-sends; after SIGCONT the stalled peerd runs the stale
# requests too (it reads from / writes into the set-aside slots). Nothing
# read or written may be wrong, and large IO uses the shared memory again.
fio_job "$T/stall.fio" "$dev" 31
cat >>"$T/stall.fio" <<FIO

[stall]
rw=randwrite
bs=1m
iodepth=8
offset=288M
size=32M
FIO
want=$(dd if="$T/msock/vol" bs=1M count=64 iflag=direct status=none | sha256sum | cut -d' ' -f1)
aside_before=$(grep -c 'set aside' "$T/fused-mnt.log" || true)
from=$(($(lines "$T/fused-mnt.log") + 1))
kill -STOP "${PEERD_PID[1]}"
log "e: peerd 1 stopped (SIGSTOP)"
# If the test fails before the SIGCONT below, peerd must not stay stopped
# under the cleanup: this continues it after 30 s whatever happens (waiting
# with the read builtin, so it leaves no process behind).
mkfifo "$T/.stall"
(
	trap - ERR
	read -r -t 30 <>"$T/.stall" || true
	kill -CONT "${PEERD_PID[1]}" 2>/dev/null
) &
stall_guard=$!
PV_PIDS+=("$stall_guard")
(cd "$T" && timeout 120 fio --verify_state_save=0 --output-format=json --output="$T/fio-stall.json" \
	"$T/stall.fio" >"$T/fio-stall.out" 2>&1) &
fio_pid=$!
PV_PIDS+=("$fio_pid")
dd if="$dev" bs=1M count=64 iflag=direct status=none 2>"$T/stall-dd.err" | sha256sum >"$T/stall-dd.sum" &
dd_pid=$!
PV_PIDS+=("$dd_pid")
wait_log "$T/fused-mnt.log" 'nothing back for 3 s' 20 "$from"
sleep 1
kill -CONT "${PEERD_PID[1]}"
log "e: peerd 1 continued (SIGCONT)"
kill "$stall_guard" 2>/dev/null || true
wait "$stall_guard" 2>/dev/null || true
wait "$fio_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || { cat "$T/fio-stall.out" "$T/fio-stall.json" >&2; fail "fio across the stall exited $rc"; }
check_fio "$T/fio-stall.json" writes-across-stall
wait "$dd_pid" || fail "the read across the stall failed: $(cat "$T/stall-dd.err")"
assert_eq "$(cut -d' ' -f1 "$T/stall-dd.sum")" "$want" "sha256 of 64 MiB read through shared memory across the stall"
aside=$(($(grep -c 'set aside' "$T/fused-mnt.log" || true) - aside_before))
log "e: $aside slot(s) set aside: $(grep 'set aside' "$T/fused-mnt.log" | tail -n 1 | sed 's/.*info: //')"
((aside >= 1)) || fail "fused abandoned requests in flight through shared memory but set no slot aside"
peerd_alive 1 || fail "peerd died after the stall"
n=$(sock_traffic "through shared memory after the stall" "$T/mnt" io_64m "$T/mnt/vol" 256)
log "e: after the stall $((n >> 10)) KiB crossed the socket for 64 MiB of block data"
((n < 4 << 20)) || fail "after the stall $n bytes crossed the socket for 64 MiB of block data (shared memory not used again)"

# a's memory stayed mapped while a used it (part g's shorter expiry)
grep -q "client $id_a: shared memory unused" "$T/peerd1.log" &&
	fail "peerd 1 unmapped fused's memory during parts a-e (its IO paused ${SHM_EXPIRE_MS} ms: raise PV_SHM_EXPIRE_MS): $(grep "client $id_a: shared memory unused" "$T/peerd1.log")"

# ---------------------------------------------------------------- c. another PID namespace
# (while fused on peerd 1 stays idle for part g)
part_c()
{
	local dev n inner ns_pid rc k
	if ! unshare --pid --fork --mount-proc --kill-child true 2>"$T/unshare.err"; then
		log "SKIP part c: unshare --pid --mount-proc does not work here: $(cat "$T/unshare.err")"
		return 0
	fi
	mkdir -p "$(data_of 2)"
	echo "=== $(date +%T) start in a new PID namespace: peerd --id 2 --listen $(addr_of 2) ===" >>"$T/peerd2.log"
	unshare --pid --fork --mount-proc --kill-child \
		"$PEERD" --id 2 --listen "$(addr_of 2)" --data "$(data_of 2)" --control "$(sock_of 2)" \
		</dev/null >>"$T/peerd2.log" 2>&1 &
	ns_pid=$!
	PV_PIDS+=("$ns_pid")
	pv_record pids "$ns_pid"
	# peerd is unshare's child (pid 1 in its namespace); track it by its pid here
	inner=""
	for ((k = 0; k < 10 * PV_WAIT; k++)); do
		inner=$(ps -o pid= --ppid "$ns_pid" | tr -d ' ' || true)
		[ -n "$inner" ] && [ "$(readlink "/proc/$inner/exe" 2>/dev/null)" = "$(readlink -f "$PEERD")" ] && break
		inner=""
		kill -0 "$ns_pid" 2>/dev/null || fail "unshare peerd exited: $(tail -n 5 "$T/peerd2.log")"
		sleep 0.1
	done
	[ -n "$inner" ] || fail "no peerd under unshare (pid $ns_pid)"
	PEERD_PID[2]=$inner
	PV_PIDS+=("$inner")
	pv_record pids "$inner"
	log "started peerd 2 (pid $inner here) in a new PID namespace under unshare (pid $ns_pid)"
	wait_peerd 2
	ctl 2 volume create nsvol 128M >/dev/null
	mount_fused "$T/mns" "$(addr_of 2)"
	wait_path_exists "$T/mns/nsvol" || fail "$T/mns/nsvol did not appear"
	wait_log "$T/fused-mns.log" "server $(addr_of 2): block data goes by socket \(shared memory: "
	log "c: $(grep -m1 'block data goes by socket' "$T/fused-mns.log" | sed 's/.*info: //')"
	grep -q 'is on this host' "$T/fused-mns.log" && fail "fused claims the namespaced peerd is on its host"
	n=$(sock_traffic "namespaced peerd" "$T/mns" io_64m "$T/mns/nsvol" 0)
	log "c: $((n >> 20)) MiB crossed the socket for 64 MiB of block data"
	((n >= 64 << 20)) || fail "namespaced peerd: only $n bytes crossed the socket for 64 MiB of block data"
	dev=$(loop_attach "$T/mns/nsvol")
	mixed_load "$T/ns.fio" "$dev" 96M 48M 99
	run_fio mixed-by-socket-other-namespace "$T/ns.fio"
	grep -q "$MAPPED" "$T/peerd2.log" && fail "the namespaced peerd mapped shared memory: $(grep "$MAPPED" "$T/peerd2.log")"
	loop_detach "$dev"
	umount_fused "$T/mns"

	# stop it: TERM to peerd (pid 1 there: it handles TERM), then unshare ends
	kill -TERM "$inner"
	wait "$ns_pid" && rc=0 || rc=$?
	unset "PEERD_PID[2]"
	case $rc in
	0 | 143) log "stopped the namespaced peerd (status $rc)" ;;
	*) fail "the namespaced peerd exited with status $rc on SIGTERM" ;;
	esac
	log "c: other PID namespace: data by socket, fio verify passed"
}
part_c

# ---------------------------------------------------------------- f. a group of two, few slots
# Pages spread over two servers on this host: a request through the shared
# memory with parts owned by the other server is forwarded by socket and
# gathered into (or taken from) fused's memory. A second fused with
# --shm-slots 2 runs out of slots at iodepth 32 and sends the rest by
# socket. Both verify, and each reads what the other wrote.
part_f()
{
	local dev_g dev_s
	run_peerd 3
	run_peerd 4
	ctl 3 group init >/dev/null
	ctl 4 group join "$(addr_of 3)" >/dev/null
	wait_group_up 3 4
	ctl 3 volume create gvol 128M --page-size 1M >/dev/null
	mount_fused "$T/mg" "$(addr_of 3)"
	mount_fused "$T/mg2" "$(addr_of 4)" -- --shm-slots 2
	wait_path_exists "$T/mg/gvol" || fail "$T/mg/gvol did not appear"
	wait_path_exists "$T/mg2/gvol" || fail "$T/mg2/gvol did not appear"
	wait_log "$T/fused-mg.log" "server $(addr_of 3) is on this host"
	wait_log "$T/fused-mg2.log" "server $(addr_of 4) is on this host"
	dev_g=$(loop_attach "$T/mg/gvol")
	dev_s=$(loop_attach "$T/mg2/gvol")
	mixed_load "$T/g.fio" "$dev_g" 64M 48M 7
	run_fio group-through-shm "$T/g.fio"
	fio_job "$T/s.fio" "$dev_s" 8
	cat >>"$T/s.fio" <<FIO

[deep]
rw=randrw
rwmixwrite=60
bssplit=64k/50:1m/50
iodepth=32
offset=64M
size=64M
io_size=64M
FIO
	run_fio two-slots-iodepth-32 "$T/s.fio"
	# each mount verifies what the other wrote
	sed "s|^filename=.*|filename=$dev_s|" "$T/g.fio" >"$T/g-other.fio"
	sed "s|^filename=.*|filename=$dev_g|" "$T/s.fio" >"$T/s-other.fio"
	run_fio group-verify-on-the-other "$T/g-other.fio" --verify_only
	run_fio two-slots-verify-on-the-other "$T/s-other.fio" --verify_only
	grep -q 'is on this host' "$T/fused-mg2.log" || fail "fused --shm-slots 2 did not use the shared memory"
	# the owner of the forwarded parts is on this host too: each server
	# offered its client's memory to the other, which mapped it
	wait_log "$T/peerd3.log" "server 4 is on this host too; forwarded parts go through"
	wait_log "$T/peerd4.log" "server 3 is on this host too; forwarded parts go through"
	wait_log "$T/peerd4.log" "shared memory mapped \\(offered by a server on this host\\)"
	wait_log "$T/peerd3.log" "shared memory mapped \\(offered by a server on this host\\)"
	loop_detach "$dev_s"
	loop_detach "$dev_g"
	umount_fused "$T/mg2"
	umount_fused "$T/mg"
	stop_peerd 4
	stop_peerd 3
	log "f: group of two through shared memory and with 2 slots at iodepth 32: verified both ways"
}
part_f

# ---------------------------------------------------------------- h. a stalled owner behind the entry server
# fused talks to server A only; A sends the parts for B's pages to B as
# offsets in fused's memory (B mapped it, offered by A). SIGSTOP of B with
# 1 MiB reads and writes in flight: after 5 s A gives up on the parts B
# holds and answers UNAVAILABLE with PV_F_SHM_LOST; fused sets their slots
# aside (B runs those parts when it continues, into and out of the slots)
# and retries. A keeps answering fused, so fused never declares it dead:
# every slot set aside comes from PV_F_SHM_LOST. The reads are of a region
# written and verified before, and fio verifies each one as it completes;
# the writes are verified at the end, and once more by socket through B.
part_h()
{
	local a=5 b=6 dev dev_b fio_pid rc aside lost from t0
	run_peerd "$a"
	run_peerd "$b"
	ctl "$a" group init >/dev/null
	ctl "$b" group join "$(addr_of "$a")" >/dev/null
	wait_group_up "$a" "$b"
	ctl "$a" volume create hvol 256M --page-size 1M >/dev/null
	routing_json "$a" hvol "$T/h-routing.json"
	log "h: pages of hvol by owner: $(pages_by_owner "$T/h-routing.json" | tr '\n' ' ')"
	pages_by_owner "$T/h-routing.json" | grep -q "^$b " || fail "server $b owns no page of hvol"
	mount_fused "$T/mh" "$(addr_of "$a")"
	wait_path_exists "$T/mh/hvol" || fail "$T/mh/hvol did not appear"
	wait_log "$T/fused-mh.log" "server $(addr_of "$a") is on this host"
	dev=$(loop_attach "$T/mh/hvol")

	# the region the reads verify (written through A, half of it on B)
	fio_job "$T/h-fill.fio" "$dev" 61
	cat >>"$T/h-fill.fio" <<FIO

[fill]
rw=write
bs=1m
iodepth=4
offset=192M
size=64M
FIO
	run_fio h-fill "$T/h-fill.fio"
	# A offered fused's memory to B on the first part it forwarded
	wait_log "$T/peerd$a.log" "server $b is on this host too; forwarded parts go through"
	wait_log "$T/peerd$b.log" "shared memory mapped \\(offered by a server on this host\\)"

	# ~10 s of bursts (thinktime after every iodepth IOs, which keeps the
	# order of reads and writes fixed for --verify_only; a rate limit
	# would not), longer than the 3 s before the stall, stalled with it:
	# random 1 MiB reads and writes over the first 192 MiB, and random
	# 1 MiB reads of the filled region, verified as they come
	fio_job "$T/h.fio" "$dev" 62
	cat >>"$T/h.fio" <<FIO

[rw]
rw=randrw
rwmixwrite=50
bs=1m
iodepth=8
offset=0
size=192M
io_size=96M
thinktime=800000
thinktime_blocks=8

[ro]
rw=randread
bs=1m
iodepth=4
offset=192M
size=64M
io_size=32M
thinktime=1200000
thinktime_blocks=4
FIO
	log "h: fio load started"
	(cd "$T" && timeout 200 fio --verify_state_save=0 --output-format=json --output="$T/fio-h.json" \
		"$T/h.fio" >"$T/fio-h.out" 2>&1) &
	fio_pid=$!
	PV_PIDS+=("$fio_pid")
	sleep 3
	kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the stall: $(cat "$T/fio-h.out")"
	from=$(($(lines "$T/peerd$a.log") + 1))
	# (should the test end while B is stopped, the cleanup continues it)
	kill -STOP "${PEERD_PID[$b]}"
	t0=$SECONDS
	log "h: peerd $b stopped (SIGSTOP)"
	wait_log "$T/peerd$a.log" "no answer from server $b for (READ|WRITE) at [0-9]+ within 5 s" 20 "$from"
	sleep 2 # fused's retries reach B and wait there too
	kill -CONT "${PEERD_PID[$b]}"
	log "h: peerd $b continued (SIGCONT) after $((SECONDS - t0)) s"
	wait "$fio_pid" && rc=0 || rc=$?
	[ "$rc" = 0 ] || { cat "$T/fio-h.out" "$T/fio-h.json" >&2; fail "fio across the stall of server $b exited $rc"; }
	check_fio "$T/fio-h.json" h-across-stall
	lost=$(tail -n +"$from" "$T/peerd$a.log" | grep -c "no answer from server $b" || true)
	aside=$(grep -c 'set aside' "$T/fused-mh.log" || true)
	log "h: server $a gave up on $lost part(s) for server $b; fused set $aside slot(s) aside: $(grep 'set aside' "$T/fused-mh.log" | tail -n 1 | sed 's/.*info: //')"
	((aside >= 1)) || fail "server $a gave up on $lost part(s) in fused's shared memory, but fused set no slot aside"
	grep -q 'nothing back for 3 s' "$T/fused-mh.log" &&
		fail "fused declared server $a dead during the stall of server $b: $(grep 'nothing back' "$T/fused-mh.log")"
	peerd_alive "$a" || fail "peerd $a died after the stall of server $b"
	peerd_alive "$b" || fail "peerd $b died after its stall"

	# everything once more, by socket through B (no thinktime: the same
	# reads and writes, at once)
	mount_fused "$T/mh2" "$(addr_of "$b")" -- --shm-slots 0
	wait_path_exists "$T/mh2/hvol" || fail "$T/mh2/hvol did not appear"
	dev_b=$(loop_attach "$T/mh2/hvol")
	sed -e "s|^filename=.*|filename=$dev_b|" -e '/^thinktime/d' "$T/h.fio" >"$T/h-other.fio"
	run_fio h-verify-by-socket-through-b "$T/h-other.fio" --verify_only
	loop_detach "$dev_b"
	loop_detach "$dev"
	umount_fused "$T/mh2"
	umount_fused "$T/mh"
	stop_peerd "$b"
	stop_peerd "$a"
	log "h: owner stalled behind the entry server: $aside slot(s) set aside, fio verified, clean by socket"
}
part_h

# ---------------------------------------------------------------- g. unmapped while idle
# peerd unmaps the memory of a client idle for SHM_EXPIRE_MS; the next large
# request gets NO_SHM, fused attaches again and re-sends it by socket: IO
# works, and goes through the shared memory again afterwards.
log "g: waiting for peerd 1 to unmap the idle client's memory ($((SHM_EXPIRE_MS / 1000)) s idle)"
# Fused may attach again meanwhile (it did here once during h, with no IO
# of the test on its mount: a read of the idle loop device by something
# else, presumably), and peerd unmaps again after that much idle time. So
# g waits for a moment when the last word on a's memory is an unmap and no
# memfd is mapped; what fused logs from here on counts.
from=$(($(lines "$T/fused-mnt.log") + 1))
shm_state()
{
	grep -E "client $id_a: ([0-9]+ MiB of $MAPPED|shared memory unused for [0-9]+ s, unmapped)" "$T/peerd1.log" |
		tail -n 1 | grep -q 'unmapped$' || { echo "peerd 1 has not unmapped fused's memory since it last mapped it"; return 1; }
	! grep -q 'memfd:peervol-shm' "/proc/${PEERD_PID[1]}/maps" || { echo "peerd still has fused's memfd mapped after unmapping it"; return 1; }
}
deadline=$((SECONDS + SHM_EXPIRE_MS / 1000 + 60))
until why=$(shm_state); do
	((SECONDS < deadline)) || fail "$why (after $((SHM_EXPIRE_MS / 1000 + 60)) s)"
	sleep 0.2
done
unmapped_line=$(grep -n "client $id_a: shared memory unused" "$T/peerd1.log" | tail -n 1 | cut -d: -f1)
log "g: $(sed -n "${unmapped_line}p" "$T/peerd1.log" | sed 's/.*info: //')"
sed -n "${unmapped_line}p" "$T/peerd1.log" | grep -q "unused for $((SHM_EXPIRE_MS / 1000)) s, unmapped" ||
	fail "peerd 1 did not unmap after the ${SHM_EXPIRE_MS} ms of the shm-expire-ms test hook"
io_64m "$T/mnt/vol" 256 || fail "IO after peerd unmapped the idle client's shared memory failed"
wait_log "$T/fused-mnt.log" "no shared memory of client $id_a is mapped" 5 "$from"
tail -n +"$unmapped_line" "$T/peerd1.log" | grep -qE "client $id_a: [0-9]+ MiB of $MAPPED" ||
	fail "fused did not attach again after NO_SHM (peerd did not map its memory again)"
log "g: NO_SHM answered, fused attached again: $(tail -n +"$unmapped_line" "$T/peerd1.log" | grep "$MAPPED" | sed 's/.*info: //')"
n=$(sock_traffic "through shared memory after NO_SHM" "$T/mnt" io_64m "$T/mnt/vol" 256)
log "g: then $((n >> 10)) KiB crossed the socket for 64 MiB of block data"
((n < 4 << 20)) || fail "after NO_SHM and the new attach $n bytes crossed the socket for 64 MiB of block data"

loop_detach "$dev"
umount_fused "$T/mnt"
umount_fused "$T/msock"
stop_peerd 1
