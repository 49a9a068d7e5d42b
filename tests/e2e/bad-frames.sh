#!/usr/bin/env bash
# bad-frames: peerd answers malformed input from a raw ZeroMQ client with
# BAD_REQUEST (or VERSION for another major version), logs it with the
# peer's address, never crashes or stalls, and keeps serving valid requests;
# hostile shared memory offers (PV_OP_SHM_ATTACH) are REFUSED with the
# reason and map nothing, PV_F_SHM without a mapping is NO_SHM; a data
# file is named (MAP_VOLUME) only to a client whose memory is mapped, and a
# READ with PV_F_MAP naming a file that is not the volume's gets the data;
# a second
# peerd on the same --data refuses to start (lock).
. "$(dirname "$0")/common.sh"
need_bin "$PEERD" "$PEERCTL" "$PVRAW"

run_peerd 1
ctl 1 volume create vol 16M >/dev/null
ep=$(addr_of 1)
SRC=127.0.0.9 # the raw client connects from here, so its address is ours to find in the log

# expect_status WANT_REGEX CASE [ARGS]
expect_status()
{
	local want=$1 got
	shift
	got=$("$PVRAW" -t 5000 -s "$SRC" -q "$ep" "$@" 2>>"$T/pvraw.err") || true
	grep -qxE "$want" <<<"$got" || fail "pvraw $*: expected $want, got '${got:-nothing}' ($(tail -n 3 "$T/pvraw.err" | tr '\n' ' '))"
	peerd_alive 1 || fail "peerd died after pvraw $*"
	log "ok: $* -> $got"
}

# A valid round trip first, so we know the tool and the server agree.
make_random "$T/blk" 1
assert_eq "$("$PVRAW" "$ep" write vol 0 "$T/blk")" OK "valid WRITE"
assert_eq "$("$PVRAW" "$ep" flush vol)" OK "valid FLUSH"
assert_eq "$("$PVRAW" "$ep" read vol 0 1048576 "$T/blk.back")" OK "valid READ"
cmp "$T/blk" "$T/blk.back" || fail "READ returned other bytes than WRITE wrote"

expect_status BAD_REQUEST empty
expect_status BAD_REQUEST truncated
expect_status BAD_REQUEST unknown-op vol
expect_status VERSION version vol
expect_status BAD_REQUEST overlen vol
expect_status BAD_REQUEST bigheader
expect_status BAD_REQUEST write-nodata vol
expect_status 'BAD_REQUEST|VERSION' garbage-multi
# data ops on bad targets get their own codes
expect_status NO_VOLUME read nosuchvolume 0 4096
expect_status OUT_OF_RANGE read vol $((16 << 20)) 4096
expect_status OUT_OF_RANGE write vol $((16 << 20)) "$T/blk"

# ---------------------------------------------------------------- shared memory
# Hostile PV_OP_SHM_ATTACH / PV_F_SHM input. peerd maps a client's memory
# only for a /proc/PID/fd/N path to a sealed memfd named peervol-shm of the
# announced size starting with the announced token; anything else is
# REFUSED with the reason, and nothing is mapped.

# expect_shm_refused MESSAGE_REGEX PVRAW_ARGS...: REFUSED, for the reason in
# the message (-q prints it on stderr).
expect_shm_refused()
{
	local want=$1 got msg
	shift
	got=$("$PVRAW" -t 5000 -s "$SRC" -q "$ep" "$@" 2>"$T/pvraw.one") || true
	cat "$T/pvraw.one" >>"$T/pvraw.err"
	msg=$(grep -m1 'status' "$T/pvraw.one" || true)
	assert_eq "$got" REFUSED "pvraw $* ($msg)"
	grep -qE -- "$want" <<<"$msg" || fail "pvraw $*: refused, but not for /$want/: $msg"
	peerd_alive 1 || fail "peerd died after pvraw $*"
	log "ok: $* -> REFUSED (${msg#*status REFUSED: })"
}

