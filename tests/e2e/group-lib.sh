# group-lib.sh: helpers shared by the server-group end-to-end tests
# (tests/e2e/group-*.sh), on top of common.sh. Source it after common.sh:
#
#   . "$(dirname "$0")/common.sh"
#   . "$(dirname "$0")/group-lib.sh"
#
# It is not a test itself; run directly (the CMake glob picks up every *.sh
# but common.sh) it skips.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "SKIP: group-lib: helper library sourced by the group-*.sh tests, not a test"
	exit 77
fi
[ -n "${PV_TEST:-}" ] || { echo "group-lib.sh: source common.sh first" >&2; exit 1; }

# How long (seconds) a member may take to be seen up by the others: the
# design says "within a few seconds"; generous for a loaded 2-core machine.
PV_GROUP_WAIT=${PV_GROUP_WAIT:-30}

# member_state N ID: the state ("self", "up", "down") server N shows for
# member ID in 'group show --json'; empty if it is not a member or N does
# not answer.
member_state()
{
	ctl "$1" group show --json 2>/dev/null |
		json "next((m['state'] for m in d['members'] if m['id'] == $2), '')" 2>/dev/null || true
}

# wait_member_state N ID STATE [SECONDS]: until server N shows member ID in
# STATE; fails otherwise.
wait_member_state()
{
	local n=$1 id=$2 want=$3 deadline=$((SECONDS + ${4:-$PV_GROUP_WAIT})) got=""
	while ((SECONDS < deadline)); do
		got=$(member_state "$n" "$id")
		[ "$got" = "$want" ] && return 0
		sleep 0.3
	done
	fail "server $n shows member $id as '$got', expected '$want' within ${4:-$PV_GROUP_WAIT}s"
}

# wait_group_up N...: until every listed server sees every listed server
# as self or up (heartbeats flowing both ways).
wait_group_up()
{
	local n m
	for n in "$@"; do
		for m in "$@"; do
			if [ "$n" = "$m" ]; then
				assert_eq "$(member_state "$n" "$m")" self "server $n's own state"
			else
				wait_member_state "$n" "$m" up
			fi
		done
	done
	log "group up as seen by servers $*"
}

# group_of_three: peerd 1, 2 and 3 (3 with --weight 2, plus any extra args
# in PV_GROUP_ARGS for all three), server 1 inits the group, 2 joins through
# 1 and 3 through 2; waits until all three see each other up.
group_of_three()
{
	local n w
	for n in 1 2 3; do
		w=()
		[ "$n" = 3 ] && w=(--weight 2)
		# shellcheck disable=SC2086
		start_peerd "$n" "${w[@]}" ${PV_GROUP_ARGS:-}
	done
	for n in 1 2 3; do wait_peerd "$n"; done
	ctl 1 group init >/dev/null
	ctl 2 group join "$(addr_of 1)" >/dev/null
	ctl 3 group join "$(addr_of 2)" >/dev/null
	wait_group_up 1 2 3
}

# catalog_view N: the parts of server N's 'group show --json' and 'volume
# list --json' that only a catalog change may alter (group id, catalog
# version, members' id/address/weight, volumes' name/id/size/page size/
# servers), as one canonical JSON line. Live numbers (state, pages, bytes,
# free, clients) are left out.
catalog_view()
{
	local g v
	g=$(ctl "$1" group show --json) || fail "server $1: group show --json failed"
	v=$(ctl "$1" volume list --json) || fail "server $1: volume list --json failed"
	python3 - "$g" "$v" <<'EOF'
import json, sys
g = json.loads(sys.argv[1]); v = json.loads(sys.argv[2])
out = {
    "group_id": g.get("group_id"),
    "catalog_version": g.get("catalog_version"),
    "members": sorted((m["id"], m["address"], m["weight"]) for m in g["members"]),
    "volumes": sorted((x["name"], x["id"], x["size"], x["page_size"], sorted(x["servers"]))
                      for x in v["volumes"]),
}
print(json.dumps(out, sort_keys=True))
EOF
}

# status_field N FIELD: one field of server N's 'status --json'.
status_field()
{
	ctl "$1" status --json | json "d['$2']"
}

