#!/usr/bin/env bash
# fused-refuses: fused refuses, at once and with the reason on stderr (exit
# 1), what would otherwise fail silently or late: an address without
# tcp:// (it used to print "Invalid argument" and then wait for "no server
# answered"), a mount point that is a regular file, and a directory that is
# already a mount point (a second mount would hide the first). The first
# mount keeps working.
. "$(dirname "$0")/common.sh"
need_fuse
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create v 16M >/dev/null
mkdir -p "$T/empty"

# refuse WHAT REGEX FUSED_ARGS...: fused exits 1 within 5 s and says REGEX
refuse()
{
	local what=$1 re=$2 rc
	shift 2
	timeout 10 "$FUSED" "$@" </dev/null >"$T/out" 2>&1 && rc=0 || rc=$?
	[ "$rc" = 1 ] || fail "$what: fused exited $rc, expected 1: $(cat "$T/out")"
	grep -qE -- "$re" "$T/out" || fail "$what: message does not match /$re/: $(cat "$T/out")"
	is_mounted "$T/empty" && fail "$what: something got mounted on $T/empty"
	log "ok: $what: $(head -n 1 "$T/out")"
}

port=${PV_PORT}
refuse "address without tcp://" "'127.0.0.1:$port' is not a ZeroMQ endpoint.*tcp://" \
	--group "127.0.0.1:$port" "$T/empty"
refuse "second address without tcp://" "'127.0.0.2' is not a ZeroMQ endpoint" \
	--group "$(addr_of 1),127.0.0.2" "$T/empty"
refuse "tcp address without a port" "'tcp://127.0.0.1' is not a ZeroMQ endpoint" \
	--group "tcp://127.0.0.1" "$T/empty"
touch "$T/file"
refuse "a regular file as mount point" "$T/file is not a directory" \
	--group "$(addr_of 1)" "$T/file"

mount_fused "$T/m" "$(addr_of 1)"
timeout 10 "$FUSED" --group "$(addr_of 1)" -f "$T/m" </dev/null >"$T/out" 2>&1 && rc=0 || rc=$?
[ "$rc" = 1 ] || fail "fused on a mounted directory: exit $rc, expected 1: $(cat "$T/out")"
grep -q "$T/m is already a mount point (fuse" "$T/out" || fail "fused on a mounted directory: no reason: $(cat "$T/out")"
assert_eq "$(awk -v p="$T/m" '$5 == p' /proc/self/mountinfo | wc -l)" 1 "mounts on $T/m"
log "ok: a mounted directory: $(head -n 1 "$T/out")"
make_random "$T/x" 1
dd if="$T/x" of="$T/m/v" bs=1M oflag=direct conv=notrunc status=none
cmp <(dd if="$T/m/v" bs=1M count=1 iflag=direct status=none) "$T/x" || fail "the first mount stopped working"