form='not of the form /proc/PID/fd/N'
expect_shm_refused "$form" shm-attach /etc/passwd
expect_shm_refused "$form" shm-attach /proc/self/fd/0
expect_shm_refused "$form" shm-attach "/proc/1/fd/0 "
expect_shm_refused "$form" shm-attach "/proc/+1/fd/0"
expect_shm_refused "$form" shm-attach "/proc/01/fd/0"
expect_shm_refused "$form" shm-attach "/proc/4294967297/fd/0" # wraps to pid 1 in %u
expect_shm_refused "$form" shm-attach "/proc/1/fd/0/../0"
expect_shm_refused "$form" shm-attach ""
# the right form, but not a memfd of ours: init's stdin, a file we opened
expect_shm_refused . shm-attach /proc/1/fd/0
exec 7<"$T/blk"
expect_shm_refused 'is not a peervol memfd' shm-attach "/proc/$$/fd/7"
exec 7<&-
# a memfd of pvraw's own, each with one thing wrong
expect_shm_refused 'not a sealed file' shm-memfd vol unsealed
expect_shm_refused 'not a sealed file of' shm-memfd vol badsize
expect_shm_refused 'token' shm-memfd vol badtoken
expect_shm_refused 'is not a peervol memfd' shm-memfd vol othername
# sizes peerd would never map, for a path that would be fine
expect_shm_refused 'size 0 outside' shm-attach /proc/1/fd/0 0
expect_shm_refused 'size [0-9]+ outside' shm-attach /proc/1/fd/0 $((1 << 40))
# malformed: no body, no client id; a data frame besides PV_F_SHM
expect_status BAD_REQUEST shm-attach-nobody
expect_status BAD_REQUEST shm-attach /proc/1/fd/0 -c 0
expect_status BAD_REQUEST shm-write-data vol
# a client that never attached: NO_SHM (fused attaches and re-sends)
expect_status NO_SHM shm-write-unmapped vol
grep -q 'shared memory mapped' "$T/peerd1.log" &&
	fail "peerd mapped shared memory for a refused attach: $(grep 'shared memory mapped' "$T/peerd1.log")"

# A well-formed client on this host (pvraw's own sealed memfd): mapped; a
# WRITE from its memory reads back by socket and into its memory; ranges
# past the region's end, over the token or wrapping, a forwarded request
# (hops 1) and a FLUSH with PV_F_SHM are BAD_REQUEST; the same attach again
# is OK; the token is untouched. At 8 MiB, away from the data checked below.
shm_id=$(((1 << 62) + 4242))
got=$("$PVRAW" -t 5000 -s "$SRC" -q -c "$shm_id" "$ep" shm-memfd vol good $((8 << 20)) 2>>"$T/pvraw.err" | tr '\n' ' ') || true
assert_eq "$got" "OK OK OK SAME OK SAME BAD_REQUEST BAD_REQUEST BAD_REQUEST BAD_REQUEST BAD_REQUEST OK SAME " \
	"shm-memfd good: attach, round trip, range checks, re-attach"
peerd_alive 1 || fail "peerd died after the shared memory round trip"
assert_eq "$(grep -c 'shared memory mapped' "$T/peerd1.log")" 1 "mappings logged by peerd"
pid1=${PEERD_PID[1]}
assert_eq "$(grep -c 'memfd:peervol-shm' "/proc/$pid1/maps")" 1 "peervol memfds mapped in peerd"
grep -q 'memfd:other-shm' "/proc/$pid1/maps" && fail "peerd mapped the memfd named other-shm"
log "ok: shm-memfd good -> $got"
# The mapping serves only the connection that attached it: another client
# (another connection) claiming the same client id gets NO_SHM, not the
# first client's memory.
expect_status NO_SHM shm-write-unmapped vol -c "$shm_id"

# Mapped reads (PV_OP_MAP_VOLUME, PV_F_MAP): a client whose memory is not
# mapped is not told where the data file is; a READ naming a file that is
# not the volume's data file (a guessed, stale or foreign dev/ino) gets its
# data by socket, never an answer without data; a client on this host gets
# the file's /proc path, opens the file it names (same dev and ino), reads
# the bytes a READ by socket gives out of its own mapping, and a READ naming
# that file is answered without data.
expect_status NO_SHM map-volume vol
expect_status NO_VOLUME map-volume nosuchvolume
vol_ino=$(stat -c %i "$(data_of 1)/volumes/vol.vol")
vol_dev=$("$PYTHON" -c 'import os, sys; print(os.stat(sys.argv[1]).st_dev)' "$(data_of 1)/volumes/vol.vol")
expect_status OK read-map vol 0 4096 "$vol_dev" $((vol_ino + 1))
expect_status OK read-map vol 0 4096 0 0
expect_status OUT_OF_RANGE read-map vol $((16 << 20)) 4096 "$vol_dev" "$vol_ino"
map_id=$(((1 << 62) + 4343))
got=$("$PVRAW" -t 5000 -s "$SRC" -q -c "$map_id" "$ep" shm-memfd vol map $((8 << 20)) 2>>"$T/pvraw.err" | tr '\n' ' ') || true
assert_eq "$got" "OK OK SAME MAPPED OK SAME OK " \
	"shm-memfd map: attach, MAP_VOLUME, the file, a mapped READ, its bytes, another inode"
