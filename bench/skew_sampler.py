#!/usr/bin/env python3
"""bench/skew_sampler.py: samples the group once a second for scripts/bench --skew.

  skew_sampler.py --peerctl P --sock S --out SAMPLES --stop-file F [--every 10]

While STOP_FILE exists, at every whole second of the wall clock it asks the
server of control socket S, in parallel, for `load` (each server's load and
its share of the group's, the 10 s rates the rebalancer judges by),
`balance status` (that server's state, its recent decisions and those the
others send in their heartbeats) and `migrations` (the moves under way in
the group), and writes one JSON line to SAMPLES:

  {"t_ms": wall ms, "servers": [{"id", "share", "fair_share", "load",
   "read_iops", "write_iops", "p99_us", "pages_owned", "at_ms"}, ...],
   "total_load", "balance": {"on", "state", "over", "moves_out",
   "threshold", "interval_s", "recent": [...]}, "max_mbps", "moves":
   [{"volume", "page", "from", "to", "state", "piece", "pieces",
   "bytes_copied"}, ...]}

A question not answered within 5 s is left out of that line ("errors"
says which). Every --every seconds a line goes to stderr to show progress.
Stops (exit 0) when STOP_FILE is removed or on SIGTERM.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

SERVER_KEYS = ("id", "share", "fair_share", "load", "read_iops", "write_iops", "p99_us",
               "pages_owned", "at_ms")
UNDER_WAY = {"queued", "starting", "copying", "switching"}  # a source's states before the switch
MOVE_KEYS = ("volume", "page", "from", "to", "state", "piece", "pieces", "bytes_copied")
stop = False


def on_term(signum, frame):
    global stop
    stop = True


def ask_all(args, cmds):
    """Runs peerctl --json CMD for every CMD at once; {name: result or None}."""
    procs = {name: subprocess.Popen([args.peerctl, "-s", args.sock, "--json", *cmd],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for name, cmd in cmds.items()}
    out = {}
    for name, p in procs.items():
        try:
            text, _ = p.communicate(timeout=5)
            out[name] = json.loads(text) if p.returncode == 0 and text.strip() else None
        except (subprocess.TimeoutExpired, ValueError):
            p.kill()
            p.communicate()
            out[name] = None
    return out


def sample(args, t_ms):
    r = ask_all(args, {"load": ["load"], "balance": ["balance", "status"],
                       "migrations": ["migrations"]})
    s = {"t_ms": t_ms, "errors": [k for k, v in r.items() if not isinstance(v, dict)]}
    if isinstance(r["load"], dict):
        s["servers"] = [{k: x.get(k) for k in SERVER_KEYS} for x in r["load"].get("servers", [])]
        s["total_load"] = r["load"].get("total_load")
    if isinstance(r["balance"], dict):
        s["balance"] = {k: r["balance"].get(k) for k in
                        ("on", "state", "over", "moves_out", "threshold", "interval_s", "recent")}
    if isinstance(r["migrations"], dict):
        s["max_mbps"] = r["migrations"].get("max_mbps")
        s["moves"] = [{k: m.get(k) for k in MOVE_KEYS} for m in r["migrations"].get("migrations", [])]
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peerctl", required=True)
    ap.add_argument("--sock", required=True, help="the control socket of the server asked")
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--every", type=int, default=10, help="seconds between progress lines")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    n = 0
    with open(args.out, "a") as out:
        while not stop and os.path.exists(args.stop_file):
            # the next whole second of the wall clock
            time.sleep(1 - time.time() % 1)
            t_ms = int(time.time() * 1000)
            s = sample(args, t_ms)
            out.write(json.dumps(s, separators=(",", ":")) + "\n")
            out.flush()
            n += 1
            if args.every and n % args.every == 0:
                shares = " ".join("%d:%.0f%%" % (x["id"], (x["share"] or 0) * 100)
                                  for x in s.get("servers", []))
                b = s.get("balance", {})
                print("[skew %s] shares %s; server asked: %s, moves under way %d" %
                      (time.strftime("%H:%M:%S"), shares, b.get("state"),
                       len({(m["volume"], m["page"]) for m in s.get("moves", [])
                            if m["state"] in UNDER_WAY})),
                      file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
