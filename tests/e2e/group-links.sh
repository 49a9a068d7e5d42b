#!/usr/bin/env bash
# group-links: peer links (include/link.h) in a group where one server has
# them turned off (--link-port off, as a server of an older release would
# have none): servers 1 and 3 link to each other, nobody links to or from
# server 2, and fio verify through server 2 (it forwards by ZeroMQ) and
# through server 1 (by link to 3, by ZeroMQ to 2) ends with zero errors;
# the ZeroMQ path batches requests (BATCH, protocol 1.1) and loses none.
# Garbage sent to a link listener closes that connection only: the server
# keeps serving and its links to peers stay up. A well-framed record with
# an undecodable header is answered BAD_REQUEST on the link.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

start_peerd 1
start_peerd 2 --link-port off
start_peerd 3
for n in 1 2 3; do wait_peerd "$n"; done
ctl 1 group init >/dev/null
ctl 2 group join "$(addr_of 1)" >/dev/null
ctl 3 group join "$(addr_of 1)" >/dev/null
wait_group_up 1 2 3
wait_links_up 1 1
wait_links_up 3 1
assert_eq "$(status_field 2 peer_links_up)" 0 "server 2 (links off): outgoing links"
assert_eq "$(status_field 2 peer_links_accepted)" 0 "server 2 (links off): accepted links"
assert_eq "$(status_field 2 peer_link_address)" "" "server 2 (links off): link address"
link3=$(status_field 3 peer_link_address)
[[ $link3 == tcp://127.0.0.3:* ]] || fail "server 3's peer link address is '$link3'"
log "servers 1 and 3 linked, server 2 reached by ZeroMQ; server 3 takes links at $link3"

ctl 1 volume create vol 192M >/dev/null
assert_eq "$(ctl 1 volume show vol --json | json "sorted(d['holders'])")" "[1, 2, 3]" "holders of vol"

# jobfile DEV BASE_MIB FILE: random 4 KiB and sequential 1 MiB verify writes
# on 64 MiB from BASE_MIB.
jobfile()
{
	cat >"$3" <<EOF
[global]
filename=$1
direct=1
ioengine=libaio
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1
size=32M

[rand]
rw=randwrite
bs=4k
iodepth=16
offset=$2M

[seq]
rw=write
bs=1M
iodepth=4
offset=$(($2 + 32))M
EOF
}

base=0
for entry in 2 1; do
	mnt=$T/mnt$entry
	mount_fused "$mnt" "$(addr_of "$entry")"
	wait_path_exists "$mnt/vol" || fail "$mnt/vol did not appear"
	dev=$(loop_attach "$mnt/vol")
	jobfile "$dev" "$base" "$T/job$entry.fio"
	run_fio "through-server-$entry" "$T/job$entry.fio"
	loop_detach "$dev"
	umount_fused "$mnt"
	base=$((base + 64))
done
r3=$(status_field 3 link_records_received)
r1=$(status_field 1 link_records_received)
((r3 > 100 && r1 > 100)) || fail "parts from server 1 to 3 did not go by link ($r3 records at 3, $r1 answers at 1)"
assert_eq "$(status_field 2 link_records_received)" 0 "records on links at server 2 (links off)"
log "fio verify clean through server 2 (ZeroMQ only) and server 1 (link to 3: $r3 records)"

# Without links the ZeroMQ path batches (protocol 1.1): what fused sent
# server 2 in one round came as one BATCH, with several records; server 2's
# forwarded parts reached 1 and 3 in BATCHes too; no queued message lost.
b=$(status_field 2 batches_received)
r=$(status_field 2 batch_records_received)
((b > 0 && r >= 2 * b)) || fail "server 2: $b BATCH messages received with $r records"
(($(status_field 2 batches_sent) > 0)) || fail "server 2 sent no BATCH (replies, forwarded parts)"
for n in 1 3; do
	(($(status_field "$n" batches_received) > 0)) || fail "server $n received no BATCH from server 2"
done
for n in 1 2 3; do
	assert_eq "$(status_field "$n" sends_dropped)" 0 "server $n: queued messages lost"
done
log "server 2: $b batches received ($r records) on the ZeroMQ path"

# ---------------------------------------------------------------- bad input
# pvlink HOST PORT HEX: sends the bytes and prints what comes back within
# 2 s as "CLOSED"/"OPEN" and the records' header status (pv.Header field 9).
pvlink()
{
	python3 - "$@" <<'EOF'
import socket, struct, sys, time
host, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.create_connection((host, port), timeout=5)
s.sendall(data)
s.settimeout(0.2)
buf, closed, end = b"", False, time.time() + 2
while time.time() < end:
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    if not b:
        closed = True
        break
    buf += b
out = ["CLOSED" if closed else "OPEN"]
while len(buf) >= 8:
    hl, dl = struct.unpack("<II", buf[:8])
    hdr = buf[8:8 + hl]
    # status: field 9, varint (tag 0x48)
    st = 0
    i = 0
    while i < len(hdr):
        tag = hdr[i]; i += 1
        v, shift = 0, 0
        if tag & 7 == 0:
            while True:
                c = hdr[i]; i += 1
                v |= (c & 0x7f) << shift; shift += 7
                if not c & 0x80:
                    break
            if tag >> 3 == 9:
                st = v
        elif tag & 7 == 2:
            n, shift = 0, 0
            while True:
                c = hdr[i]; i += 1
                n |= (c & 0x7f) << shift; shift += 7
                if not c & 0x80:
                    break
            i += n
        else:
            break
    out.append("status=%d" % st)
    buf = buf[8 + hl + (0 if dl == 0xffffffff else dl):]
print(" ".join(out))
EOF
}
port3=${link3##*:}
# a header length of 0: the stream cannot be read on; the link is closed
got=$(pvlink 127.0.0.3 "$port3" 00000000ffffffff)
assert_eq "$got" "CLOSED" "server 3's answer to a record with a 0-byte header"
# random bytes
got=$(pvlink 127.0.0.3 "$port3" "$(head -c 512 /dev/urandom | od -An -tx1 | tr -d ' \n')")
[[ $got == CLOSED* ]] || fail "server 3 kept a link open after 512 random bytes: $got"
# well framed, its header not a pv.Header (field 1 with wire type 7): one
# BAD_REQUEST (status 6) back, the link stays open
got=$(pvlink 127.0.0.3 "$port3" 03000000ffffffff0fffff)
assert_eq "$got" "OPEN status=6" "server 3's answer to an undecodable header"
wait_links_up 1 1
wait_links_up 3 1
wait_member_state 1 3 up
# and it still serves: read back what went through server 1
mount_fused "$T/mnt-after" "$(addr_of 1)"
wait_path_exists "$T/mnt-after/vol" || fail "$T/mnt-after/vol did not appear"
dev=$(loop_attach "$T/mnt-after/vol")
jobfile "$dev" 64 "$T/verify.fio"
run_fio "verify-after-garbage" "$T/verify.fio" --verify_only
loop_detach "$dev"
umount_fused "$T/mnt-after"
log "garbage on a link listener closes that connection only; the group serves on"