peerd_alive 1 || fail "peerd died after the mapped reads"
log "ok: shm-memfd map -> $got"

# BATCH (protocol 1.1): a valid one does every record (a WRITE and a READ:
# two answers); a malformed one is refused whole, its valid WRITE not done;
# a BATCH inside a BATCH is refused.
head -c 8192 /dev/zero | tr '\0' 'B' >"$T/b8k"
got=$("$PVRAW" -t 5000 -s "$SRC" -q "$ep" batch vol $((12 << 20)) "$T/b8k" 2>>"$T/pvraw.err" | tr '\n' ' ') || true
assert_eq "$got" "OK OK " "a BATCH of a WRITE and a READ"
assert_eq "$("$PVRAW" "$ep" read vol $((12 << 20)) 8192 "$T/b8k.back")" OK "READ of the batched WRITE"
cmp "$T/b8k" "$T/b8k.back" || fail "the batched WRITE did not land"
expect_status BAD_REQUEST batch-bad vol $((13 << 20)) "$T/b8k"
assert_eq "$("$PVRAW" "$ep" read vol $((13 << 20)) 8192 "$T/bad.back")" OK "READ after the refused BATCH"
cmp -s "$T/b8k" "$T/bad.back" && fail "a refused BATCH wrote its WRITE record"
expect_status BAD_REQUEST batch-nested vol
grep -q 'malformed BATCH' "$T/peerd1.log" || fail "peerd did not log the malformed BATCH"
log "ok: BATCH valid, malformed (nothing done), nested"
# The version gate: a client of protocol 1.0 cannot read a BATCH and never
# gets one; a client of 1.1 sending 64 READs at once gets its replies
# batched (all answered either way).
"$PVRAW" -t 5000 "$ep" burst vol 64 0 >"$T/burst10" 2>>"$T/pvraw.err" || fail "burst of 1.0 READs not answered"
assert_eq "$(grep -cx OK "$T/burst10")" 64 "1.0 burst: OK replies"
assert_eq "$(grep -c '^BATCH' "$T/burst10")" 0 "1.0 burst: BATCH replies"
"$PVRAW" -t 5000 "$ep" burst vol 64 >"$T/burst11" 2>>"$T/pvraw.err" || fail "burst of 1.1 READs not answered"
assert_eq "$(grep -cx OK "$T/burst11")" 64 "1.1 burst: OK replies"
(($(grep -c '^BATCH' "$T/burst11") >= 1)) || fail "1.1 burst: no reply was batched"
log "ok: 64 READs at once: 1.0 answered one by one, 1.1 in $(grep -c '^BATCH' "$T/burst11") BATCH messages"

