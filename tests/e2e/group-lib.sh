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
	local n=$1 id=$2 want=$3 deadline=$((SECONDS + ${4:-$PV_GROUP_WAIT})) got="" PV_CTL_POLL=1
	while ((SECONDS < deadline)); do
		got=$(member_state "$n" "$id")
		[ "$got" = "$want" ] && return 0
		sleep 0.3
	done
	fail "server $n shows member $id as '$got', expected '$want' within ${4:-$PV_GROUP_WAIT}s"
}

# wait_group_up N...: until every listed server sees every listed server
# as self or up (heartbeats flowing both ways); a server that answers but
# does not show itself as self fails at once. One 'group show' per server
# and one python per look (python's start is most of a look's cost).
wait_group_up()
{
	local deadline=$((SECONDS + PV_GROUP_WAIT)) n views bad PV_CTL_POLL=1
	while :; do
		views=()
		for n in "$@"; do
			views+=("$n" "$(ctl "$n" group show --json 2>/dev/null || true)")
		done
		bad=$("$PYTHON" -c '
import json, sys
a = sys.argv[1:]
ids = [int(x) for x in a[0::2]]
for n, text in zip(ids, a[1::2]):
    try:
        st = {m["id"]: m["state"] for m in json.loads(text)["members"]}
    except (ValueError, KeyError, TypeError):
        print("peer: server %d does not answer group show" % n)
        continue
    for m in ids:
        got, want = st.get(m, ""), "self" if m == n else "up"
        if got != want:
            print("%s: server %d shows member %d as %r, expected %r" % (
                "self" if m == n else "peer", n, m, got, want))
' "${views[@]}")
		[ -z "$bad" ] && break
		if grep -q '^self: ' <<<"$bad"; then
			fail "$(grep -m1 '^self: ' <<<"$bad" | cut -d' ' -f2-) (its own state)"
		fi
		((SECONDS < deadline)) || fail "$(head -n 1 <<<"$bad" | cut -d' ' -f2-) within ${PV_GROUP_WAIT}s"
		sleep 0.3
	done
	log "group up as seen by servers $*"
}

# group_weighted W1 W2 ...: peerd 1, 2, ... (server i with weight Wi, plus
# any extra args in PV_GROUP_ARGS for all), server 1 inits the group, each
# next one joins through the one before; waits until all see each other up.
group_weighted()
{
	local n=0 w ids=()
	for w in "$@"; do
		n=$((n + 1))
		ids+=("$n")
		# shellcheck disable=SC2086
		if [ "$w" = 1 ]; then
			start_peerd "$n" ${PV_GROUP_ARGS:-}
		else
			start_peerd "$n" --weight "$w" ${PV_GROUP_ARGS:-}
		fi
	done
	for n in "${ids[@]}"; do wait_peerd "$n"; done
	ctl 1 group init >/dev/null
	for n in "${ids[@]:1}"; do
		ctl "$n" group join "$(addr_of $((n - 1)))" >/dev/null
	done
	wait_group_up "${ids[@]}"
}

# group_of_three: peerd 1, 2 and 3 (3 with --weight 2), as group_weighted.
group_of_three()
{
	group_weighted 1 1 2
}

# catalog_view N: the parts of server N's 'group show --json' and 'volume
# list --json' that only a catalog change may alter (group id, catalog
# version, members' id/address/weight, volumes' name/id/size/page size/
# servers), as one canonical JSON line. Live numbers (state, pages, bytes,
# free, clients) are left out.
catalog_view()
{
	catalog_views "$1" | cut -d' ' -f2-
}

# catalog_views N...: "N VIEW" per listed server, VIEW as catalog_view's;
# one python for all.
catalog_views()
{
	local n g v args=()
	for n in "$@"; do
		g=$(ctl "$n" group show --json) || fail "server $n: group show --json failed"
		v=$(ctl "$n" volume list --json) || fail "server $n: volume list --json failed"
		args+=("$n" "$g" "$v")
	done
	"$PYTHON" - "${args[@]}" <<'EOF'
import json, sys
a = sys.argv[1:]
for n, g, v in zip(a[0::3], a[1::3], a[2::3]):
    g = json.loads(g); v = json.loads(v)
    out = {
        "group_id": g.get("group_id"),
        "catalog_version": g.get("catalog_version"),
        "members": sorted((m["id"], m["address"], m["weight"]) for m in g["members"]),
        "volumes": sorted((x["name"], x["id"], x["size"], x["page_size"], sorted(x["servers"]))
                          for x in v["volumes"]),
    }
    print(n, json.dumps(out, sort_keys=True))
EOF
}

# same_catalog N...: every listed server holds the first one's catalog
# (catalog_view).
same_catalog()
{
	local first=$1 views v n view
	views=$(catalog_views "$@")
	v=$(head -n 1 <<<"$views" | cut -d' ' -f2-)
	while read -r n view; do
		[ -n "$n" ] || continue # one server: nothing to compare
		assert_eq "$view" "$v" "server $n's catalog vs server $first's"
	done <<<"$(tail -n +2 <<<"$views")"
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
	local n=$1 deadline=$((SECONDS + ${4:-15})) got PV_CTL_POLL=1
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

# check_fio JSON WHAT [JSON WHAT ...]: every job of each fio JSON report
# ended without error, and every job that verifies read something back.
check_fio()
{
	python3 - "$@" <<'EOF' || fail "$2: fio reported errors (see the report above)"
import json, sys
bad = False
args = sys.argv[1:]
for path, what in zip(args[0::2], args[1::2]):
    d = json.load(open(path))
    for j in d["jobs"]:
        print("%s: %s error=%d read=%d KiB write=%d KiB" % (
            what, j["jobname"], j["error"], j["read"]["io_kbytes"], j["write"]["io_kbytes"]),
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
	catalog_states "$1" | cut -s -d' ' -f2-
}

# catalog_states N...: "N: VERSION HASH" per listed server as catalog_state
# says it, "N:" alone for one that does not answer; one python for all.
catalog_states()
{
	local n args=()
	for n in "$@"; do
		args+=("$n" "$(ctl "$n" group show --json 2>/dev/null || true)")
	done
	"$PYTHON" -c '
import json, sys
a = sys.argv[1:]
for n, text in zip(a[0::2], a[1::2]):
    try:
        d = json.loads(text)
        print("%s: %s %s" % (n, d["catalog_version"], d.get("catalog_hash") or "-"))
    except (ValueError, KeyError, TypeError):
        print("%s:" % n)' "${args[@]}"
}

# wait_catalogs_agree SECONDS N...: until every listed server holds the same
# catalog (version and hash, and the same catalog_view); fails otherwise.
wait_catalogs_agree()
{
	local deadline=$((SECONDS + $1)) states views PV_CTL_POLL=1
	shift
	while :; do
		states=$(catalog_states "$@")
		if ! grep -qx '[0-9]*:' <<<"$states" && [ "$(cut -d' ' -f2- <<<"$states" | sort -u | wc -l)" = 1 ] &&
			views=$(catalog_views "$@" 2>/dev/null) &&
			[ "$(cut -d' ' -f2- <<<"$views" | sort -u | wc -l)" = 1 ]; then
			log "catalogs agree: $(paste -s -d';' <<<"$states" | sed 's/;/; /g')"
			return 0
		fi
		((SECONDS < deadline)) || fail "catalogs do not agree: $(paste -s -d';' <<<"$states" | sed 's/;/; /g')"
		sleep 0.5
	done
}

# proc_state PID: the state letter of a process (T: stopped), or empty.
proc_state()
{
	awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null || true
}

# ---------------------------------------------------------------- page migration
# Helpers of the migrate-*.sh tests (issue 13): pages moving between
# servers while clients read and write them.

# How long (seconds) a move of one small page may take at the default
# throttle, on a loaded 2-core machine.
PV_MOVE_WAIT=${PV_MOVE_WAIT:-60}

# wait_for SECONDS WHAT CMD [ARGS...]: runs CMD every 0.2 s until it
# succeeds, and prints what that run printed; after SECONDS s fails with
# "WHAT after SECONDS s: what the last run printed".
wait_for()
{
	local secs=$1 what=$2 deadline=$((SECONDS + $1)) out PV_CTL_POLL=1
	shift 2
	while :; do
		if out=$("$@" 2>&1); then
			[ -z "$out" ] || printf '%s\n' "$out"
			return 0
		fi
		((SECONDS < deadline)) || fail "$what after ${secs}s${out:+: $out}"
		sleep 0.2
	done
}

# ctl_within SECONDS N ARGS...: peerctl ARGS on server N, stopped after
# SECONDS s (exit 124): the commands that wait for moves (page move,
# server evacuate, volume set-servers) wait until the moves are done,
# whatever --timeout says.
ctl_within()
{
	local secs=$1 n=$2
	shift 2
	timeout "$secs" "$PEERCTL" -s "$(sock_of "$n")" "$@"
}

# page_field N VOL PAGE EXPR: EXPR over server N's 'page show VOL PAGE
# --json' (as d); empty if it fails.
page_field()
{
	ctl "$1" page show "$2" "$3" --json 2>/dev/null | json "$4" 2>/dev/null || true
}

# page_owned N VOL PAGE OWNER: whether server N shows PAGE of VOL owned by
# OWNER and not moving (else prints what it shows).
page_owned()
{
	local got
	got=$(page_field "$1" "$2" "$3" "'owner %s, %s' % (d['owner'], 'moving' if d.get('moving') else 'not moving')")
	[ "$got" = "owner $4, not moving" ] || { echo "${got:-page show failed}"; return 1; }
}

# wait_page_owner N VOL PAGE OWNER [SECONDS]: until page_owned.
wait_page_owner()
{
	wait_for "${5:-$PV_MOVE_WAIT}" "server $1: page $3 of $2 is not owned by $4 (and still)" \
		page_owned "$1" "$2" "$3" "$4"
}

# migration_of N VOL PAGE: the move of PAGE of VOL in server N's
# 'migrations --json' as one JSON line, or nothing.
migration_of()
{
	ctl "$1" migrations --json 2>/dev/null | json "next((json.dumps(m, sort_keys=True) for m in d['migrations'] if m['volume'] == '$2' and m['page'] == $3), '')" 2>/dev/null || true
}

# migration_at N VOL PAGE MIN: prints the piece in transit of the move of
# PAGE that server N lists if it is >= MIN; else what it lists, and fails.
migration_at()
{
	local m piece
	m=$(migration_of "$1" "$2" "$3")
	[ -n "$m" ] || { echo "not listed"; return 1; }
	piece=$(json "d['piece']" <<<"$m")
	((piece >= $4)) || { echo "$m"; return 1; }
	echo "$piece"
}

# wait_migration_piece N VOL PAGE MIN [SECONDS]: until server N lists the
# move of PAGE of VOL with the piece in transit >= MIN; prints that piece.
wait_migration_piece()
{
	wait_for "${5:-$PV_MOVE_WAIT}" "server $1: the move of page $3 of $2 is not at piece $4" \
		migration_at "$1" "$2" "$3" "$4"
}

# no_migrations N...: whether no listed server lists a move in progress
# (else prints the moves listed).
no_migrations()
{
	local n left=""
	for n in "$@"; do
		left+=$(ctl "$n" migrations --json 2>/dev/null |
			json "' '.join('%s:%s' % (m['volume'], m['page']) for m in d['migrations'])" 2>/dev/null ||
			echo " server-$n-unanswered")
	done
	[ -z "${left// /}" ] || { echo "$left"; return 1; }
}

# wait_no_migrations SECONDS N...: until no_migrations.
wait_no_migrations()
{
	wait_for "$1" "moves still in progress" no_migrations "${@:2}"
}

# routing_view N VOL: server N's routing of VOL (every run: first page,
# last page, owner, epoch) as one canonical JSON line.
routing_view()
{
	routing_views "$2" "$1" | cut -d' ' -f2-
}

# routing_views VOL N...: "N VIEW" per listed server, VIEW as routing_view's,
# or "N (no answer)" for one that did not answer (and then the status is
# 1); one python for all.
routing_views()
{
	local vol=$1 n args=()
	for n in "${@:2}"; do
		args+=("$n" "$(ctl "$n" volume show "$vol" --routing=full --json 2>/dev/null || true)")
	done
	"$PYTHON" -c '
import json, sys
a, ok = sys.argv[1:], True
for n, text in zip(a[0::2], a[1::2]):
    try:
        d = json.loads(text)
        v = json.dumps([[r["first_page"], r["last_page"], r["owner"], r["epoch"]] for r in d["routing"]])
    except (ValueError, KeyError, TypeError):
        v, ok = "(no answer)", False
    print(n, v)
sys.exit(0 if ok else 1)' "${args[@]}"
}

# owners_of N VOL: the owner of every page of VOL as server N sees it, one
# line, space separated, page 0 first.
owners_of()
{
	ctl "$1" volume show "$2" --routing=full --json |
		json "' '.join(str(r['owner']) for r in d['routing'] for _ in range(r['first_page'], r['last_page'] + 1))"
}

# same_routing VOL N...: whether every listed server holds the same
# routing of VOL (else prints the views).
same_routing()
{
	local vol=$1 n v first="" views="" same=1 all
	all=$(routing_views "$vol" "${@:2}") || same=0
	while read -r n v; do
		views+=$'\n'"server $n: $v"
		[ -z "$first" ] && first=$v
		[ "$v" = "$first" ] || same=0
	done <<<"$all"
	[ "$same" = 1 ] || { echo "$views"; return 1; }
}

# wait_routing_agree SECONDS VOL N...: until same_routing.
wait_routing_agree()
{
	wait_for "$1" "the routing of $2 differs" same_routing "${@:2}"
}

# vol_file N VOL: server N's data file of VOL.
vol_file() { echo "$(data_of "$1")/volumes/$2.vol"; }

# stray_pages N VOL PAGE_SIZE OWNERS...: the pages of VOL that server N does
# not own (OWNERS: the owner of each page, page 0 first) but whose range in
# its data file still holds data (SEEK_DATA), space separated; nothing if
# none. A missing data file holds nothing.
stray_pages()
{
	"$PYTHON" - "$(vol_file "$1" "$2")" "$1" "$3" "${@:4}" <<'EOF'
import os, sys
path, me, ps, owners = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
try:
    fd = os.open(path, os.O_RDONLY)
except FileNotFoundError:
    sys.exit(0)
size = os.fstat(fd).st_size
out = []
for page, owner in enumerate(owners):
    start = page * ps
    if int(owner) == me or start >= size:
        continue
    try:
        at = os.lseek(fd, start, os.SEEK_DATA)
    except OSError:  # ENXIO: no data from here to the end
        break
    if at < start + ps:
        out.append(str(page))
print(" ".join(out))
EOF
}

# no_stray VOL N...: whether no listed server holds data of a page of VOL
# it does not own (the owners as server $2 sees them); else says which.
no_stray()
{
	local vol=$1 ps owners n s stray=""
	ps=$(ctl "$2" volume show "$vol" --json | json "d['page_size']")
	# shellcheck disable=SC2207
	owners=($(owners_of "$2" "$vol"))
	for n in "${@:2}"; do
		s=$(stray_pages "$n" "$vol" "$ps" "${owners[@]}")
		[ -z "$s" ] || stray+="server $n holds data of pages it does not own: $s; "
	done
	[ -z "$stray" ] || { echo "$stray"; return 1; }
}

# wait_no_stray SECONDS VOL N...: until no_stray (a source punches a page
# out of its data file a few seconds after the switch).
wait_no_stray()
{
	wait_for "$1" "$2" no_stray "${@:2}"
}

# file_has_data FILE: whether FILE exists and holds any allocated data
# (SEEK_DATA from 0 finds some).
file_has_data()
{
	"$PYTHON" - "$1" <<'EOF'
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except FileNotFoundError:
    sys.exit(1)
try:
    os.lseek(fd, 0, os.SEEK_DATA)
except OSError:
    sys.exit(1)
sys.exit(0)
EOF
}

# holds_no_data FILE: the opposite of file_has_data.
holds_no_data() { ! file_has_data "$1"; }

# apportion NPAGES W1 W2 ...: the share of each server (pagemath.h's
# pv_apportion: largest remainder, ties to the earlier), space separated.
apportion()
{
	"$PYTHON" - "$@" <<'EOF'
import sys
n, w = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
t = sum(w)
out = [n * x // t if t else 0 for x in w]
rem = sorted((-(n * x % t), i) for i, x in enumerate(w) if x) if t else []
for _, i in rem[:n - sum(out)]:
    out[i] += 1
print(" ".join(map(str, out)))
EOF
}

# log_mark N: where server N's log ends now (lines), for wait_log.
log_mark() { grep -c '' "$T/peerd$1.log" 2>/dev/null || echo 0; }

# log_line N MARK REGEX: the first line of server N's log after line MARK
# matching REGEX (extended); fails if there is none.
log_line()
{
	tail -n +"$(($2 + 1))" "$T/peerd$1.log" | grep -E -m1 -- "$3"
}

# wait_log N MARK REGEX [SECONDS]: until log_line finds one; prints it.
wait_log()
{
	wait_for "${4:-$PV_MOVE_WAIT}" "server $1 logged no line matching /$3/" log_line "$1" "$2" "$3"
}

# fio_loop_start WRITER DEV SEED: runs fio on DEV again and again in the
# background until fio_loop_stop, each round with the job file that
# "WRITER FILE DEV SEED+ROUND" writes ($T/loop-ROUND.fio; report
# $T/loop-ROUND.json, exit status $T/loop-ROUND.rc). Sets FIO_LOOP_PID.
fio_loop_start()
{
	local writer=$1 dev=$2 seed=$3
	rm -f "$T/fio-loop.stop"
	(
		trap - ERR
		set +e
		round=0
		trap 'kill "$fpid" 2>/dev/null; exit 143' TERM
		while [ ! -e "$T/fio-loop.stop" ]; do
			round=$((round + 1))
			"$writer" "$T/loop-$round.fio" "$dev" $((seed + round))
			fio --output-format=json --output="$T/loop-$round.json" "$T/loop-$round.fio" \
				>"$T/loop-$round.out" 2>&1 &
			fpid=$!
			pv_record pids "$fpid"
			wait "$fpid"
			echo $? >"$T/loop-$round.rc"
		done
	) &
	FIO_LOOP_PID=$!
	PV_PIDS+=("$FIO_LOOP_PID")
	log "fio loop started on $dev (pid $FIO_LOOP_PID)"
}

# fio_loop_stop: lets the round in progress end, then checks every round:
# exit 0, no error, data read back (check_fio). Sets FIO_ROUNDS to the
# number of rounds (the last one's files are $T/loop-$FIO_ROUNDS.*). Not
# in $(...): the loop is a child of the test's shell.
fio_loop_stop()
{
	local r rc reports=()
	touch "$T/fio-loop.stop"
	wait "$FIO_LOOP_PID" && rc=0 || rc=$?
	[ "$rc" = 0 ] || fail "the fio loop exited $rc"
	FIO_ROUNDS=0
	for r in "$T"/loop-*.rc; do
		[ -e "$r" ] || continue
		FIO_ROUNDS=$((FIO_ROUNDS + 1))
		r=${r%.rc}
		[ "$(cat "$r.rc")" = 0 ] ||
			{ cat "$r.out" "$r.json" >&2; fail "fio round ${r##*-} exited $(cat "$r.rc")"; }
		reports+=("$r.json" "fio round ${r##*-}")
	done
	((FIO_ROUNDS > 0)) || fail "the fio loop ran no round"
	check_fio "${reports[@]}"
	log "fio loop: $FIO_ROUNDS rounds, zero errors"
}

# rand_write_load FILE DEV SEED SIZE IO_SIZE RATE [OPTION...]: a fio job
# file of random 4 KiB writes (iodepth 16) over the first SIZE of DEV,
# IO_SIZE in all at RATE (bytes/s, fio units), each verified at the end
# (crc32c, fatal), with any further job options ("verify_backlog=64"). Its
# verify-only pass (fio --verify_only FILE) repeats the same offsets.
rand_write_load()
{
	fio_job "$1" "$2" "$3"
	printf '\n[writes]\nrw=randwrite\nbs=4k\niodepth=16\nsize=%s\nio_size=%s\nrate=%s\n' \
		"$4" "$5" "$6" >>"$1"
	[ $# -le 6 ] || printf '%s\n' "${@:7}" >>"$1"
}

# fio_bg NAME FILE: runs fio FILE in the background (report $T/fio-NAME.json);
# sets FIO_PID. fio_done NAME: waits for it and checks the report.
fio_bg()
{
	timeout 170 fio --output-format=json --output="$T/fio-$1.json" "$2" >"$T/fio-$1.out" 2>&1 &
	FIO_PID=$!
	PV_PIDS+=("$FIO_PID")
	log "fio $1 started (pid $FIO_PID)"
}

fio_done()
{
	local rc
	wait "$FIO_PID" && rc=0 || rc=$?
	[ "$rc" = 0 ] || { cat "$T/fio-$1.out" "$T/fio-$1.json" >&2; fail "fio $1 exited $rc"; }
	check_fio "$T/fio-$1.json" "$1"
}

# fio_verify_only NAME FILE: the verify-only pass of job file FILE (what its
# writes left must read back), report $T/fio-NAME.json.
fio_verify_only()
{
	timeout 120 fio --output-format=json --output="$T/fio-$1.json" --verify_only "$2" ||
		{ cat "$T/fio-$1.json" >&2; fail "verify-only pass $1 exited non-zero"; }
	check_fio "$T/fio-$1.json" "$1"
}

# ---------------------------------------------------------------- load and rebalancing
# Helpers of the load tests (issue 14: group-load-balance, balance-quiet).

# owned_pages N VOL OWNER COUNT: the first COUNT pages of VOL that OWNER
# owns, as server N's routing shows them, space separated.
owned_pages()
{
	routing_json "$1" "$2" "$T/routing-owned.json"
	"$PYTHON" - "$T/routing-owned.json" "$3" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
pages = [p for r in d["routing"] if r["owner"] == int(sys.argv[2])
         for p in range(r["first_page"], r["last_page"] + 1)]
print(" ".join(map(str, pages[:int(sys.argv[3])])))
PY
}

# share_of N ID: server ID's share of the group's load as server N sees it.
share_of()
{
	ctl "$1" load --json | json "[s['share'] for s in d['servers'] if s['id'] == $2][0]"
}

# randrw_job FILE DEV RUNTIME SIZE OFFSET...: a fio job file of random 4 KiB
# reads and writes (iodepth 4, each write verified within 256 and at the
# end: crc32c, fatal) for RUNTIME seconds, one job over [OFFSET, +SIZE)
# of DEV per OFFSET (fio units: 3M).
randrw_job()
{
	local file=$1 dev=$2 runtime=$3 size=$4 off
	shift 4
	cat >"$file" <<FIO
[global]
filename=$dev
direct=1
ioengine=libaio
rw=randrw
bs=4k
iodepth=4
verify=crc32c
verify_fatal=1
verify_dump=0
verify_backlog=256
randrepeat=1
time_based=1
runtime=$runtime
size=$size
FIO
	for off in "$@"; do printf '[at%s]\noffset=%s\n' "$off" "$off" >>"$file"; done
}

# fused_sock_bytes PID: bytes sent (acknowledged) plus received on the TCP
# connections of process PID (to our servers: their ZeroMQ port and their
# link port; the kernel's counters).
fused_sock_bytes()
{
	ss -tinpH state established | "$PYTHON" -c '
import re, sys
mine, total = False, 0
for line in sys.stdin:
    if "users:" in line:
        mine = ("pid=%s," % sys.argv[1]) in line
    elif mine:
        for k in ("bytes_acked", "bytes_received"):
            m = re.search(r"\b%s:(\d+)" % k, line)
            total += int(m.group(1)) if m else 0
print(total)' "$1"
}
