#!/usr/bin/env bash
# bad-frames: peerd answers malformed input from a raw ZeroMQ client with
# BAD_REQUEST (or VERSION for another major version), logs it with the
# peer's address, never crashes or stalls, and keeps serving valid requests;
# a second peerd on the same --data refuses to start (lock).
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
assert_eq "$(ctl 1 --json volume list | json 'len(d["volumes"])')" 1 "volumes after the refused second peerd"

stop_peerd 1
