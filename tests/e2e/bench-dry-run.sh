#!/usr/bin/env bash
# bench-dry-run: the benchmark harness's smoke test (issue 4).
# `scripts/bench --dry-run --no-build` with this build's binaries starts
# every system (kernel and FUSE ceilings, nbdkit + nbdfuse, peervol with one
# and with three servers), runs each fio job for 1 s and stops it cleanly
# (the harness fails a system that does not stop on SIGTERM); the report
# has a number for every system and profile and the ratios the goals are
# read from; nothing is left behind: no mount, loop device, process or data
# directory of the run. No speed is asserted.
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_cmd fio nbdkit nbdfuse python3
need_bin "$PEERD" "$PEERCTL" "$FUSED" "$PV_BUILD/bench/pv-nullfs"

# shm_dirs: the harness's data directories now in /dev/shm, one per line.
shm_dirs() { compgen -G '/dev/shm/pv-bench.*' | sort || true; }
shm_before=$(shm_dirs)
log "scripts/bench --dry-run --no-build (binaries of $PV_BUILD)"
TMPDIR=$T PV_BENCH_BUILD=$PV_BUILD timeout 240 "$PV_REPO/scripts/bench" --dry-run --no-build \
	>"$T/bench.out" 2>&1 || {
	tail -40 "$T/bench.out" >&2
	fail "scripts/bench --dry-run exited non-zero"
}
json=$(compgen -G "$T/pv-bench.*/*-dry-run.json" | head -1 || true)
[ -n "$json" ] || fail "no report (*-dry-run.json) in the work directory: $(tail -5 "$T/bench.out")"
python3 - "$json" <<'EOF' || fail "the dry run's report lacks systems, profiles or ratios ($json)"
import json, sys
d = json.load(open(sys.argv[1]))
want = ["kernel", "fuse", "nbd", "pv1", "pv3"]
profiles = ["seq-write", "seq-read", "rand-read", "rand-write", "rand-rw"]
got = {s["id"]: s for s in d["systems"]}
bad = [n for n in want if n not in got]
for n in want:
    if got.get(n, {}).get("status", "ok") not in ("ok", None):
        bad.append("%s status %s" % (n, got[n]["status"]))
    for p in profiles:
        v = got.get(n, {}).get("profiles", {}).get(p)
        if not v or v.get("value", 0) <= 0:
            bad.append("%s/%s" % (n, p))
for r in ["pv1/nbd", "pv3/nbd", "pv1/fuse"]:
    if r not in d["ratios"]:
        bad.append("ratio " + r)
print("missing or zero:", bad or "none", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
log "report: every system measured every profile ($(basename "$json"))"

# Nothing of the run is left: the harness cleaned up after each system.
if findmnt -rn -o TARGET | grep -qF "$T/pv-bench"; then
	fail "mounts of the bench run left: $(findmnt -rn -o TARGET | grep -F "$T/pv-bench")"
fi
if losetup -a | grep -qE "$T/pv-bench|/dev/shm/pv-bench"; then
	fail "loop devices of the bench run left: $(losetup -a | grep -E "$T/pv-bench|/dev/shm/pv-bench")"
fi
if pgrep -f "$T/pv-bench" >/dev/null; then
	fail "processes of the bench run left: $(pgrep -af "$T/pv-bench")"
fi
shm_after=$(shm_dirs)
assert_eq "$shm_after" "$shm_before" "data directories in /dev/shm after the run"
log "no mount, loop device, process or data directory left"
