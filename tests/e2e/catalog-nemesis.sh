#!/usr/bin/env bash
# catalog-nemesis: the group catalog stays one catalog under faults (issue
# 12). Three servers; for PV_NEMESIS_ROUNDS rounds (default 4, about 60-90 s:
# the CI run), three catalog changes at once through random servers (volume
# create of a new name, or delete of a volume created earlier) while a
# nemesis, at a random moment 0-0.6 s after they start (before, during or
# after PREPARE, during COMMIT), kills -9 and restarts a random member
# (often the coordinator of one of them), SIGSTOPs one for 1-4 s, or does
# nothing. In longer runs (PV_NEMESIS_ROUNDS > 5) every fourth round SIGSTOPs a
# member for 12 s, longer than the catalog lock time (10 s). A sampler reads
# every server's 'group show --json' every 0.3 s all along.
#
# Checked at the end: all servers hold the same catalog (version, hash and
# content); every change peerctl reported done is in it (created and not
# deleted since, or deleted), none reported refused is; no (version, hash)
# pair sampled from any server (itself or its view of a peer) ever differed
# from another with the same version, and no server ever showed
# catalog_diverged. Changes whose peerctl lost its server (killed) count as
# unknown: either outcome is allowed. The figures go to the log and to
# $T/nemesis-figures (kept with PV_KEEP=1). Group join/leave are not part of
# it (yet).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

ROUNDS=${PV_NEMESIS_ROUNDS:-4}
SEED=${PV_NEMESIS_SEED:-$$}
RANDOM=$SEED
log "nemesis: $ROUNDS rounds, seed $SEED (PV_NEMESIS_SEED to repeat)"

group_of_three

# The sampler: "SERVER VERSION HASH DIVERGED" per member view, every 0.3 s.
: >"$T/samples"
(
	while [ ! -e "$T/stop-sampler" ]; do
		for n in 1 2 3; do
			"$PEERCTL" -s "$(sock_of "$n")" --timeout 2 group show --json 2>/dev/null |
				python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1], d["catalog_version"], d["catalog_hash"], int(d["catalog_diverged"]))
for m in d["members"]:
    if m.get("catalog_hash"):
        print(sys.argv[1], m["catalog_version"], m["catalog_hash"], int(m["catalog_diverged"]))
' "$n" >>"$T/samples" 2>/dev/null || true
		done
		sleep 0.3
	done
) &
sampler=$!

# outcomes: "done|refused|unknown create|delete NAME" lines
: >"$T/outcomes"
faults_kill=0 faults_stop=0 faults_long=0 nvol=0
created=()

# change I OP NAME SERVER: runs peerctl in the background; its outcome goes
# to $T/out.I (classified after it ends).
change()
{
	local i=$1 op=$2 name=$3 n=$4
	if [ "$op" = create ]; then
		"$PEERCTL" -s "$(sock_of "$n")" --timeout 40 volume create "$name" 16M
	else
		"$PEERCTL" -s "$(sock_of "$n")" --timeout 40 volume delete "$name"
	fi >"$T/out.$i" 2>&1 && echo 0 >"$T/rc.$i" || echo $? >"$T/rc.$i"
}

classify()
{
	local i=$1 op=$2 name=$3 rc out
	rc=$(cat "$T/rc.$i")
	out=$(cat "$T/out.$i")
	if [ "$rc" = 0 ]; then
		echo "done $op $name"
	elif grep -qE "no answer from peerd at|connect|No such file|Connection refused" <<<"$out"; then
		echo "unknown $op $name"
	else
		echo "refused $op $name"
	fi >>"$T/outcomes"
	log "  $op $name -> $(tail -1 "$T/outcomes" | cut -d' ' -f1): $out"
}