# Volume ids (protocol 1.2): a request naming the id of a volume deleted
# since (a stale handle of a host) is NO_VOLUME on every path (socket,
# BATCH, shared memory, mapped reads, MAP_VOLUME), and changes nothing; an
# id newer than the server knows is BUSY (its catalog catches up); the
# right id, or none (senders before 1.2), is served.
ctl 1 volume create gen 16M >/dev/null
old_id=$(ctl 1 --json volume show gen | json 'd["id"]')
ctl 1 volume delete gen >/dev/null
ctl 1 volume create gen 16M >/dev/null
gen_id=$(ctl 1 --json volume show gen | json 'd["id"]')
((gen_id > old_id)) || fail "volume ids: new gen id $gen_id not above the deleted one's $old_id"
expect_status OK -V "$gen_id" write gen 0 "$T/b8k"
expect_status OK -V "$gen_id" read gen 0 4096
expect_status NO_VOLUME -V "$old_id" read gen 0 4096
expect_status NO_VOLUME -V "$old_id" trim gen 0 8192
expect_status NO_VOLUME -V "$old_id" flush gen
expect_status NO_VOLUME -V "$old_id" map-volume gen
expect_status BUSY -V $((gen_id + 100)) read gen 0 4096
make_random "$T/stale" 1
expect_status NO_VOLUME -V "$old_id" write gen 0 "$T/stale"
head -c 65536 "$T/stale" >"$T/stale.64k"
got=$("$PVRAW" -t 5000 -s "$SRC" -q -V "$old_id" "$ep" batch gen 0 "$T/stale.64k" 2>>"$T/pvraw.err" | tr '\n' ' ') || true
assert_eq "$got" "NO_VOLUME NO_VOLUME " "a BATCH of a WRITE and a READ with a stale volume id"
got=$("$PVRAW" -t 5000 -s "$SRC" -q -V "$old_id" -c $(((1 << 62) + 4444)) "$ep" shm-memfd gen good 0 2>>"$T/pvraw.err" | tr '\n' ' ') || true
[[ $got == "OK NO_VOLUME"* ]] || fail "shm-memfd with a stale volume id: attach then NO_VOLUME expected, got '$got'"
gen_ino=$(stat -c %i "$(data_of 1)/volumes/gen.vol")
gen_dev=$("$PYTHON" -c 'import os, sys; print(os.stat(sys.argv[1]).st_dev)' "$(data_of 1)/volumes/gen.vol")
expect_status NO_VOLUME -V "$old_id" read-map gen 0 4096 "$gen_dev" "$gen_ino"
assert_eq "$("$PVRAW" "$ep" read gen 0 8192 "$T/gen.back")" OK "READ of gen after the stale requests"
cmp -s "$T/gen.back" "$T/b8k" || fail "a request with a stale volume id changed volume gen"
grep -q "stale handle of deleted volume id $old_id" "$T/peerd1.log" || fail "peerd did not log the stale handle"
log "ok: volume ids: stale id NO_VOLUME on every path, nothing changed; newer id BUSY"

# 200 random garbage messages: each gets an answer, none crashes the server.
"$PVRAW" -t 5000 -s "$SRC" -n 200 "$ep" garbage >"$T/garbage.out" 2>>"$T/pvraw.err" ||
	fail "garbage: not every message was answered: $(sort "$T/garbage.out" | uniq -c | tr '\n' ' ')"
assert_eq "$(wc -l <"$T/garbage.out")" 200 "replies to 200 garbage messages"
grep -vxE 'BAD_REQUEST|VERSION' "$T/garbage.out" >/dev/null &&
	fail "garbage got other answers than BAD_REQUEST/VERSION: $(sort "$T/garbage.out" | uniq -c | tr '\n' ' ')"
log "garbage: $(sort "$T/garbage.out" | uniq -c | tr '\n' ' ')"

# Still serving: control socket, and the data path for a new client.
peerd_alive 1 || fail "peerd died"
ctl 1 status >/dev/null || fail "peerctl status fails after the bad frames"
assert_eq "$("$PVRAW" "$ep" read vol 0 1048576 "$T/blk.back2")" OK "valid READ after the bad frames"
cmp "$T/blk" "$T/blk.back2" || fail "data changed by the bad frames"

# Logged with the peer's address.
grep -q "$SRC" "$T/peerd1.log" || fail "peerd's log does not name the bad peer's address $SRC"
log "peerd logs the bad peer: $(grep -m1 "$SRC" "$T/peerd1.log")"

# ---------------------------------------------------------------- data dir lock
port2=$(pv_free_port)
timeout 20 "$PEERD" --id 2 --listen "tcp://127.0.0.2:$port2" --data "$(data_of 1)" \
	--control "$T/second.sock" >"$T/second.log" 2>&1 && rc=0 || rc=$?
[ "$rc" != 0 ] || fail "a second peerd on the same --data started and exited 0: $(cat "$T/second.log")"
[ "$rc" != 124 ] || fail "a second peerd on the same --data did not refuse (still running after 20 s)"
grep -qi lock "$T/second.log" || fail "second peerd's message does not mention the lock: $(cat "$T/second.log")"
log "second peerd refused (exit $rc): $(head -n 3 "$T/second.log" | tr '\n' ' ')"
peerd_alive 1 || fail "the first peerd died when a second one tried its --data"
ctl 1 status >/dev/null || fail "peerctl status fails after the second peerd was refused"
assert_eq "$(ctl 1 --json volume list | json 'len(d["volumes"])')" 2 "volumes (vol, gen) after the refused second peerd"

stop_peerd 1
