#!/usr/bin/env bash
# security: an authenticated group (docs/security.md, issue 16).
#
# - Key files: 'peerctl group keygen' writes mode 0600 and never overwrites
#   without --force; peerd refuses a group-readable key, a client key, a
#   malformed one, each with its reason.
# - Three servers with the group key form a group; a client key made by
#   'peerctl client add' mounts and fio verifies clean.
# - Refused, logged with the address and counted, reading nothing: fused
#   with no key, with a key of another group, with the group key; a fourth
#   peerd with another group's key cannot join; a raw TCP connection that
#   speaks ZeroMQ without a key (the NULL mechanism) gets no answer but the
#   greeting.
# - 'peerctl client revoke': the mount that holds the key gets errors, a
#   new mount with it is refused; the name takes a new key.
# - Encryption: with --encrypt off, links carry block data in the clear
#   after the handshake (a capture of loopback shows a pattern the test
#   wrote: the capture works); with --encrypt on, fio verifies clean and
#   the capture holds no trace of the pattern.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd fio
need_cmd tcpdump
need_bin "$PEERD" "$PEERCTL" "$FUSED"

KEY=$T/group.key
PEERCTL_ABS=$(realpath "$PEERCTL")

# --- key files -------------------------------------------------------------
"$PEERCTL" group keygen --out "$KEY" >"$T/keygen.out" || fail "group keygen failed"
grep -q "wrote $KEY" "$T/keygen.out" || fail "keygen said: $(cat "$T/keygen.out")"
assert_eq "$(stat -c %a "$KEY")" 600 "mode of the group key"
EXPECT_RC=1 expect_fail_msg "exists" "$PEERCTL" group keygen --out "$KEY"
"$PEERCTL" group keygen --out "$T/other.key" >/dev/null || fail "second keygen failed"
cmp -s "$KEY" "$T/other.key" && fail "two keygens made the same key"

cp "$KEY" "$T/open.key"
chmod 640 "$T/open.key"
EXPECT_RC=1 expect_fail_msg "chmod 600" "$PEERD" --id 9 --listen tcp://127.0.0.9:$PV_PORT \
	--data "$T/d9" --control "$T/c9.sock" --auth "$T/open.key"
printf 'peervol-key 1\nkind group\nidentity 00\n' >"$T/bad.key"
chmod 600 "$T/bad.key"
EXPECT_RC=1 expect_fail_msg "64 hex digits" "$PEERD" --id 9 --listen tcp://127.0.0.9:$PV_PORT \
	--data "$T/d9" --control "$T/c9.sock" --auth "$T/bad.key"
EXPECT_RC=2 expect_fail_msg "needs --auth" "$PEERD" --id 9 --listen tcp://127.0.0.9:$PV_PORT \
	--data "$T/d9" --control "$T/c9.sock" --encrypt on

# --- a group with keys -----------------------------------------------------
PV_GROUP_ARGS="--auth $KEY" group_weighted 1 1 1
grep -q "the group is authenticated" "$T/peerd1.log" || fail "peerd 1 does not say it is authenticated"
ctl 1 volume create vol 64M >/dev/null

(cd "$T" && "$PEERCTL_ABS" -s "$(sock_of 2)" client add host1 >"$T/add.out") ||
	fail "client add host1 failed"
assert_eq "$(stat -c %a "$T/host1.key")" 600 "mode of the client key"
grep -q "client host1 added" "$T/add.out" || fail "client add said: $(cat "$T/add.out")"
PV_CTL_FILES=$T/dup expect_ctl_error 1 6 "has a key already" client add host1 --out "$T/dup.key"
[ -e "$T/dup.key" ] && fail "a refused client add wrote a key file"
expect_ctl_error 3 5 "no client 'nobody'" client revoke nobody
assert_eq "$(ctl 3 client list --json | json "[(c['name'], c['revoked']) for c in d['clients']]")" \
	'[["host1", false]]' "client list on server 3"

EXPECT_RC=1 expect_fail_msg "client key" "$PEERD" --id 9 --listen tcp://127.0.0.9:$PV_PORT \
	--data "$T/d9" --control "$T/c9.sock" --auth "$T/host1.key"
mkdir -p "$T/mx"
EXPECT_RC=1 expect_fail_msg "group key" "$FUSED" --group "$(addr_of 1)" --auth "$KEY" -f "$T/mx"

