#!/usr/bin/env python3
"""bench/migrate_mover.py: keeps page moves going for scripts/bench --migrate.

  migrate_mover.py --peerctl P --socks S1,S2,S3 --volume V --pages N
                   --servers 1,2,3 --stop-file F --log L [--inflight 4]
  migrate_mover.py --count --peerctl P --socks S1,S2,S3 --servers 1,2,3 --volume V

While STOP_FILE exists, keeps about --inflight moves of random pages to
random other servers queued or running in the group (the default throttle
decides how fast they go): every --interval seconds it counts the moves
out of each server as that server lists them (`peerctl --json migrations`,
states queued, begin, copying, switching, from its own id: what a server
lists of others comes from heartbeats and lags), and asks for the missing ones with
`peerctl page move VOL PAGE --to ID --async`. A page already on the chosen
server is skipped by peerd (answer pages 0), a page already moving is
refused: both just count. One line per ask goes to --log:
"unix_ms page to rc pages", for the report.

Stops (exit 0) when STOP_FILE is removed or on SIGTERM.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

ACTIVE = {"queued", "starting", "copying", "switching"}
stop = False


def on_term(signum, frame):
    global stop
    stop = True


def peerctl(args, sock, *cmd):
    try:
        p = subprocess.run([args.peerctl, "-s", sock, "--json", *cmd], capture_output=True,
                           text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return 124, None
    try:
        return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        return p.returncode, None


def active_moves(args):
    """Pages moving now: each server's own moves out (from == its id), which
    it lists exactly; what it lists of others comes from their last
    heartbeats and may be over already."""
    pages = set()
    for sock, sid in zip(args.socks, args.ids):
        rc, r = peerctl(args, sock, "migrations")
        if rc != 0 or not isinstance(r, dict):
            continue
        for m in r.get("migrations", []):
            if m.get("volume") == args.volume and m.get("state") in ACTIVE and \
                    m.get("from") == sid:
                pages.add(m.get("page"))
    return pages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peerctl", required=True)
    ap.add_argument("--socks", required=True, help="control sockets, comma separated")
    ap.add_argument("--volume", required=True)
    ap.add_argument("--count", action="store_true",
                    help="print the number of moves queued or running and exit")
    ap.add_argument("--pages", type=int)
    ap.add_argument("--servers", required=True,
                    help="server ids, comma separated, those of --socks in order")
    ap.add_argument("--inflight", type=int, default=4)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--stop-file")
    ap.add_argument("--log")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    args.socks = args.socks.split(",")
    args.ids = [int(x) for x in args.servers.split(",")]
    if args.count:
        print(len(active_moves(args)))
        return 0
    if not (args.pages and args.stop_file and args.log):
        ap.error("--pages, --stop-file and --log are needed to move pages")
    servers = args.ids
    rng = random.Random(args.seed)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    t0 = time.time()
    with open(args.log, "a") as log:
        while not stop and os.path.exists(args.stop_file):
            busy = active_moves(args)
            for _ in range(max(0, args.inflight - len(busy))):
                if stop:
                    break
                page = rng.randrange(args.pages)
                if page in busy:
                    continue
                to = rng.choice(servers)
                # any server takes the ask and hands it to the page's owner
                sock = rng.choice(args.socks)
                rc, r = peerctl(args, sock, "page", "move", args.volume, str(page),
                                "--to", str(to), "--async")
                n = r.get("pages", "") if isinstance(r, dict) else ""
                log.write("%d %d %d %d %s\n" % (time.time() * 1000, page, to, rc, n))
                log.flush()
                busy.add(page)
            time.sleep(args.interval)
        # its own cost and that of the peerctl it ran, for the report
        t = os.times()
        log.write("# cpu_s %.2f elapsed_s %.1f\n" %
                  (t.user + t.system + t.children_user + t.children_system, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