for ((r = 1; r <= ROUNDS; r++)); do
	pids=() ops=() names=()
	for i in 0 1 2; do
		n=$((RANDOM % 3 + 1))
		if ((${#created[@]} > 0 && RANDOM % 3 == 0)); then
			op=delete name=${created[RANDOM % ${#created[@]}]}
		else
			nvol=$((nvol + 1))
			op=create name=nem-$nvol
			created+=("$name")
		fi
		ops[i]=$op names[i]=$name
		change "$r.$i" "$op" "$name" "$n" &
		pids[i]=$!
	done
	victim=$((RANDOM % 3 + 1))
	sleep "0.$((RANDOM % 7))"
	fault=$((RANDOM % 3))
	if ((ROUNDS > 5 && r % 4 == 0)); then
		fault=3
	fi
	case $fault in
	0)
		log "round $r: kill -9 server $victim"
		kill9_peerd "$victim"
		faults_kill=$((faults_kill + 1))
		sleep "$((RANDOM % 2 + 1))"
		start_peerd "$victim" ${PEERD_ARGS[$victim]}
		wait_peerd "$victim"
		;;
	1)
		t=$((RANDOM % 4 + 1))
		log "round $r: SIGSTOP server $victim for $t s"
		kill -STOP "${PEERD_PID[$victim]}"
		faults_stop=$((faults_stop + 1))
		sleep "$t"
		kill -CONT "${PEERD_PID[$victim]}"
		;;
	2)
		log "round $r: no fault"
		;;
	3)
		log "round $r: SIGSTOP server $victim for 12 s (past the lock time)"
		kill -STOP "${PEERD_PID[$victim]}"
		faults_long=$((faults_long + 1))
		sleep 12
		kill -CONT "${PEERD_PID[$victim]}"
		;;
	esac
	for i in 0 1 2; do
		wait "${pids[i]}" || true
		classify "$r.$i" "${ops[i]}" "${names[i]}"
	done
	wait_group_up 1 2 3 >/dev/null 2>&1 || fail "round $r: the group did not come back up"
done

wait_catalogs_agree 30 1 2 3
touch "$T/stop-sampler"
wait "$sampler" || true

final=$(ctl 1 volume list --json | json "' '.join(sorted(v['name'] for v in d['volumes']))")
python3 - "$T/outcomes" "$T/samples" "$final" "$ROUNDS" "$faults_kill" "$faults_stop" \
	"$faults_long" "$T/nemesis-figures" <<'EOF' || fail "see the lines above"
import sys, collections
outcomes = [l.split() for l in open(sys.argv[1]) if l.strip()]
final = set(sys.argv[3].split())
bad = []
# a name's fate: its create, then possibly deletes (in order)
state = {}
for kind, op, name in outcomes:
    if op == "create":
        state[name] = {"done": True, "refused": False, "unknown": None}[kind]
    elif kind == "done":
        state[name] = False
    elif kind == "unknown":
        state[name] = None
for kind, op, name in outcomes:
    if op == "create" and kind == "refused" and name in final:
        bad.append("create %s reported refused but it is in the catalog" % name)
for name, present in state.items():
    if present is True and name not in final:
        bad.append("%s: reported created (and not deleted) but missing" % name)
    if present is False and name in final:
        bad.append("%s: reported deleted (or refused) but present" % name)
by_version = collections.defaultdict(set)
diverged = 0
nsamples = 0
for l in open(sys.argv[2]):
    f = l.split()
    if len(f) != 4:
        continue
    nsamples += 1
    by_version[f[1]].add(f[2])
    diverged += f[3] == "1"
split = {v: h for v, h in by_version.items() if len(h) > 1}
for v, h in split.items():
    bad.append("version %s seen with %d hashes: %s" % (v, len(h), " ".join(sorted(h))))
if diverged:
    bad.append("catalog_diverged shown in %d samples" % diverged)
c = collections.Counter(k for k, _, _ in outcomes)
fig = ("rounds %s; faults: %s kill -9, %s SIGSTOP 1-4 s, %s SIGSTOP 12 s; changes: %d done, "
       "%d refused, %d unknown; %d samples of %d versions; divergences seen: %d" % (
           sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], c["done"], c["refused"],
           c["unknown"], nsamples, len(by_version), len(split) + diverged))
print(fig, file=sys.stderr)
open(sys.argv[8], "w").write(fig + "\n")
for b in bad:
    print("nemesis: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
log "nemesis: $(cat "$T/nemesis-figures")"
