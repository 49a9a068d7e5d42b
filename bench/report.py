#!/usr/bin/env python3
"""report.py: turns the raw output of one scripts/bench run (fio JSON per
system and profile, facts about each system, process statistics) into the
results JSON, the bar chart (chart.py) and the tables printed on stdout.
Standard library only.

Input layout (written by scripts/bench), one folder per system:
  <in>/<system>/meta          key=value lines (label, status, reason, direct_io, ...)
  <in>/<system>/procs         "proc NAME PID VMHWM_KIB CPU_TICKS CLK_TCK" and
                              "cpu PROFILE NAME CPU_TICKS CLK_TCK" lines
  <in>/<system>/<profile>.json  fio --output-format=json

The results JSON can be read back with --from to print the tables again.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chart  # noqa: E402

PROFILES = ["seq-write", "seq-read", "rand-read", "rand-write", "rand-rw"]
# The main direction and unit of each profile.
PROFILE_KIND = {
    "seq-write": ("write", "MB/s"),
    "seq-read": ("read", "MB/s"),
    "rand-read": ("read", "IOPS"),
    "rand-write": ("write", "IOPS"),
    "rand-rw": ("both", "IOPS"),
}
LABELS = {
    "kernel": "kernel ceiling (/dev/shm file)",
    "fuse": "FUSE ceiling (null FUSE file)",
    "nbd": "nbdkit memory + nbdfuse",
    "pv1": "peervol, 1 server",
    "pv3": "peervol, 3 servers",
}
# Goals of issue 4: (numerator, denominator, minimum ratio, profiles).
GOALS = [
    ("pv1", "nbd", 1.5, PROFILES),
    ("pv3", "nbd", 1.2, PROFILES),
    ("pv1", "fuse", 0.4, ["seq-write", "seq-read"]),
]
RATIOS = [("pv1", "nbd"), ("pv3", "nbd"), ("pv1", "fuse"), ("pv3", "fuse"), ("nbd", "fuse")]


def read_meta(path):
    meta = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    meta[k] = v
    except OSError:
        pass
    return meta


def direction(job, name):
    d = job.get(name, {})
    pct = d.get("clat_ns", {}).get("percentile", {})

    def us(key):
        v = pct.get(key)
        return round(v / 1000.0, 1) if v is not None else None

    return {
        "iops": round(d.get("iops", 0.0), 1),
        "MBps": round(d.get("bw_bytes", 0) / 1e6, 1),
        "p50_us": us("50.000000"),
        "p99_us": us("99.000000"),
        "ios": d.get("total_ios", 0),
    }


def read_fio(path, profile):
    with open(path) as f:
        text = f.read()
    # fio may print warnings before the JSON document.
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    kind, unit = PROFILE_KIND[profile]
    r = {"unit": unit, "read": direction(job, "read"), "write": direction(job, "write"),
         "fio_cpu_pct": {"usr": round(job.get("usr_cpu", 0), 1),
                         "sys": round(job.get("sys_cpu", 0), 1)},
         "error": job.get("error", 0)}
    if kind == "both":
        r["value"] = round(r["read"]["iops"] + r["write"]["iops"], 1)
        r["p50_us"], r["p99_us"] = r["read"]["p50_us"], r["read"]["p99_us"]
    else:
        d = r[kind]
        r["value"] = d["MBps"] if unit == "MB/s" else d["iops"]
        r["p50_us"], r["p99_us"] = d["p50_us"], d["p99_us"]
    return r


def collect(args):
    systems = []
    for sid in args.systems.split(","):
        d = os.path.join(args.indir, sid)
        meta = read_meta(os.path.join(d, "meta"))
        s = {"id": sid, "label": meta.pop("label", LABELS.get(sid, sid)),
             "status": meta.pop("status", "not-run")}
        if "direct_io" in meta:
            s["loop_direct_io"] = meta.pop("direct_io") == "1"
        s.update(meta)
        s["profiles"] = {}
        for p in PROFILES:
            runs = []
            for r in range(1, max(args.rounds, 1) + 1):
                fp = os.path.join(d, p + (".json" if r == 1 else ".r%d.json" % r))
                if os.path.exists(fp):
                    try:
                        runs.append(read_fio(fp, p))
                    except (ValueError, KeyError, IndexError) as e:
                        runs.append({"error": "unreadable fio output: %s" % e})
            good = sorted((x for x in runs if x.get("value")), key=lambda x: x["value"])
            if good:
                # the median round (the lower of the two middle ones for an
                # even count): its latencies belong to its value
                s["profiles"][p] = dict(good[(len(good) - 1) // 2])
                if len(runs) > 1:
                    s["profiles"][p]["rounds"] = [x.get("value") for x in runs]
            elif runs:
                s["profiles"][p] = runs[0]
        procs = {}
        try:
            with open(os.path.join(d, "procs")) as f:
                for line in f:
                    w = line.split()
                    if w[0] == "proc":
                        procs[w[1]] = {"pid": int(w[2]), "peak_rss_MiB": round(int(w[3]) / 1024, 1),
                                       "cpu_s": round(int(w[4]) / int(w[5]), 2)}
                    elif w[0] == "cpu" and w[1] in s["profiles"]:
                        s["profiles"][w[1]].setdefault("cpu_s", {})[w[2]] = round(int(w[3]) / int(w[4]), 2)
        except OSError:
            pass
        if procs:
            s["processes"] = procs
        systems.append(s)
    return systems


def value(systems, sid, profile):
    for s in systems:
        if s["id"] == sid and s["status"] == "ok":
            v = s["profiles"].get(profile, {}).get("value")
            return v if v else None
    return None


def compute_ratios(systems):
    ratios = {}
    for a, b in RATIOS:
        row = {}
        for p in PROFILES:
            va, vb = value(systems, a, p), value(systems, b, p)
            row[p] = round(va / vb, 3) if va and vb else None
        if any(v is not None for v in row.values()):
            ratios["%s/%s" % (a, b)] = row
    goals = []
    for a, b, minimum, profiles in GOALS:
        row = ratios.get("%s/%s" % (a, b), {})
        got = {p: row.get(p) for p in profiles}
        known = [v for v in got.values() if v is not None]
        met = None if len(known) < len(profiles) else all(v >= minimum for v in known)
        goals.append({"goal": "%s >= %.1fx %s on %s" % (a, minimum, b,
                                                       "every profile" if profiles == PROFILES
                                                       else " and ".join(profiles)),
                      "ratios": got, "met": met})
    return ratios, goals


def fmt_num(v):
    if v is None:
        return "-"
    if v >= 100000:
        return "%.0fK" % (v / 1000)
    if v >= 10000:
        return "%.1fK" % (v / 1000)
    return "%.0f" % v


def fmt_lat(us):
    if us is None:
        return "-"
    return "%.0f" % us if us >= 10 else "%.1f" % us


def cell(s, p):
    r = s["profiles"].get(p)
    if s["status"] != "ok":
        return s["status"]
    if not r or "value" not in r:
        return "error"
    if p == "rand-rw":
        return "%s / %s" % (fmt_num(r["read"]["iops"]), fmt_num(r["write"]["iops"]))
    return fmt_num(r["value"])


def lat_cell(s, p):
    r = s["profiles"].get(p)
    if s["status"] != "ok" or not r or "value" not in r:
        return "-"
    if p == "rand-rw":
        return "%s/%s, w %s/%s" % (fmt_lat(r["read"]["p50_us"]), fmt_lat(r["read"]["p99_us"]),
                                   fmt_lat(r["write"]["p50_us"]), fmt_lat(r["write"]["p99_us"]))
    return "%s/%s" % (fmt_lat(r["p50_us"]), fmt_lat(r["p99_us"]))


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(res):
    systems = res["systems"]
    heads = ["seq-write MB/s", "seq-read MB/s", "rand-read IOPS", "rand-write IOPS",
             "rand-rw IOPS (r / w)"]
    lines = []
    lines.append("peervol benchmark, %s on %s (%s, kernel %s, %d CPUs), commit %s" % (
        res["mode"], res["host"], res["date"], res["kernel"], res["cpus"], res.get("commit") or "?"))
    lines.append("command: %s; volume %s; %s s per job (+%s s ramp); loop direct-io requested %s; "
                 "data in %s" % (res["command"], res["size"], res["runtime_s"], res["ramp_s"],
                                 res["loop_direct_io"], res.get("data_dir", "/dev/shm")))
    if res.get("rounds", 1) > 1:
        lines.append("%d rounds of every system in turn; each number is the median round's "
                     "(the JSON has every round's value); CPU seconds are the last round's"
                     % res["rounds"])
    if res["mode"] == "dry-run":
        lines.append("DRY RUN: 1 s jobs without warm-up; the numbers only show that each system works")
    if res.get("pv_env") or res.get("fused_opts"):
        lines.append("peervol variant: environment '%s', extra fused options '%s'" % (
            res.get("pv_env", ""), res.get("fused_opts", "")))
    if res.get("loadavg"):
        lines.append("load average (1/5/15 min): %s" % res["loadavg"])
    lines.append("")
    lines.append(md_table(["system", "dio"] + heads,
                          [[s["label"], {True: "on", False: "OFF"}.get(s.get("loop_direct_io"), "-")]
                           + [cell(s, p) for p in PROFILES] for s in systems]))
    lines.append("")
    lines.append("completion latency p50/p99 in microseconds (rand-rw: reads, then writes):")
    lines.append("")
    lines.append(md_table(["system"] + PROFILES,
                          [[s["label"]] + [lat_cell(s, p) for p in PROFILES] for s in systems]))
    notes = [(s["label"], s.get("reason")) for s in systems if s.get("reason")]
    for s in systems:
        if s.get("routing"):
            notes.append((s["label"], "pages per owner (server:pages): " + s["routing"]))
        for k, v in sorted(s.items()):
            if k.startswith(("error_", "died_", "stop_", "losetup_warning")):
                notes.append((s["label"], "%s: %s" % (k, v)))
    if notes:
        lines.append("")
        lines += ["- %s: %s" % n for n in notes]
    if res["ratios"]:
        lines.append("")
        lines.append("ratios (rand-rw: total IOPS):")
        lines.append("")
        lines.append(md_table(["ratio"] + PROFILES,
                              [[k] + ["%.2f" % v if v is not None else "-" for v in row.values()]
                               for k, row in res["ratios"].items()]))
    lines.append("")
    lines.append("goals of issue 4:")
    for g in res["goals"]:
        state = {True: "MET", False: "NOT MET", None: "not measured"}[g["met"]]
        lines.append("- %s: %s (%s)" % (g["goal"], state, ", ".join(
            "%s %s" % (p, "%.2f" % v if v is not None else "-") for p, v in g["ratios"].items())))
    procs = [(s, n, p) for s in systems for n, p in s.get("processes", {}).items()]
    if procs:
        lines.append("")
        lines.append("processes (peak RSS = VmHWM; CPU = utime+stime over all jobs of the system):")
        lines.append("")
        rows = []
        for s, n, p in procs:
            per = ", ".join("%s %.1f" % (prof, s["profiles"][prof].get("cpu_s", {}).get(n, 0))
                            for prof in PROFILES if prof in s["profiles"])
            rows.append([s["label"], n, "%.1f" % p["peak_rss_MiB"], "%.1f" % p["cpu_s"], per])
        lines.append(md_table(["system", "process", "peak RSS MiB", "CPU s", "CPU s per job"], rows))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in", dest="indir")
    ap.add_argument("--from", dest="fromfile", help="print the tables of a results JSON")
    ap.add_argument("--systems", default="kernel,fuse,nbd,pv1,pv3")
    ap.add_argument("--json")
    ap.add_argument("--svg")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--size", default="")
    ap.add_argument("--runtime", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of the whole sequence; each job's median round is reported")
    ap.add_argument("--ramp", type=int, default=0)
    ap.add_argument("--loop-dio", default="on")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--command", default="scripts/bench")
    ap.add_argument("--commit", default="")
    ap.add_argument("--data-dir", default="/dev/shm", help="where peerd data and the kernel file lived")
    ap.add_argument("--build", default="", help="build tree of the peervol binaries")
    ap.add_argument("--pv-env", default="", help="environment given to peerd and fused")
    ap.add_argument("--fused-opts", default="", help="extra fused options")
    ap.add_argument("--loadavg", default="", help="load average at start and end of the run")
    args = ap.parse_args()

    if args.fromfile:
        with open(args.fromfile) as f:
            res = json.load(f)
    else:
        if not args.indir:
            ap.error("--in or --from is needed")
        systems = collect(args)
        ratios, goals = compute_ratios(systems)
        res = {"schema": 1, "host": socket.gethostname(),
               "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "kernel": platform.release(), "cpus": os.cpu_count(),
               "command": args.command, "commit": args.commit, "mode": args.mode,
               "size": args.size, "runtime_s": args.runtime, "ramp_s": args.ramp,
               "rounds": args.rounds,
               "loop_direct_io": args.loop_dio, "elapsed_s": args.elapsed,
               "loadavg": args.loadavg, "data_dir": args.data_dir,
               "pv_env": args.pv_env, "fused_opts": args.fused_opts, "build": args.build,
               "fio_jobs": "bench/fio/*.fio", "systems": systems, "ratios": ratios, "goals": goals}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(chart.svg(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
