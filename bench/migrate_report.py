#!/usr/bin/env python3
"""bench/migrate_report.py: the report of scripts/bench --migrate.

Reads the work directory of a run (meta, phases, onepage, evacuate, the fio
JSON of every phase, the peerd logs and the mover's log), writes the JSON
of the run and prints its tables in Markdown:

  migrate_report.py --in WORKDIR/out/migrate --json OUT.json [facts...]
  migrate_report.py --from OUT.json      # print a run's tables again

Numbers: rand-rw is total IOPS (reads + writes) with the completion latency
(clat) p50/p99 of reads and of writes; seq-write and seq-read are MB/s
(10^6 bytes) with their clat p50/p99, in microseconds. Each job's value is
the median round (the lower middle one for an even count). A page's move
takes from its source's "moving S->T" log line to its "moved S->T" line.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import sys

JOBS = ["rand-rw", "seq-write", "seq-read"]
MOVING = re.compile(r"^(\S+)Z .*migrate: volume (\S+) page (\d+): moving (\d+)->(\d+) in (\d+) "
                    r"pieces of (\d+) bytes")
MOVED = re.compile(r"^(\S+)Z .*migrate: volume (\S+) page (\d+) moved (\d+)->(\d+) \(epoch")
GOAL_P99 = 2.0  # p99 during moves at most 2x idle
GOAL_TPUT = 0.8  # throughput during moves at least 80% of idle


def ts_ms(s):
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def run_facts(a, kind, meta):
    """What every report of --migrate, --skew and --snapshot records of its
    run: the command line's facts, when, where, and the run's meta."""
    return {"kind": kind, "command": a.command, "commit": a.commit, "size": a.size,
            "runtime": a.runtime, "elapsed_s": a.elapsed, "loadavg": a.loadavg,
            "build": a.build, "pv_env": a.pv_env, "fused_opts": a.fused_opts,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": os.uname().nodename, "kernel": os.uname().release, "cpus": os.cpu_count(),
            "meta": meta}


def ticks(s):
    out = {}
    for w in s.split():
        k, _, v = w.partition("=")
        if v.isdigit():
            out[k] = int(v)
    return out


def cpu_cores(c0, c1, secs, clk):
    a, b = ticks(c0), ticks(c1)
    return {k: round((b[k] - a.get(k, 0)) / clk / secs, 2) for k in b if secs > 0}


def lat(d):
    pct = d.get("clat_ns", {}).get("percentile", {})

    def us(key):
        v = pct.get(key)
        return round(v / 1000) if v is not None else None

    return us("50.000000"), us("99.000000")


def read_fio(path, job):
    j = json.load(open(path))["jobs"][0]
    r, w = j["read"], j["write"]
    if job == "rand-rw":
        return {"value": r["iops"] + w["iops"], "unit": "IOPS", "read_iops": r["iops"],
                "write_iops": w["iops"], "p50": lat(r)[0], "p99": lat(r)[1],
                "w_p50": lat(w)[0], "w_p99": lat(w)[1]}
    d = w if job == "seq-write" else r
    return {"value": d["bw_bytes"] / 1e6, "unit": "MB/s", "p50": lat(d)[0], "p99": lat(d)[1]}


def median_round(vals):
    """The median round by value (the lower middle one for an even count)."""
    s = sorted(vals, key=lambda v: v["value"])
    return s[(len(s) - 1) // 2]


def read_moves(indir):
    """Every move the peerd logs tell of: source, target, page, start, end."""
    moves, open_ = [], {}
    for n in (1, 2, 3):
        path = os.path.join(indir, "peerd%d.log" % n)
        if not os.path.exists(path):
            continue
        for line in open(path, errors="replace"):
            m = MOVING.match(line)
            if m:
                key = (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
                open_[key] = (ts_ms(m.group(1)), int(m.group(6)), int(m.group(7)))
                continue
            m = MOVED.match(line)
            if m:
                key = (m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
                if key in open_:
                    start, pieces, piece = open_.pop(key)
                    moves.append({"volume": key[0], "page": key[1], "from": key[2], "to": key[3],
                                  "start_ms": start, "end_ms": ts_ms(m.group(1)),
                                  "pieces": pieces, "piece_size": piece})
    return sorted(moves, key=lambda m: m["start_ms"])


def move_rates(moves, page_size):
    durs = [m["end_ms"] - m["start_ms"] for m in moves]
    if not durs:
        return None
    med = statistics.median(durs)
    return {"moves": len(durs), "median_ms": med, "min_ms": min(durs), "max_ms": max(durs),
            "median_mbps": round(page_size / 1e6 / (med / 1000), 1) if med else None}


def collect(a):
    indir = a.__dict__["in"]
    meta = read_meta(os.path.join(indir, "meta"))
    page_size = int(meta.get("page_size", "0") or 0)
    moves = read_moves(indir)
    res = dict(run_facts(a, "migrate", meta), ramp=a.ramp, rounds=a.rounds, page_size=page_size,
               goals={"p99_max_ratio": GOAL_P99, "throughput_min_ratio": GOAL_TPUT})
    fill = os.path.join(indir, "fill.json")
    if os.path.exists(fill):
        w = json.load(open(fill))["jobs"][0]["write"]
        res["fill"] = {"bytes": w["io_bytes"], "mbps": round(w["bw_bytes"] / 1e6)}

    # phases: idle vs moving, per job and round
    phases = []
    path = os.path.join(indir, "phases")
    for line in open(path) if os.path.exists(path) else []:
        f = line.rstrip("\n").split("\t")
        r, job, phase, t0, t1, rc, c0, c1 = f[:8]
        t0, t1 = int(t0), int(t1)
        p = {"round": int(r), "job": job, "phase": phase, "start_ms": t0, "end_ms": t1,
             "fio_rc": int(rc)}
        if len(f) > 8:
            p["drained_ms"] = int(f[8]) - t1  # until the moves asked were done
        f = os.path.join(indir, "%s.%s.r%s.json" % (job, phase, r))
        if int(rc) == 0 and os.path.exists(f):
            p.update(read_fio(f, job))
        meas0 = t0 + int(a.ramp) * 1000
        p["cpu_cores"] = cpu_cores(c0, c1, (t1 - t0) / 1000, a.clk_tck)
        done = [m for m in moves if meas0 <= m["end_ms"] <= t1]
        p["moves_done"] = len(done)
        p["moved_mbps"] = round(len(done) * page_size / 1e6 / ((t1 - meas0) / 1000), 1) \
            if t1 > meas0 else None
        phases.append(p)
    res["phases"] = phases
    table = {}
    for job in JOBS:
        row = {}
        for phase in ("idle", "moving"):
            vals = [p for p in phases if p["job"] == job and p["phase"] == phase and "value" in p]
            if vals:
                row[phase] = dict(median_round(vals), rounds=[round(v["value"], 1) for v in vals])
        if "idle" in row and "moving" in row:
            i, m = row["idle"], row["moving"]
            row["throughput_ratio"] = round(m["value"] / i["value"], 2) if i["value"] else None
            row["p99_ratio"] = round(m["p99"] / i["p99"], 2) if i.get("p99") else None
            if job == "rand-rw" and i.get("w_p99"):
                row["w_p99_ratio"] = round(m["w_p99"] / i["w_p99"], 2)
            p99s = [row["p99_ratio"]] + ([row["w_p99_ratio"]] if "w_p99_ratio" in row else [])
            row["p99_goal_met"] = all(x is not None and x <= GOAL_P99 for x in p99s)
            row["throughput_goal_met"] = row["throughput_ratio"] is not None and \
                row["throughput_ratio"] >= GOAL_TPUT
        table[job] = row
    res["table"] = table
    moving_windows = [(p["start_ms"] + int(a.ramp) * 1000, p["end_ms"]) for p in phases
                      if p["phase"] == "moving"]
    during = [m for m in moves if any(s <= m["end_ms"] <= e for s, e in moving_windows)]
    res["moves_during_io"] = move_rates(during, page_size)
    res["moves"] = moves
    path = os.path.join(indir, "mover.log")
    lines = [l.split() for l in open(path)] if os.path.exists(path) else []
    asks = [x for x in lines if x and x[0] != "#"]
    costs = [x for x in lines if x[:2] == ["#", "cpu_s"]]
    res["mover"] = {"asked": len(asks), "accepted": sum(1 for x in asks if x[3] == "0" and
                                                         x[4:] and x[4] not in ("", "0")),
                    "already_there": sum(1 for x in asks if x[3] == "0" and x[4:] == ["0"]),
                    "refused": sum(1 for x in asks if x[3] != "0"),
                    "inflight": meta.get("inflight")}
    if costs:  # the mover and its peerctl: CPU the client does not get either
        cpu, secs = sum(float(x[2]) for x in costs), sum(float(x[4]) for x in costs)
        res["mover"]["cpu_s"] = round(cpu, 1)
        res["mover"]["cores"] = round(cpu / secs, 2) if secs else None

    # one page at a time, client idle
    onepage = []
    path = os.path.join(indir, "onepage")
    for line in open(path) if os.path.exists(path) else []:
        label, page, owner, to, t0, t1, rc = line.rstrip("\n").split("\t")
        t0, t1 = int(t0), int(t1)
        m = [x for x in moves if x["page"] == int(page) and t0 - 1000 <= x["start_ms"] <= t1]
        e = {"label": label, "page": int(page), "from": int(owner), "to": int(to),
             "peerctl_ms": t1 - t0, "rc": int(rc)}
        if m:
            d = m[0]["end_ms"] - m[0]["start_ms"]
            e.update(log_ms=d, pieces=m[0]["pieces"], piece_size=m[0]["piece_size"],
                     mbps=round(page_size / 1e6 / (d / 1000), 1) if d else None)
        onepage.append(e)
    res["onepage"] = onepage
    res["onepage_summary"] = {}
    for label in sorted({e["label"] for e in onepage}):
        xs = [e["mbps"] for e in onepage if e["label"] == label and e.get("mbps")]
        ds = [e["log_ms"] for e in onepage if e["label"] == label and "log_ms" in e]
        if xs:
            res["onepage_summary"][label] = {"median_mbps": statistics.median(xs),
                                             "median_ms": statistics.median(ds), "n": len(xs)}

    # evacuation of server 2
    path = os.path.join(indir, "evacuate")
    if os.path.exists(path):
        t0, t1, rc, c0, c1 = open(path).read().rstrip("\n").split("\t")
        t0, t1 = int(t0), int(t1)
        owned = dict(w.split(":") for w in meta.get("routing_before_evacuate", "").split() if ":" in w)
        pages = int(owned.get("2", 0))
        ev = [m for m in moves if m["from"] == 2 and t0 - 1000 <= m["start_ms"] <= t1]
        e = {"server": 2, "pages": pages, "bytes": pages * page_size, "rc": int(rc),
             "peerctl_s": round((t1 - t0) / 1000, 1), "moves_logged": len(ev),
             "cpu_cores": cpu_cores(c0, c1, (t1 - t0) / 1000, a.clk_tck)}
        if ev:
            span = (max(m["end_ms"] for m in ev) - min(m["start_ms"] for m in ev)) / 1000
            e["log_s"] = round(span, 1)
            e["mbps"] = round(len(ev) * page_size / 1e6 / span, 1) if span else None
            e["per_move"] = move_rates(ev, page_size)
        res["evacuate"] = e
    return res


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "IOPS":
        return "%.1fK" % (v / 1000) if v >= 10000 else "%d" % round(v)
    return "%d" % round(v)


def render(res):
    out = []
    w = out.append
    w("peervol migration benchmark (%s, %s, %s CPUs), commit %s" %
      (res["host"], res["date"], res["cpus"], res["commit"]))
    w("command: %s; volume %s, page %d KiB; %s s per job (+%s s ramp), %s round(s); "
      "max_mbps %s; %s moves kept in flight" %
      (res["command"], res["size"], res["page_size"] // 1024, res["runtime"], res["ramp"],
       res["rounds"], res["meta"].get("max_mbps"), res["meta"].get("inflight")))
    w("load average (1/5/15 min): %s" % res["loadavg"])
    w("")
    w("| job | idle | during moves | ratio | idle p50/p99 us | moving p50/p99 us | p99 ratio | "
      "moves done (MB/s moved) |")
    w("|---|---|---|---|---|---|---|---|")
    for job in JOBS:
        row = res["table"].get(job, {})
        i, m = row.get("idle"), row.get("moving")
        if not i or not m:
            w("| %s | - | - | - | - | - | - | - |" % job)
            continue
        unit = i["unit"]
        lat_i = "%s/%s" % (i["p50"], i["p99"])
        lat_m = "%s/%s" % (m["p50"], m["p99"])
        p99r = "%.2f" % row["p99_ratio"]
        if job == "rand-rw":
            lat_i += ", w %s/%s" % (i["w_p50"], i["w_p99"])
            lat_m += ", w %s/%s" % (m["w_p50"], m["w_p99"])
            p99r += ", w %.2f" % row["w_p99_ratio"]
        mp = [p for p in res["phases"] if p["job"] == job and p["phase"] == "moving"
              and p["round"] == m["round"]]
        moved = "%d (%s)" % (mp[0]["moves_done"], mp[0]["moved_mbps"]) if mp else "-"
        w("| %s %s | %s | %s | %.2f | %s | %s | %s | %s |" %
          (job, unit, fmt(i["value"], unit), fmt(m["value"], unit), row["throughput_ratio"],
           lat_i, lat_m, p99r, moved))
    w("")
    met_t = all(r.get("throughput_goal_met") for r in res["table"].values() if r)
    met_p = all(r.get("p99_goal_met") for r in res["table"].values() if r)
    w("goals of issue 13: throughput during moves >= %.0f%% of idle: %s; p99 during moves "
      "<= %.0fx idle: %s" % (GOAL_TPUT * 100, "MET" if met_t else "NOT MET", GOAL_P99,
                             "MET" if met_p else "NOT MET"))
    w("")
    md = res.get("moves_during_io")
    if md:
        w("moves finished during the measured IO: %d, each %d ms median (%d-%d), %s MB/s per "
          "page" % (md["moves"], md["median_ms"], md["min_ms"], md["max_ms"], md["median_mbps"]))
    mv = res.get("mover", {})
    w("mover: %s asks, %s accepted, %s already there, %s refused%s" %
      (mv.get("asked"), mv.get("accepted"), mv.get("already_there"), mv.get("refused"),
       "; it and its peerctl used %s CPU s (%s cores while it ran)" % (mv["cpu_s"], mv["cores"])
       if "cpu_s" in mv else ""))
    w("")
    w("CPU (cores) per process, median round, idle -> moving:")
    for job in JOBS:
        row = res["table"].get(job, {})
        if not row.get("idle") or not row.get("moving"):
            continue
        ci, cm = row["idle"]["cpu_cores"], row["moving"]["cpu_cores"]
        w("- %s: %s" % (job, ", ".join("%s %.2f -> %.2f" % (k, ci.get(k, 0), cm.get(k, 0))
                                        for k in sorted(cm))))
    w("")
    w("one page moved at a time, client idle:")
    w("")
    w("| throttle | moves | median time (log) | median MB/s | peerctl wall ms |")
    w("|---|---|---|---|---|")
    for label, s in res.get("onepage_summary", {}).items():
        walls = [e["peerctl_ms"] for e in res["onepage"] if e["label"] == label]
        w("| %s | %d | %d ms | %.1f | %s |" % (label, s["n"], s["median_ms"], s["median_mbps"],
                                              ", ".join(str(x) for x in walls)))
    ev = res.get("evacuate")
    if ev:
        w("")
        w("evacuation of server %d: %d pages (%.0f MiB) in %.1f s (peerctl), %s s from the first "
          "move to the last in the logs, %s MB/s; exit %d; CPU %s" %
          (ev["server"], ev["pages"], ev["bytes"] / 2**20, ev["peerctl_s"], ev.get("log_s"),
           ev.get("mbps"), ev["rc"],
           ", ".join("%s %.2f" % (k, v) for k, v in sorted(ev["cpu_cores"].items()))))
    return "\n".join(out)


def result(a, collect):
    """A run's result: read again (--from), or collect(a) from the work
    directory and written to --json. (skew_report.py uses it too.)"""
    if a.from_:
        return json.load(open(a.from_))
    res = collect(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in")
    ap.add_argument("--from", dest="from_")
    ap.add_argument("--json")
    for k in ("size", "runtime", "ramp", "rounds", "elapsed", "build", "pv-env", "fused-opts",
              "loadavg", "command", "commit"):
        ap.add_argument("--" + k, default="")
    ap.add_argument("--clk-tck", type=int, default=100)
    a = ap.parse_args()
    print(render(result(a, collect)))


if __name__ == "__main__":
    sys.exit(main())
