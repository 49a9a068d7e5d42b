#!/usr/bin/env bash
# snapshot-peerctl-args: peerctl's snapshot commands check their arguments
# before anything is sent (a bad volume or snapshot name, mode or timeout:
# exit 1 and one line naming what is wrong; missing or extra arguments, an
# unknown option or sub-command: exit 2), and send peerd the requests
# docs/control-protocol.md lists (cmd and args, seen with -v), whatever
# peerd makes of them: this test needs none of peerd's snapshot side.
. "$(dirname "$0")/common.sh"
need_bin "$PEERD" "$PEERCTL"

run_peerd 1

# ---------------------------------------------------------------- help
out=$("$PEERCTL" --help)
for c in "snapshot create VOLUME NAME" "snapshot list" "snapshot show" "snapshot delete" \
	"snapshot rollback" "snapshot diff" "--with-snapshots"; do
	grep -qF -- "$c" <<<"$out" || fail "peerctl --help does not list '$c'"
done
out=$("$PEERCTL" snapshot --help)
assert_eq "$(grep -c '^  snapshot ' <<<"$out")" 6 "commands in 'peerctl snapshot --help'"
for c in create list show delete rollback diff; do
	"$PEERCTL" snapshot "$c" --help | grep -q "^Usage: peerctl snapshot $c" ||
		fail "peerctl snapshot $c --help has no usage line"
done
"$PEERCTL" snapshot create --help | grep -q -- "--mode MODE" || fail "snapshot create --help lacks --mode"
"$PEERCTL" snapshot diff --help | grep -q -- "--from OLDER" || fail "snapshot diff --help lacks --from"

# ---------------------------------------------------------------- refused before sending
bad()
{
	# bad RC REGEX args...: refused by peerctl itself; -v shows no request
	expect_ctl_error 1 "$@"
	ctl 1 -v "${@:3}" >/dev/null 2>"$T/v.err" || true
	grep -q "request to" "$T/v.err" && fail "peerctl ${*:3}: refused, yet sent $(grep 'request to' "$T/v.err")"
	return 0
}

bad 1 "snapshot name 'a@b': character '@' at position 2 is not allowed" snapshot create v1 a@b
bad 1 "snapshot name '\.x' must not start with '\.' or '-'" snapshot create v1 .x
bad 1 "snapshot name must be 1 to 64 characters" snapshot create v1 "$(printf 's%.0s' {1..65})"
bad 1 "snapshot name must be 1 to 64 characters" snapshot create v1 ''
bad 1 "snapshot name 'caf\\\\u00e9': character U\+00E9 at position 4" snapshot create v1 $'caf\xc3\xa9'
bad 1 "volume name 'a/b': character '/' at position 2" snapshot create a/b s1
bad 1 "volume name 'v@s': character '@' at position 2" snapshot list v@s
bad 1 "volume name 'v@s'" snapshot show v@s s1
bad 1 "snapshot name 'x y'" snapshot delete v1 'x y'
bad 1 "snapshot name 'x/y'" snapshot rollback v1 x/y --force
bad 1 "snapshot name '-x'" snapshot diff v1 s2 --from -x
bad 1 "mode 'fast' is not hold or timestamp" snapshot create v1 s1 --mode fast
bad 1 "timeout '0' is not a duration from 1ms to 10m" snapshot create v1 s1 --timeout 0
bad 1 "timeout '11m' is not a duration" snapshot create v1 s1 --timeout 11m
bad 1 "timeout '7x' is not a duration" snapshot create v1 s1 --timeout 7x
bad 1 "timeout '-1s' is not a duration" snapshot create v1 s1 --timeout=-1s
bad 1 "timeout '1.5s' is not a duration" snapshot create v1 s1 --timeout 1.5s
bad 2 "'snapshot' needs a command" snapshot
bad 2 "unknown command 'snapshot lst'; did you mean 'snapshot list'\?" snapshot lst
bad 2 "missing arguments for 'snapshot create'" snapshot create v1
bad 2 "missing arguments for 'snapshot show'" snapshot show v1
bad 2 "missing arguments for 'snapshot delete'" snapshot delete
bad 2 "missing arguments for 'snapshot rollback'" snapshot rollback v1
bad 2 "missing arguments for 'snapshot diff'" snapshot diff v1
bad 2 "too many arguments for 'snapshot list'" snapshot list v1 v2
bad 2 "too many arguments for 'snapshot create'" snapshot create v1 s1 s2
bad 2 "unknown option '--force' for 'snapshot delete'" snapshot delete v1 s1 --force
bad 2 "option --force takes no value" snapshot rollback v1 s1 --force=yes
bad 2 "option --mode needs a value" snapshot create v1 s1 --mode
bad 2 "option --from needs a value" snapshot diff v1 s1 --from