# wait_status N FIELD VALUE [SECONDS]: until server N's status FIELD is
# VALUE; fails otherwise.
wait_status()
{
	local n=$1 deadline=$((SECONDS + ${4:-15})) got
	while :; do
		got=$(status_field "$n" "$2" 2>/dev/null || echo "?")
		[ "$got" = "$3" ] && return 0
		((SECONDS < deadline)) || fail "server $n: status $2 is $got after ${4:-15}s, expected $3"
		sleep 0.3
	done
}

# wait_links_up N COUNT [SECONDS]: until server N has COUNT outgoing peer
# links up (linkset.c).
wait_links_up()
{
	wait_status "$1" peer_links_up "$2" "${3:-15}"
}

# routing_json N VOL FILE: server N's routing of VOL as JSON into FILE.
routing_json()
{
	ctl "$1" volume show "$2" --routing --json >"$3" ||
		fail "server $1: volume show $2 --routing --json failed"
}

# pages_by_owner FILE: "owner count" lines from a routing JSON.
pages_by_owner()
{
	python3 - "$1" <<'EOF'
import json, sys, collections
d = json.load(open(sys.argv[1]))
c = collections.Counter()
for r in d["routing"]:
    c[r["owner"]] += r["last_page"] - r["first_page"] + 1
for o in sorted(c):
    print(o, c[o])
EOF
}

# run_fio WHAT JOBFILE [FIO ARGS...]: runs fio (150 s at most) with a JSON
# report in $T/fio-WHAT.json; fails unless it ends without error.
run_fio()
{
	local what=$1 job=$2 json=$T/fio-$1.json
	shift 2
	log "fio $what"
	timeout 150 fio --output-format=json --output="$json" "$@" "$job" ||
		{ cat "$json" >&2; fail "fio $what exited non-zero"; }
	check_fio "$json" "$what"
}

# check_fio JSON WHAT: every job of a fio JSON report ended without error,
# and every job that verifies read something back.
check_fio()
{
	python3 - "$1" "$2" <<'EOF' || fail "$2: fio reported errors (see the report above)"
import json, sys
d = json.load(open(sys.argv[1]))
bad = False
for j in d["jobs"]:
    print("%s: %s error=%d read=%d KiB write=%d KiB" % (
        sys.argv[2], j["jobname"], j["error"], j["read"]["io_kbytes"], j["write"]["io_kbytes"]),
        file=sys.stderr)
    if j["error"] != 0 or j["read"]["io_kbytes"] == 0:
        bad = True
sys.exit(1 if bad else 0)
EOF
}

# pv_send_peer_msg ENDPOINT OP SERVER_ID [TIMEOUT_MS]: sends a peer message
# of opcode OP (64 HEARTBEAT, 68 CAT_FETCH, ... see include/wire.h) claiming
# to come from SERVER_ID over a DEALER socket and prints the reply as
# "STATUS_NUMBER MESSAGE" (10 is REFUSED), or "NO_REPLY". pvraw has no case
# for peer messages, so this drives libzmq through python3's ctypes and
# encodes the protobuf header by hand (proto/peervol.proto, pv.Header:
# version=1, op=2, req_id=3, server_id=14; reply: status=9, message=13). The
# body is a pv.Heartbeat with server_id=SERVER_ID, catalog_version=1.
pv_send_peer_msg()
{
	python3 - "$1" "$2" "$3" "${4:-5000}" <<'EOF'
import ctypes, ctypes.util, sys

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)

def field(num, v):
    return varint(num << 3) + varint(v)

def parse(buf):
    i, out = 0, {}
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out[num] = v
    return out

def read_varint(buf, i):
    v = s = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7f) << s
        s += 7
        if not b & 0x80:
            return v, i

endpoint, op, sid, tmo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
name = ctypes.util.find_library("zmq") or "libzmq.so.5"
z = ctypes.CDLL(name)
z.zmq_ctx_new.restype = ctypes.c_void_p
z.zmq_socket.restype = ctypes.c_void_p
z.zmq_socket.argtypes = [ctypes.c_void_p, ctypes.c_int]
z.zmq_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
z.zmq_setsockopt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
z.zmq_send.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
z.zmq_recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
z.zmq_getsockopt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_size_t)]
z.zmq_close.argtypes = [ctypes.c_void_p]
z.zmq_ctx_term.argtypes = [ctypes.c_void_p]
ZMQ_DEALER, ZMQ_SNDMORE, ZMQ_RCVTIMEO, ZMQ_LINGER, ZMQ_RCVMORE = 5, 2, 27, 17, 13
ctx = z.zmq_ctx_new()
s = z.zmq_socket(ctx, ZMQ_DEALER)
for opt, val in ((ZMQ_RCVTIMEO, tmo), (ZMQ_LINGER, 0)):
    v = ctypes.c_int(val)
    z.zmq_setsockopt(s, opt, ctypes.byref(v), ctypes.sizeof(v))
