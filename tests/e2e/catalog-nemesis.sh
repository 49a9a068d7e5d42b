#!/usr/bin/env bash
# catalog-nemesis: the group catalog stays one catalog under faults (issue
# 12). Three servers; for PV_NEMESIS_ROUNDS rounds (default 4, about 60-90 s:
# the CI run), three catalog changes at once through random servers (volume
# create of a new name on servers 1,2,3, or delete of a volume created
# earlier) while a nemesis, at a random moment 0-0.6 s after they start
# (before, during or after PREPARE, during COMMIT), kills -9 and restarts a
# random member (often the coordinator of one of them), SIGSTOPs one for
# 1-4 s, or does nothing. Membership changes too: a fourth server (peerd 4,
# fresh, started after the first volumes exist) runs 'group join' through a
# random member in round 2, along with that round's changes and fault; a
# join refused or unknown is retried once the round's faults stop (join is
# safe to retry), so from round 3 on server 4 is a member and a victim like
# the others. In the last round (from 3 rounds on) 'group leave 4' goes
# through a random other member, along with that round's changes and fault
# (server 4 owns no pages: every volume is created with --servers 1,2,3).
# The nemesis picks server 4 only while it is a member. In longer runs (PV_NEMESIS_ROUNDS > 5) every fourth round SIGSTOPs a
# member for 12 s, longer than the catalog lock time (10 s). A sampler reads
# every server's 'group show --json' every 0.3 s all along.
#
# Checked at the end: all servers hold the same catalog (version, hash and
# content); every change peerctl reported done is in it (created and not
# deleted since, or deleted), none reported refused is; no (version, hash)
# pair sampled from any server (itself or its view of a peer) ever differed
# from another with the same version, and no server ever showed
# catalog_diverged. Changes whose peerctl lost its server (killed) count as
# unknown: either outcome is allowed. The members at the end (those the
# final catalog lists: server 4 unless its leave took effect) all hold that
# catalog; a leave reported done must have taken server 4 out (and a refused
# one must not), and a server 4 out of the group must have become a group of
# one. Samples are compared within a group id (server 4 alone has catalogs
# of its own). The figures go to the log and to $T/nemesis-figures (kept
# with PV_KEEP=1).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

ROUNDS=${PV_NEMESIS_ROUNDS:-4}
SEED=${PV_NEMESIS_SEED:-$$}
RANDOM=$SEED
JOIN_ROUND=2 LEAVE_ROUND=$ROUNDS
((ROUNDS >= 3)) || LEAVE_ROUND=0
log "nemesis: $ROUNDS rounds, seed $SEED (PV_NEMESIS_SEED to repeat); server 4 joins in round $JOIN_ROUND, leaves in round $LEAVE_ROUND (0: never)"

group_of_three
# server 4: up but alone until its join; sampled only once it is running
run_peerd 4
joined4=0    # whether server 4 was a member at some point
is_member4=0 # whether the nemesis may pick server 4 (a member)

# The sampler: every server's 'group show --json' every 0.3 s, raw (one
# line "SERVER JSON" each; peerctl only, as a poll (ctl): a python per
# sample would take most of a core from the servers), made into "SERVER GROUP_ID
# VERSION HASH DIVERGED" lines per member view (the group id is the
# sampled server's) at the end.
: >"$T/samples.raw"
(
	while [ ! -e "$T/stop-sampler" ]; do
		for n in 1 2 3 4; do
			out=$(PV_CTL_POLL=1 ctl "$n" --timeout 2 group show --json 2>/dev/null) &&
				printf '%s %s\n' "$n" "${out//$'\n'/ }" >>"$T/samples.raw" || true
		done
		sleep 0.3
	done
) &
sampler=$!

# outcomes: "done|refused|unknown create|delete|join|leave NAME" lines (NAME
# is the server for join and leave)
: >"$T/outcomes"
faults_kill=0 faults_stop=0 faults_long=0 nvol=0
created=()

# change I OP NAME SERVER: runs peerctl in the background; its outcome goes
# to $T/out.I (classified after it ends).
change()
{
	local i=$1 op=$2 name=$3 n=$4
	case $op in
	create) "$PEERCTL" -s "$(sock_of "$n")" --timeout 40 volume create "$name" 16M --servers 1,2,3 ;;
	delete) "$PEERCTL" -s "$(sock_of "$n")" --timeout 40 volume delete "$name" ;;
	join) "$PEERCTL" -s "$(sock_of "$name")" --timeout 40 group join "$(addr_of "$n")" ;;
	leave) "$PEERCTL" -s "$(sock_of "$n")" --timeout 40 group leave "$name" ;;
	esac >"$T/out.$i" 2>&1 && echo 0 >"$T/rc.$i" || echo $? >"$T/rc.$i"
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