# ---------------------------------------------------------------- the requests sent
# request ARGS...: the request peerctl sent for 'peerctl -v ARGS', as
# canonical JSON; peerd's answer does not matter here (unknown command
# until peerd has snapshots, then no volume 'nosuch': exit 1 or 5)
request()
{
	local rc
	ctl 1 -v "$@" >/dev/null 2>"$T/v.err" && rc=0 || rc=$?
	case $rc in 0 | 1 | 5) ;; *) fail "peerctl $*: exit $rc: $(cat "$T/v.err")" ;; esac
	"$PYTHON" - "$T/v.err" <<'EOF'
import json, re, sys
for line in open(sys.argv[1]):
    m = re.search(r"request to [^:]*: (\{.*\})\s*$", line)
    if m:
        print(json.dumps(json.loads(m.group(1)), sort_keys=True))
        break
else:
    sys.exit("no request in: " + open(sys.argv[1]).read())
EOF
}

expect_request()
{
	local want=$1 got
	shift
	got=$(request "$@") || fail "peerctl $*: no request seen"
	want=$("$PYTHON" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1]), sort_keys=True))' "$want")
	assert_eq "$got" "$want" "request of 'peerctl $*'"
	log "ok: peerctl $* -> $got"
}

expect_request '{"cmd": "snapshot.create", "args": {"volume": "nosuch", "name": "daily", "mode": "hold", "timeout_ms": 7000}}' \
	snapshot create nosuch daily
expect_request '{"cmd": "snapshot.create", "args": {"volume": "nosuch", "name": "d.1_x-2", "mode": "timestamp", "timeout_ms": 500}}' \
	snapshot create nosuch d.1_x-2 --mode timestamp --timeout 500ms
# --timeout after the command is the snapshot's (2 s), not peerctl's wait
expect_request '{"cmd": "snapshot.create", "args": {"volume": "nosuch", "name": "s", "mode": "hold", "timeout_ms": 2000}}' \
	snapshot create nosuch s --timeout 2
expect_request '{"cmd": "snapshot.create", "args": {"volume": "nosuch", "name": "s", "mode": "hold", "timeout_ms": 600000}}' \
	--timeout 5 snapshot create nosuch s --timeout=10m
expect_request '{"cmd": "snapshot.list", "args": {}}' snapshot list
expect_request '{"cmd": "snapshot.list", "args": {"volume": "nosuch"}}' snapshot list nosuch --json
expect_request '{"cmd": "snapshot.show", "args": {"volume": "nosuch", "name": "s"}}' snapshot show nosuch s
expect_request '{"cmd": "snapshot.delete", "args": {"volume": "nosuch", "name": "s"}}' snapshot delete nosuch s
expect_request '{"cmd": "snapshot.rollback", "args": {"volume": "nosuch", "name": "s", "force": false}}' \
	snapshot rollback nosuch s
expect_request '{"cmd": "snapshot.rollback", "args": {"volume": "nosuch", "name": "s", "force": true}}' \
	snapshot rollback nosuch s --force
expect_request '{"cmd": "snapshot.diff", "args": {"volume": "nosuch", "name": "s"}}' snapshot diff nosuch s
expect_request '{"cmd": "snapshot.diff", "args": {"volume": "nosuch", "name": "s2", "from": "s1"}}' \
	snapshot diff nosuch s2 --from s1 --json
expect_request '{"cmd": "volume.delete", "args": {"name": "nosuch", "with_snapshots": true}}' \
	volume delete nosuch --with-snapshots
expect_request '{"cmd": "volume.delete", "args": {"name": "nosuch", "force": true, "with_snapshots": true}}' \
	volume delete nosuch --with-snapshots --force
# peerd's refusal of an unknown volume keeps its exit status
expect_ctl_error 1 5 "nosuch" volume delete nosuch --with-snapshots

stop_peerd 1
