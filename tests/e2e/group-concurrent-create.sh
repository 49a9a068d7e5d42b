#!/usr/bin/env bash
# group-concurrent-create: the same volume name created at the same moment
# through two different servers of a group of three: exactly one create
# succeeds, the other is refused as existing (or as a conflict), and all
# three servers then list exactly one volume of that name, with the same id
# and the size the winner asked for. Repeated over several names and pairs
# of servers.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_bin "$PEERD" "$PEERCTL"

group_of_three

# create_race NAME A B: NAME through server A (64 MiB) and server B
# (128 MiB) at once.
create_race()
{
	local name=$1 a=$2 b=$3 ra rb pa pb deadline views
	# Both wait on the same barrier file, then go.
	rm -f "$T/go"
	(while [ ! -e "$T/go" ]; do sleep 0.01; done
	 exec "$PEERCTL" -s "$(sock_of "$a")" --timeout 60 volume create "$name" 64M) \
		>"$T/$name.a" 2>&1 &
	pa=$!
	(while [ ! -e "$T/go" ]; do sleep 0.01; done
	 exec "$PEERCTL" -s "$(sock_of "$b")" --timeout 60 volume create "$name" 128M) \
		>"$T/$name.b" 2>&1 &
	pb=$!
	sleep 0.3
	touch "$T/go"
	wait "$pa" && ra=0 || ra=$?
	wait "$pb" && rb=0 || rb=$?
	log "$name: through $a -> exit $ra: $(cat "$T/$name.a")"
	log "$name: through $b -> exit $rb: $(cat "$T/$name.b")"

	local winner_size loser_out
	if [ "$ra" = 0 ] && [ "$rb" != 0 ]; then
		winner_size=$((64 << 20))
		loser_out=$(cat "$T/$name.b")
	elif [ "$rb" = 0 ] && [ "$ra" != 0 ]; then
		winner_size=$((128 << 20))
		loser_out=$(cat "$T/$name.a")
	else
		fail "$name created at once through servers $a and $b: expected exactly one success," \
			"got exits $ra and $rb ($(cat "$T/$name.a") / $(cat "$T/$name.b"))"
	fi
	grep -qiE 'exist|conflict' <<<"$loser_out" ||
		fail "$name: the refused create does not say the volume exists or conflicts: $loser_out"

	# All three agree: one volume of that name, same id, the winner's size.
	deadline=$((SECONDS + 15))
	while :; do
		views=""
		for n in 1 2 3; do
			views+="$(ctl "$n" volume list --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
v = [(x["id"], x["size"]) for x in d["volumes"] if x["name"] == sys.argv[1]]
print(len(v), *(v[0] if v else ()))' "$name");"
		done
		if python3 - "$views" "$winner_size" <<'EOF'; then break; fi
import sys
vs = [v.split() for v in sys.argv[1].rstrip(";").split(";")]
ok = all(len(v) == 3 and v[0] == "1" for v in vs) and len({v[1] for v in vs}) == 1 \
    and all(v[2] == sys.argv[2] for v in vs)
sys.exit(0 if ok else 1)
EOF
		log "$name: not agreed yet: $views"
		((SECONDS < deadline)) ||
			fail "$name: servers 1,2,3 do not agree on one volume (count id size): $views (winner asked for $winner_size bytes)"
		sleep 0.5
	done
	log "$name: one winner, all three servers list it once with the same id ($views)"
}

create_race race-a 1 2
create_race race-b 2 3
create_race race-c 3 1
create_race race-d 1 3
create_race race-e 2 1

# And nothing else appeared: exactly the five volumes, ids unique.
for n in 1 2 3; do
	got=$(ctl "$n" volume list --json |
		json "sorted(v['name'] for v in d['volumes']) == ['race-a', 'race-b', 'race-c', 'race-d', 'race-e'] and len({v['id'] for v in d['volumes']}) == 5")
	assert_eq "$got" true "server $n's volume list (five volumes, unique ids)"
done
same_catalog 1 2 3
log "all three servers hold the same catalog"