if z.zmq_connect(s, endpoint.encode()) != 0:
    print("pv_send_peer_msg: cannot connect to", endpoint, file=sys.stderr)
    sys.exit(1)
hdr = field(1, 1 << 16) + field(2, op) + field(3, 4242) + field(14, sid)
body = field(1, sid) + field(2, 1)
hb, bb = ctypes.create_string_buffer(hdr, len(hdr)), ctypes.create_string_buffer(body, len(body))
if z.zmq_send(s, hb, len(hdr), ZMQ_SNDMORE) < 0 or z.zmq_send(s, bb, len(body), 0) < 0:
    print("pv_send_peer_msg: send failed", file=sys.stderr)
    sys.exit(1)
buf = ctypes.create_string_buffer(8192)
n = z.zmq_recv(s, buf, 8192, 0)
if n < 0:
    print("NO_REPLY")
else:
    h = parse(buf.raw[:min(n, 8192)])
    st = h.get(9, 0)
    if st >= 1 << 63:
        st -= 1 << 64
    print(st, h.get(13, b"").decode(errors="replace"))
    more, ml = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
    z.zmq_getsockopt(s, ZMQ_RCVMORE, ctypes.byref(more), ctypes.byref(ml))
    while more.value:
        z.zmq_recv(s, buf, 8192, 0)
        z.zmq_getsockopt(s, ZMQ_RCVMORE, ctypes.byref(more), ctypes.byref(ml))
z.zmq_close(s)
z.zmq_ctx_term(ctx)
EOF
}

# fio_job FILE DEV SEED: the [global] part of a fio job file on DEV: direct
# IO, libaio, every write read back and verified at the end (crc32c,
# fatal). The caller appends the job sections.
fio_job()
{
	cat >"$1" <<FIO
[global]
filename=$2
direct=1
ioengine=libaio
verify=crc32c
verify_fatal=1
verify_dump=0
do_verify=1
randrepeat=1
randseed=$3
FIO
}

# write_crash_load FILE DEV SEED: a fio job file for the crash tests: rate-
# limited random 4 KiB writes over the first 128 MiB and sequential 1 MiB
# writes over the next 120 MiB of DEV, at once, so the write phase lasts
# ~15 s; each job verifies what it wrote at the end (crc32c, fatal).
write_crash_load()
{
	fio_job "$1" "$2" "$3"
	cat >>"$1" <<FIO

[rand]
rw=randwrite
bs=4k
iodepth=16
offset=0
size=128M
io_size=40M
rate=4m

[seq]
rw=write
bs=1M
iodepth=4
offset=128M
size=120M
rate=8m
FIO
}

# catalog_state N: "VERSION HASH" of server N's committed catalog (group
# show --json); empty if N does not answer.
catalog_state()
{
	ctl "$1" group show --json 2>/dev/null |
		json "'%s %s' % (d['catalog_version'], d.get('catalog_hash') or '-')" 2>/dev/null || true
}

# wait_catalogs_agree SECONDS N...: until every listed server holds the same
# catalog (version and hash, and the same catalog_view); fails otherwise.
wait_catalogs_agree()
{
	local deadline=$((SECONDS + $1)) n first states
	shift
	while :; do
		states="" first=""
		for n in "$@"; do
			states+="$n: $(catalog_state "$n"); "
		done
		if python3 - "$states" <<'PY'; then
import sys
s = [x.split(":", 1)[1].split() for x in sys.argv[1].rstrip("; ").split("; ")]
sys.exit(0 if all(len(x) == 2 for x in s) and len({tuple(x) for x in s}) == 1 else 1)
PY
			first=$(catalog_view "$1")
			for n in "${@:2}"; do
				[ "$(catalog_view "$n")" = "$first" ] || first=""
			done
			[ -n "$first" ] && { log "catalogs agree: $states"; return 0; }
		fi
		((SECONDS < deadline)) || fail "catalogs do not agree: $states"
		sleep 0.5
	done
}

# proc_state PID: the state letter of a process (T: stopped), or empty.
proc_state()
{
	awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null || true
}