mount_fused "$T/m" "$(addr_of 1)" -- --auth "$T/host1.key"
wait_path_exists "$T/m/vol" || fail "vol did not appear in the authenticated mount"
fio --verify_state_save=0 --name=auth --filename="$T/m/vol" --direct=1 --ioengine=psync --rw=randrw --bs=4k \
	--size=16M --io_size=8M --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--output="$T/fio1.out" || fail "fio verify through the authenticated mount failed"
log "fio verify clean with a client key"

# the link port: garbage gets the link closed, a silent connection is
# dropped after the 5 s handshake bound; both logged with the address
link=$(ctl 1 status --json | json "d['peer_link_address']")
[[ $link == tcp://* ]] || fail "server 1 has no link address: $link"
"$PYTHON" - "${link#tcp://}" >"$T/rawlink.out" <<'EOF' || fail "raw link connections: $(cat "$T/rawlink.out")"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
def drain(s, secs):
    got, end = b"", time.time() + secs
    s.settimeout(0.5)
    while time.time() < end:
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return got, True
        if not b:
            return got, True
        got += b
    return got, False
g = socket.create_connection((host, int(port)), timeout=5)
g.sendall(b"\x10\x00\x00\x00\xff\xff\xff\xff" + b"\x08\x01" * 8)   # a record, no handshake
got, closed = drain(g, 5)
print("garbage: %d bytes back, closed %s" % (len(got), closed))
quiet = socket.create_connection((host, int(port)), timeout=5)
got2, closed2 = drain(quiet, 9)
print("silent: %d bytes back, closed %s" % (len(got2), closed2))
sys.exit(0 if closed and closed2 and len(got) <= 210 and not got2 else 1)
EOF
log "link port: $(tr '\n' ';' <"$T/rawlink.out")"
grep -q "refused a link connection from 127.0.0.1:[0-9]*: not a link handshake" "$T/peerd1.log" ||
	fail "server 1 did not log the garbage on its link port"
grep -q "refused a link connection from 127.0.0.1:[0-9]*: no handshake within" "$T/peerd1.log" ||
	fail "server 1 did not log the silent link connection"

# --- strangers -------------------------------------------------------------
refused_before=$(ctl 1 client list --json | json "d['refused_connections']")
# fused_refused WHY ARGS...: fused must not mount (exit 1) and say WHY
fused_refused()
{
	local why=$1
	shift
	mkdir -p "$T/mr"
	EXPECT_RC=1 expect_fail_msg "$why" timeout 60 "$FUSED" --group "$(addr_of 1)" -f "$T/mr" "$@"
	is_mounted "$T/mr" && fail "a refused fused mounted $T/mr"
	return 0
}
fused_refused "wants a key"
(cd "$T" && "$PEERCTL_ABS" group keygen --out "$T/g2.key" >/dev/null)
start_peerd 7 --auth "$T/g2.key"
wait_peerd 7
(cd "$T" && "$PEERCTL_ABS" -s "$(sock_of 7)" client add stranger >/dev/null) || fail "client add on server 7"
fused_refused "failed the key handshake" --auth "$T/stranger.key"

# a fourth server with another group's key cannot join
ctl 7 group join "$(addr_of 1)" --timeout 5 >"$T/join.out" 2>&1 && fail "server 7 with another group's key joined: $(cat "$T/join.out")"
log "server 7 (another group's key) could not join: $(tail -n 1 "$T/join.out")"
assert_eq "$(ctl 1 group show --json | json "len(d['members'])")" 3 "members after the stranger's join"

# raw TCP speaking ZeroMQ's NULL mechanism: nothing comes back but the
# server's greeting, and the connection is closed
"$PYTHON" - 127.0.0.1 "$PV_PORT" >"$T/raw.out" <<'EOF' || fail "raw connection: $(cat "$T/raw.out")"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
try:
    s.sendall(greeting)
except ConnectionResetError:
    pass
# a READY command, then a READ header as a message
try:
    s.sendall(b"\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER")
    s.sendall(b"\x00\x10" + b"\x08\x01\x10\x01" * 4)
except (BrokenPipeError, ConnectionResetError):
    pass
got = b""
end = time.time() + 3
while time.time() < end:
    try:
        b = s.recv(4096)
    except (socket.timeout, ConnectionResetError):
        break
    if not b:
        break
    got += b
print("received %d bytes" % len(got))
sys.exit(0 if len(got) <= 64 else 1)
EOF
log "raw NULL-mechanism connection: $(cat "$T/raw.out")"
wait_for 10 "refusals counted" eval '[ "$(ctl 1 client list --json | json "d[\"refused_connections\"]")" -gt "$refused_before" ]'
grep -q "refused a ZeroMQ connection from 127.0.0" "$T/peerd1.log" ||
	fail "server 1 did not log a refused connection with its address"

# --- revoke ----------------------------------------------------------------
ctl 2 client revoke host1 >/dev/null
dd if="$T/m/vol" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null &&
	wait_for 20 "the revoked mount's IO fails" eval '! dd if="$T/m/vol" of=/dev/null bs=4k count=1 skip=$((RANDOM % 1000)) iflag=direct 2>/dev/null'
log "IO of the revoked mount fails"
umount_fused "$T/m"
fused_refused "refused this host's key" --auth "$T/host1.key"
(cd "$T" && rm -f host1.key && "$PEERCTL_ABS" -s "$(sock_of 1)" client add host1 >/dev/null) ||
	fail "a revoked name takes no new key"
assert_eq "$(ctl 1 client list --json | json "sorted((c['name'], c['revoked']) for c in d['clients'])")" \
	'[["host1", false], ["host1", true]]' "client list after revoke and add"

# --- encryption ------------------------------------------------------------
# write_pattern MOUNT: writes 8 MiB of a known text to vol and syncs
PATTERN="peervol-secret-pattern-0123456789"
write_pattern()
{
	"$PYTHON" - "$1/vol" "$PATTERN" <<'EOF'
import os, sys
line = (sys.argv[2] * 128).encode()[:4096]
fd = os.open(sys.argv[1], os.O_WRONLY)
for i in range(2048):
    os.pwrite(fd, line, i * 4096)
os.fsync(fd)
os.close(fd)
EOF
}

# capture_while PCAP CMD...: tcpdump on lo while CMD runs
capture_while()
{
	local pcap=$1 pid
	shift
	tcpdump -i lo -w "$pcap" -U -s 0 "tcp and net 127.0.0.0/8" >"$pcap.log" 2>&1 &
	pid=$!
	PV_PIDS+=("$pid")
	sleep 1
	"$@"
	sleep 1
	kill -INT "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

pattern_in() { grep -c -a -F "$PATTERN" "$1" || true; }

mount_fused "$T/m" "$(addr_of 1)" -- --auth "$T/host1.key"
wait_path_exists "$T/m/vol" || fail "vol did not appear"
capture_while "$T/plain.pcap" write_pattern "$T/m"
plain=$(pattern_in "$T/plain.pcap")
log "authenticated, not encrypted: the pattern shows $plain times in the capture"
[ "$plain" -gt 0 ] || fail "the capture of an unencrypted group holds no pattern: the capture does not work"
umount_fused "$T/m"

for n in 1 2 3; do
	stop_peerd "$n"
	start_peerd "$n" --auth "$KEY" --encrypt on
done
for n in 1 2 3; do wait_peerd "$n"; done
wait_group_up 1 2 3
grep -q "links encrypted" "$T/peerd1.log" || fail "peerd 1 does not say links are encrypted"
mount_fused "$T/m" "$(addr_of 1)" -- --auth "$T/host1.key"
wait_path_exists "$T/m/vol" || fail "vol did not appear"
capture_while "$T/enc.pcap" write_pattern "$T/m"
enc=$(pattern_in "$T/enc.pcap")
[ "$enc" = 0 ] || fail "encrypted group: the pattern shows $enc times in the capture of loopback"
[ "$(stat -c %s "$T/enc.pcap")" -gt 8000000 ] || fail "the encrypted capture is too small to hold the writes"
log "encrypted: no trace of the pattern in $(stat -c %s "$T/enc.pcap") bytes of capture"
fio --verify_state_save=0 --name=enc --filename="$T/m/vol" --direct=1 --ioengine=psync --rw=randrw --bs=64k \
	--size=32M --io_size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--output="$T/fio2.out" || fail "fio verify through the encrypted group failed"
log "fio verify clean with encryption on"
umount_fused "$T/m"
log "PASS"
