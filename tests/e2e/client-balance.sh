#!/usr/bin/env bash
# client-balance: client connection balancing (peerd/connbal.c). A group of
# three equal servers (balance.interval 1 s), one volume over all of them.
# Two fused mounts forced onto server 1 (fused --server) sit idle there:
# nothing moves. Then each runs fio with verify (random 4 KiB and 128 KiB
# reads and writes, through shared memory and mapped reads: every server is
# on this host) on a region of its own: server 1 carries all the client
# traffic, and the group moves one client, once, logged with its reason in
# server 1's log and in 'balance status' of every server; the moved fused
# drains what was in flight and goes on. Both fio runs verify clean, and
# 'peerctl load --clients' shows the two clients on different servers.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio
need_bin "$PEERD" "$PEERCTL" "$FUSED"

RUNTIME=${PV_CLIENT_BALANCE_RUNTIME:-15}

group_weighted 1 1 1
ctl 1 volume create vol 96M >/dev/null
assert_eq "$(ctl 2 volume show vol --json | json "sorted(d['holders'])")" "[1, 2, 3]" "holders of vol"
ctl 2 set balance.interval 1s >/dev/null

# clients_on N: "CLIENT:SERVER[,SERVER...]" for each client that uses a
# server now (pings it), as server N's load view shows them, sorted.
clients_on()
{
	ctl "$1" load --json | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
on = {}
for c in d["clients"]:
    if c.get("connected"):
        on.setdefault(c["client"], set()).add(str(c["server"]))
print(" ".join(sorted("%s:%s" % (k, ",".join(sorted(v))) for k, v in on.items())))'
}

# two_clients_using N S1 S2: whether server N shows two clients, one using
# server S1 only and the other S2 only; prints what it shows otherwise.
two_clients_using()
{
	local got
	got=$(clients_on "$1")
	"$PYTHON" - "$got" "$2" "$3" <<'EOF' || { echo "$got"; return 1; }
import sys
got = sys.argv[1].split()
servers = sorted(x.split(":")[1] for x in got)
sys.exit(0 if servers == sorted(sys.argv[2:]) else 1)
EOF
}

for m in a b; do
	mount_fused "$T/m$m" "$(addr_of 1)" -- --server "$(addr_of 1)"
	wait_path_exists "$T/m$m/vol" || fail "$T/m$m/vol did not appear"
done
dev_a=$(loop_attach "$T/ma/vol")
dev_b=$(loop_attach "$T/mb/vol")
wait_for 15 "both clients on server 1" two_clients_using 3 1 1 >/dev/null
log "both mounts use server 1: $(clients_on 2)"

# idle: several intervals, nothing moves
sleep 3
grep -q 'rebalance: client' "$T"/peerd*.log && fail "a client of an idle group was moved"
assert_eq "$(clients_on 1 | tr ' ' '\n' | cut -d: -f2 | sort -u | tr '\n' ' ')" "1 " "servers used while idle"
log "idle: no client moved"

# job DEV SEED BASE_MiB FILE: random 4 KiB and 128 KiB reads and writes
# over 16 MiB each from BASE, verified as they go and at the end
job()
{
	fio_job "$4" "$1" "$2"
	cat >>"$4" <<EOF
rw=randrw
time_based=1
runtime=$RUNTIME
verify_backlog=256

[small]
bs=4k
iodepth=8
offset=$3M
size=16M

[large]
bs=128k
iodepth=4
offset=$(($3 + 16))M
size=16M
EOF
}
job "$dev_a" 11 0 "$T/a.fio"
job "$dev_b" 22 32 "$T/b.fio"
timeout 170 fio --output-format=json --output="$T/fio-a.json" "$T/a.fio" >"$T/fio-a.out" 2>&1 &
fio_a=$!
PV_PIDS+=("$fio_a")
timeout 170 fio --output-format=json --output="$T/fio-b.json" "$T/b.fio" >"$T/fio-b.out" 2>&1 &
fio_b=$!
PV_PIDS+=("$fio_b")
t0=$SECONDS
log "fio on both mounts (pids $fio_a $fio_b, ${RUNTIME}s)"

line=$(wait_log 1 0 'rebalance: client [0-9a-f]{16} \(host [^)]*\) 1->[23]: ' $((RUNTIME - 2)))
log "moved after $((SECONDS - t0))s: $line"
[[ "$line" =~ server\ 1\ carries\ [0-9]+%\ of\ client\ traffic,\ fair\ share\ 33%,\ the\ client\ [0-9]+% ]] ||
	fail "the move's line does not give its reason: $line"
moved=$(sed -E 's/.*rebalance: client ([0-9a-f]{16}) .*/\1/' <<<"$line")
to=$(sed -E 's/.* 1->([23]): .*/\1/' <<<"$line")
grep -l "asks this client to use server $(addr_of "$to")" "$T"/fused-m*.log >/dev/null ||
	fail "no fused logged the move to server $to"
wait_for 10 "the moved client on server $to" two_clients_using 2 1 "$to" >/dev/null
ctl 3 balance status --json | json "d['recent']" | grep -q "rebalance: client $moved" ||
	fail "balance status on server 3 does not show server 1's client move"
ctl 2 balance status >&2

for f in a b; do
	pid_var=fio_$f
	wait "${!pid_var}" && rc=0 || rc=$?
	[ "$rc" = 0 ] || { cat "$T/fio-$f.out" "$T/fio-$f.json" >&2; fail "fio on mount $f exited $rc"; }
done
check_fio "$T/fio-a.json" mount-a "$T/fio-b.json" mount-b
log "both fio runs verify clean"

# where they are now, as any server shows it; one move, never back
for n in 1 2 3; do
	wait_for 10 "server $n: the clients on 1 and $to" two_clients_using "$n" 1 "$to" >/dev/null
done
ctl 3 load --clients >&2
ctl 3 load --clients | grep -qE "^$moved +[^ ]+ +$to +vol " ||
	fail "load --clients does not show client $moved on server $to"
moves=$(grep -ho 'rebalance: client [0-9a-f]*' "$T"/peerd*.log | wc -l)
assert_eq "$moves" 1 "client moves"
ctl 1 load --pages vol | head -5 >&2
ctl 1 load --pages vol | grep -qE "[0-9a-f]{8} \(" || fail "load --pages names no client of a hot page"

loop_detach "$dev_a"
loop_detach "$dev_b"
umount_fused "$T/ma"
umount_fused "$T/mb"
log "one client moved off the overloaded server, fio verify clean on both"