# members N...: the member ids server N's catalog lists, space-separated.
members()
{
	ctl "$1" group show --json | json "' '.join(str(m['id']) for m in d['members'])"
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
	nch=3 op=""
	if ((r == JOIN_ROUND)); then
		op=join
	elif ((r == LEAVE_ROUND && is_member4)); then
		op=leave
	fi
	if [ -n "$op" ]; then
		n=$((RANDOM % 3 + 1))
		log "round $r: $op of server 4 through server $n"
		ops[3]=$op names[3]=4
		change "$r.3" "$op" 4 "$n" &
		pids[3]=$!
		nch=4
	fi
	victim=$((RANDOM % (3 + is_member4) + 1))
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
	for ((i = 0; i < nch; i++)); do
		wait "${pids[i]}" || true
		classify "$r.$i" "${ops[i]}" "${names[i]}"
	done
	if ((r == JOIN_ROUND)); then
		# the faults have stopped: a join refused or unknown is retried
		# (safe: a member answers a repeated JOIN with its catalog)
		if ! tail -1 "$T/outcomes" | grep -q "^done join"; then
			wait_group_up 1 2 3
			n=$((RANDOM % 3 + 1))
			ctl 4 --timeout 40 group join "$(addr_of "$n")" >"$T/join-retry.out" 2>&1 ||
				fail "round $r: the retried join of server 4 through server $n failed: $(cat "$T/join-retry.out")"
			log "  join 4 retried through server $n: $(head -1 "$T/join-retry.out")"
			echo "retried" >"$T/join-retried"
		fi
		is_member4=1 joined4=1
	elif ((r == LEAVE_ROUND)) && ((is_member4)); then
		# until the catalogs agree, whether an unknown leave took effect
		# may still change
		wait_catalogs_agree 30 1 2 3
		case " $(members 1) " in
		*" 4 "*) is_member4=1 ;;
		*) is_member4=0 ;;
		esac
		log "  after the leave, server 4 is $( ((is_member4)) && echo "still a member" || echo "out")"
	fi
	up=(1 2 3)
	((is_member4)) && up+=(4)
	# (wait_group_up fails the test, naming the server, if not)
	wait_group_up "${up[@]}"
done

# the members at the end: those the final catalog lists (it agrees on 1-3)
wait_catalogs_agree 30 1 2 3
final_members=$(members 1)
log "final members: $final_members"
if [ "$final_members" != "1 2 3" ]; then
	# shellcheck disable=SC2086
	wait_catalogs_agree 30 $final_members
fi
assert_eq "$(members 1)" "$final_members" "members after the catalogs agreed"
in_group4=0
case " $final_members " in *" 4 "*) in_group4=1 ;; esac
if ((joined4 && !in_group4)); then
	# server 4 is out: it must become a group of one (told, or by asking)
	deadline=$((SECONDS + 20))
	until [ "$(ctl 4 group show --json 2>/dev/null | json "len(d['members'])" 2>/dev/null)" = 1 ]; do
		((SECONDS < deadline)) ||
			fail "server 4 is not listed by the group but is not a group of one after 20 s: $(ctl 4 group show 2>&1)"
		sleep 0.3
	done
	[ "$(status_field 4 group_id)" != "$(status_field 1 group_id)" ] ||
		fail "server 4 left but kept the group id"
	log "server 4 is out of the group, a group of one"
fi
touch "$T/stop-sampler"
wait "$sampler" || true
"$PYTHON" - "$T/samples.raw" >"$T/samples" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    n, _, text = line.partition(" ")
    try:
        d = json.loads(text)
        g = d.get("group_id") or "-"
        print(n, g, d["catalog_version"], d["catalog_hash"], int(d["catalog_diverged"]))
        for m in d["members"]:
            if m.get("catalog_hash"):
                print(n, g, m["catalog_version"], m["catalog_hash"], int(m["catalog_diverged"]))
    except (ValueError, KeyError, TypeError):
        pass # a sample cut short (its server killed meanwhile)
EOF

final=$(ctl 1 volume list --json | json "' '.join(sorted(v['name'] for v in d['volumes']))")
python3 - "$T/outcomes" "$T/samples" "$final" "$ROUNDS" "$faults_kill" "$faults_stop" \
	"$faults_long" "$T/nemesis-figures" "$in_group4" "$([ -e "$T/join-retried" ] && echo 1 || echo 0)" \
	<<'EOF' || fail "see the lines above"
import sys, collections
outcomes = [l.split() for l in open(sys.argv[1]) if l.strip()]
final = set(sys.argv[3].split())
bad = []
# a name's fate: its create, then possibly deletes (in order)
state = {}
in_group4 = sys.argv[9] == "1"
for kind, op, name in outcomes:
    if op == "leave" and kind == "done" and in_group4:
        bad.append("leave of server %s reported done but it is still a member" % name)
    if op == "leave" and kind == "refused" and not in_group4:
        bad.append("leave of server %s reported refused but it is not a member" % name)
    if op in ("join", "leave"):
        continue
    if op == "create":
        state[name] = {"done": True, "refused": False, "unknown": None}[kind]
    elif kind == "done":
        state[name] = False
    elif kind == "unknown":
        state[name] = None
if not any(op == "leave" for _, op, _ in outcomes) and not in_group4 and any(
        op == "join" for _, op, _ in outcomes):
    bad.append("server 4 joined (and was never asked to leave) but is not a member")
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
    if len(f) != 5:
        continue
    nsamples += 1
    by_version[(f[1], f[2])].add(f[3])
    diverged += f[4] == "1"
split = {v: h for v, h in by_version.items() if len(h) > 1}
for (g, v), h in split.items():
    bad.append("group %s version %s seen with %d hashes: %s" % (g, v, len(h), " ".join(sorted(h))))
if diverged:
    bad.append("catalog_diverged shown in %d samples" % diverged)
c = collections.Counter(k for k, _, _ in outcomes)
memb = " ".join("%s %s" % (op, k) for k, op, _ in outcomes if op in ("join", "leave"))
fig = ("rounds %s; faults: %s kill -9, %s SIGSTOP 1-4 s, %s SIGSTOP 12 s; changes: %d done, "
       "%d refused, %d unknown (of them: %s%s); server 4 %s at the end; "
       "%d samples of %d versions; divergences seen: %d" % (
           sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], c["done"], c["refused"],
           c["unknown"], memb or "no join/leave",
           ", join retried and done" if sys.argv[10] == "1" else "",
           "a member" if in_group4 else "out", nsamples, len(by_version), len(split) + diverged))
print(fig, file=sys.stderr)
open(sys.argv[8], "w").write(fig + "\n")
for b in bad:
    print("nemesis: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
log "nemesis: $(cat "$T/nemesis-figures")"
