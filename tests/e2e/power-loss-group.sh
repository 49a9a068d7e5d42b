#!/usr/bin/env bash
# power-loss-group: a group of three, each server's data directory on its
# own pvlazyfs (tests/tools/pvlazyfs.c); a volume spread over the three. A
# flushed write reaches the disk of the server that owns its page: after
# random data A is written through a loop device and flushed, data B over
# it unflushed, and one server's power cut (kill -9, then "drop" of its
# unsynced writes; the others run on), that server restarts and every
# 4 MiB page reads back exactly A where the crashed server owns it (its
# unflushed B rolled back) and B elsewhere (the others kept it). The
# catalog and the routing are unchanged on all three. Rounds: the crashed
# server is 2, then 3, then 1, ...: PV_POWER_ROUNDS (default 1).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
. "$(dirname "$0")/lazyfs-lib.sh"
need_fuse
need_loop
need_cmd losetup cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PVLAZYFS"

ROUNDS=${PV_POWER_ROUNDS:-1}
SIZE_MB=48 # 12 pages of 4 MiB over the three servers

for n in 1 2 3; do mount_lazyfs "$T/back$n" "$(data_of "$n")"; done
group_of_three
for n in 1 2 3; do wait_links_up "$n" 2; done
ctl 1 volume create vol ${SIZE_MB}M >/dev/null
routing_json 1 vol "$T/routing.json"
assert_eq "$(json "sorted(set(r['owner'] for r in d['routing']))" <"$T/routing.json")" "[1, 2, 3]" \
	"owners of vol's pages"
# view N: catalog and routing as server N has them, live numbers left out
view()
{
	catalog_view "$1"
	ctl "$1" volume show vol --routing --json |
		json '{k: v for k, v in d.items() if k not in ("pages_written", "bytes_allocated", "open_clients", "open_by")}'
}
for n in 1 2 3; do view "$n" >"$T/view$n.before"; done

mount_fused "$T/mnt" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt/vol")

for ((round = 1; round <= ROUNDS; round++)); do
	victim=$(((round % 3) + 1)) # 2, 3, 1, ...
	make_random "$T/a" "$SIZE_MB"
	make_random "$T/b" "$SIZE_MB"
	dd if="$T/a" of="$dev" bs=1M oflag=direct conv=fsync status=none # FLUSH at the end
	dd if="$T/b" of="$dev" bs=1M oflag=direct status=none            # no flush
	pages=$(lazy_stat "$(data_of "$victim")" pages)
	[ "$pages" -gt 0 ] || fail "round $round: server $victim holds no unsynced page: nothing to lose"
	log "round $round: power cut of server $victim with $pages unsynced pages of 4 KiB"
	kill9_peerd "$victim"
	lazy_ctl "$(data_of "$victim")" drop
	# shellcheck disable=SC2086
	run_peerd "$victim" ${PEERD_ARGS[$victim]}
	wait_group_up 1 2 3
	# expected: A on the victim's pages, B on the others'
	"$PYTHON" - "$T/routing.json" "$victim" "$T/a" "$T/b" "$T/want" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
victim = int(sys.argv[2])
a, b = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
ps = 4 << 20
out = bytearray(b)
for r in d["routing"]:
    if r["owner"] == victim:
        out[r["first_page"] * ps:(r["last_page"] + 1) * ps] = a[r["first_page"] * ps:(r["last_page"] + 1) * ps]
open(sys.argv[5], "wb").write(out)
PYEOF
	dd if="$dev" bs=1M count="$SIZE_MB" iflag=direct of="$T/got" status=none
	if ! cmp -s "$T/got" "$T/want"; then
		"$PYTHON" - "$T/got" "$T/a" "$T/b" "$T/routing.json" <<'PYEOF' >&2
import json, sys
got, a, b = (open(p, "rb").read() for p in sys.argv[1:4])
own = {}
for r in json.load(open(sys.argv[4]))["routing"]:
    for p in range(r["first_page"], r["last_page"] + 1):
        own[p] = r["owner"]
ps = 4 << 20
for p in range(len(got) // ps):
    s = slice(p * ps, (p + 1) * ps)
    print("page %d owner %d: %s" % (p, own.get(p), "A (flushed)" if got[s] == a[s] else
          "B (unflushed)" if got[s] == b[s] else "neither A nor B"))
PYEOF
		fail "round $round: after server $victim's power cut the volume is not A on its pages and B elsewhere"
	fi
	for n in 1 2 3; do
		view "$n" >"$T/view$n.after"
		cmp -s "$T/view$n.before" "$T/view$n.after" ||
			fail "round $round: server $n's catalog or routing changed: $(diff "$T/view$n.before" "$T/view$n.after")"
	done
	log "round $round: flushed data intact on server $victim, its unflushed writes rolled back, the others' kept"
done
