#!/usr/bin/env python3
"""bench/snapshot_report.py: the report of scripts/bench --snapshot.

Reads the work directory of a run (meta, snaps, deletes, the fio JSON and
per-second logs of every phase, each snapshot's create answer), writes the
JSON of the run and prints its tables in Markdown:

  snapshot_report.py --in WORKDIR/out/snapshot --json OUT.json [facts...]
  snapshot_report.py --from OUT.json      # print a run's tables again

Client figures are fio's, 4 KiB random writes: IOPS and completion latency
(clat) p50/p99/p99.9/max of the whole job from its JSON, in microseconds;
per second, IOPS from its IOPS log and p99 and the largest latency from its
per-second latency histogram (the middle of the highest bin: within about
1.5%). Percentiles of pauses are nearest-rank: of 20 values the p99 is the
largest.
"""
import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in bench/ for the imports below
from migrate_report import read_meta, result, run_facts  # noqa: E402
from skew_report import hist_stats, plat_val  # noqa: E402

PHASES = [("a", "(a) no snapshot"), ("b", "(b) right after a snapshot"),
          ("c", "(c) every chunk preserved")]
FIRST_S = 3  # (b)'s first seconds: most of its writes copy a chunk then
SERIES = [("none", "without snapshots"), ("hold", "hold-mode series"),
          ("timestamp", "timestamp-mode series")]


def us(ns):
    return None if ns is None else round(ns / 1000)


def read_job(path):
    """The write side of a fio JSON report, or None."""
    try:
        d = json.load(open(path))
        j = d["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    w, clat = j["write"], j["write"]["clat_ns"]
    pct = clat.get("percentile", {})
    end = int(d["timestamp_ms"])
    return {"iops": round(w["iops"]), "mb_s": round(w["bw_bytes"] / 1e6, 1),
            "ios": w["total_ios"], "runtime_s": round(j["job_runtime"] / 1000, 1),
            "mean_us": us(clat.get("mean")), "p50_us": us(pct.get("50.000000")),
            "p99_us": us(pct.get("99.000000")), "p999_us": us(pct.get("99.900000")),
            "max_us": us(clat.get("max")), "start_ms": end - int(j["job_runtime"]),
            "end_ms": end}


def read_seconds(indir, name):
    """[{"end_ms", "iops", "p99_us", "max_us"}], one per second, from the
    IOPS and latency histogram logs of job NAME (entries stamped at the end
    of their second)."""
    secs = {}
    path = os.path.join(indir, name + "_iops.1.log")
    for line in open(path) if os.path.exists(path) else []:
        f = [x.strip() for x in line.split(",")]
        if len(f) >= 3:
            secs.setdefault(round(int(f[0]) / 1000), {})["iops"] = int(f[1])
    path = os.path.join(indir, name + "_clat_hist.1.log")
    for line in open(path) if os.path.exists(path) else []:
        f = [int(x) for x in line.split(",")]
        bins = f[3:]
        s = secs.setdefault(round(f[0] / 1000), {})
        s["bins"] = bins if "bins" not in s else [x + y for x, y in zip(s["bins"], bins)]
    out = []
    for k in sorted(secs):
        s = {"end_ms": k * 1000, "iops": secs[k].get("iops")}
        bins = secs[k].get("bins")
        if bins and sum(bins):
            s["p99_us"] = hist_stats(bins)[2]
            top = max(i for i, c in enumerate(bins) if c)
            s["max_us"] = round(plat_val(top) / 1000)
        out.append(s)
    return out


def nearest_rank(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def spread(vals):
    return {"n": len(vals), "p50": nearest_rank(vals, 50), "p90": nearest_rank(vals, 90),
            "p99": nearest_rank(vals, 99), "max": max(vals) if vals else None,
            "min": min(vals) if vals else None}


def read_snaps(indir):
    """Every snapshot create: series, name, mode, server, start, end, rc and
    the pause its answer reports."""
    out = []
    path = os.path.join(indir, "snaps")
    for line in open(path) if os.path.exists(path) else []:
        f = line.rstrip("\n").split("\t")
        if len(f) < 7:
            continue
        s = {"series": f[0], "name": f[1], "mode": f[2], "server": int(f[3]),
             "start_ms": int(f[4]), "end_ms": int(f[5]), "rc": int(f[6])}
        s["wall_ms"] = s["end_ms"] - s["start_ms"]
        try:
            s["pause_ms"] = json.load(open(os.path.join(indir, "create-%s.json" % s["name"])))[
                "pause_ms"]
        except (OSError, ValueError, KeyError):
            s["pause_ms"] = None
        if s["rc"]:
            try:
                s["error"] = open(os.path.join(indir, "create-%s.err" % s["name"])).read().strip()
            except OSError:
                s["error"] = None
        out.append(s)
    return out


def read_deletes(indir):
    out = []
    path = os.path.join(indir, "deletes")
    for line in open(path) if os.path.exists(path) else []:
        f = line.rstrip("\n").split("\t")
        if len(f) >= 4:
            out.append({"name": f[0], "ms": int(f[2]) - int(f[1]), "rc": int(f[3])})
    return out


def du(text):
    """"total s1 s2 s3" -> {"total", "servers"}."""
    f = [int(x) for x in (text or "").split()]
    return {"total": f[0], "servers": f[1:]} if f else None


def ratio(x, y):
    return round(x / y, 2) if x is not None and y else None


def collect(a):
    indir = a.__dict__["in"]
    meta = read_meta(os.path.join(indir, "meta"))
    res = dict(run_facts(a, "snapshot", meta), status=meta.get("status", "failed"))
    if res["status"] != "ok":
        return dict(res, status="failed", reason=meta.get("reason", "the run did not start"))
    errors = {k: v for k, v in meta.items() if k.startswith("error_")}
    chunk = int(meta.get("chunk_size") or 0)
    vol = int(meta["volume_bytes"])
    snaps = read_snaps(indir)

    # the copy-on-write phases
    # "FILES SHOWN": du of the snapshot's files, and what snapshot show said
    shown = {k: meta[k].split() for k in ("preserved_after_b", "preserved_after_pass",
                                          "preserved_after_c") if len(meta.get(k, "").split()) == 2}
    preserved = {k: int(v[0]) for k, v in shown.items()}
    copied = {"a": 0, "b": preserved.get("preserved_after_b"),
              "c": (preserved["preserved_after_c"] - preserved["preserved_after_pass"]
                    if len(preserved) == 3 else None)}
    phases = {}
    for key, label in PHASES:
        job = read_job(os.path.join(indir, key + ".json"))
        if not job:
            phases[key] = None
            continue
        job["label"] = label
        job["seconds"] = read_seconds(indir, key)
        if copied[key] is not None and chunk:
            job["chunks_copied"] = copied[key] // chunk
            job["copied_per_write"] = round(job["chunks_copied"] / job["ios"], 3) if job[
                "ios"] else None
        phases[key] = job
    pa = phases.get("a")
    for key in ("b", "c"):
        p = phases.get(key)
        if p and pa:
            p["iops_ratio"] = ratio(p["iops"], pa["iops"])
            p["p99_ratio"] = ratio(p["p99_us"], pa["p99_us"])
    pb = phases.get("b")
    first = [x["iops"] for x in (pb or {}).get("seconds", [])[:FIRST_S] if x.get("iops")]
    if first and pa:
        pb["first_s"] = len(first)
        pb["first_s_iops"] = round(sum(first) / len(first))
        pb["first_s_ratio"] = ratio(pb["first_s_iops"], pa["iops"])
    base = next((s for s in snaps if s["series"] == "base"), None)
    cow = {"chunk_size": chunk, "chunks": vol // chunk if chunk else None,
           "base_snapshot": base, "preserved": preserved,
           "preserved_shown": {k: int(v[1]) for k, v in shown.items()},
           "fill": read_job(os.path.join(indir, "fill.json")),
           "pass": read_job(os.path.join(indir, "pass.json"))}

    # the series
    series = {}
    for key, label in SERIES:
        job = read_job(os.path.join(indir, "series-%s.json" % key))
        mine = [s for s in snaps if s["series"] == key]
        secs = read_seconds(indir, "series-" + key)
        for s in mine:
            # the seconds the create overlapped, as fio logged them
            w = [x for x in secs if x["end_ms"] > s["start_ms"] and
                 x["end_ms"] - 1000 < s["end_ms"]]
            s["client_p99_us"] = max([x["p99_us"] for x in w if x.get("p99_us")], default=None)
            s["client_max_us"] = max([x["max_us"] for x in w if x.get("max_us")], default=None)
            s["in_fio_window"] = bool(job) and job["start_ms"] <= s["start_ms"] and \
                s["end_ms"] <= job["end_ms"]
        ok = [s for s in mine if s["rc"] == 0]
        series[key] = {"label": label, "fio": job, "snapshots": mine, "ok": len(ok),
                       "failed": len(mine) - len(ok),
                       "outside_fio": sum(1 for s in mine if not s["in_fio_window"]),
                       "pause_ms": spread([s["pause_ms"] for s in ok
                                           if s["pause_ms"] is not None]),
                       "wall_ms": spread([s["wall_ms"] for s in ok])}
        if job:
            job["seconds"] = secs
    none = (series.get("none") or {}).get("fio")
    for key in ("hold", "timestamp"):
        job = series[key]["fio"]
        if job and none:
            series[key]["p99_ratio"] = ratio(job["p99_us"], none["p99_us"])
            series[key]["max_ratio"] = ratio(job["max_us"], none["max_us"])

    # space
    deletes = read_deletes(indir)
    pb = (meta.get("preserved_before") or "").split()
    space = {"snaps_before": du(meta.get("snaps_bytes_before")),
             "snaps_after": du(meta.get("snaps_bytes_after")),
             "data_before": du(meta.get("data_bytes_before")),
             "data_after": du(meta.get("data_bytes_after")),
             "snapshots_before": int(pb[0]) if len(pb) == 2 else None,
             "preserved_before": int(pb[1]) if len(pb) == 2 else None,
             "deleted": sum(1 for d in deletes if d["rc"] == 0),
             "delete_failed": sum(1 for d in deletes if d["rc"] != 0),
             "delete_ms": spread([d["ms"] for d in deletes]),
             "delete_total_ms": sum(d["ms"] for d in deletes),
             "freed_wait_ms": int(meta.get("freed_wait_ms") or 0),
             "snap_files_left": int(meta.get("snap_files_left") or 0),
             "snapshots_left": int(meta["snapshots_left"]) if meta.get(
                 "snapshots_left", "").isdigit() else None}
    failed = [{"name": s["name"], "rc": s["rc"], "error": s.get("error")} for s in snaps
              if s["rc"] != 0]
    status = "ok"
    if errors or failed or space["delete_failed"] or space["snap_files_left"] or \
            space["snapshots_left"]:
        status = "failed"
    return dict(res, status=status, errors=errors, failed_snapshots=failed,
                rate_iops=int(meta.get("rate") or 0), span_bytes=int(meta["span_bytes"]),
                page_size=int(meta.get("page_size") or 0), volume_bytes=vol, cow=cow,
                phases=phases, series=series, space=space, deletes=deletes)


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.2f%s" % (v, unit)
    return "%s%s" % (v, unit)


def mib(b):
    return "-" if b is None else "%.1f MiB" % (b / 2**20)


def render(res):
    if res["status"] != "ok" and "phases" not in res:
        return "peervol snapshot benchmark: FAILED: %s" % res.get("reason")
    out = []
    w = out.append
    m, cow = res["meta"], res["cow"]
    w("peervol snapshot benchmark (%s, %s, %s CPUs), commit %s" %
      (res["host"], res["date"], res["cpus"], res["commit"]))
    w("command: %s; volume %s over 3 servers (pages of %d KiB, copy-on-write chunks of %d KiB: "
      "%s chunks); fio 4 KiB random writes, 32 in flight, on the loop device (direct-io %s)" %
      (res["command"], res["size"], res["page_size"] // 1024, cow["chunk_size"] // 1024,
       cow["chunks"], m.get("direct_io")))
    w("load average (1/5/15 min): %s" % res["loadavg"])
    if res["status"] != "ok":
        w("")
        w("**the run FAILED**: %s" % "; ".join(
            ["%s: %s" % kv for kv in res["errors"].items()] +
            ["snapshot %s not made (%s)" % (f["name"], f["error"] or "exit %d" % f["rc"])
             for f in res["failed_snapshots"]] +
            (["%d deletes failed" % res["space"]["delete_failed"]]
             if res["space"]["delete_failed"] else []) +
            (["%d snapshot files left" % res["space"]["snap_files_left"]]
             if res["space"]["snap_files_left"] else []) +
            (["%s snapshots left" % res["space"]["snapshots_left"]]
             if res["space"]["snapshots_left"] else [])))
    w("")
    w("Copy-on-write: three phases of %s s over the whole volume, written whole before" %
      res["runtime"])
    w("")
    w("| phase | IOPS | p50 us | p99 us | p99.9 us | max us | chunks copied | "
      "copies per write | IOPS / (a) | p99 / (a) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for key, label in PHASES:
        p = res["phases"].get(key)
        if not p:
            w("| %s | failed | | | | | | | | |" % label)
            continue
        w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" %
          (label, p["iops"], fmt(p["p50_us"]), fmt(p["p99_us"]), fmt(p["p999_us"]),
           fmt(p["max_us"]), fmt(p.get("chunks_copied")), fmt(p.get("copied_per_write")),
           fmt(p.get("iops_ratio")), fmt(p.get("p99_ratio"))))
    w("")
    for key in ("a", "b", "c"):
        p = res["phases"].get(key)
        if p and p["seconds"]:
            w("%s per second: IOPS %s; p99 us %s" %
              (key, " ".join(fmt(s.get("iops")) for s in p["seconds"]),
               " ".join(fmt(s.get("p99_us")) for s in p["seconds"])))
    pb = res["phases"].get("b") or {}
    if pb.get("first_s"):
        w("(b)'s first %d s, where the most writes copy: %d IOPS, %s of (a)'s mean" %
          (pb["first_s"], pb["first_s_iops"], fmt(pb["first_s_ratio"])))
    b = cow["base_snapshot"]
    if b:
        w("")
        w("the snapshot before (b): hold mode, client idle, pause %s ms, peerctl %d ms" %
          (fmt(b["pause_ms"]), b["wall_ms"]))
    pr = cow["preserved"]
    for key, what in (("fill", "fill (first write of the volume)"),
                      ("pass", "sequential overwrite between (b) and (c), copying what (b) "
                       "left")):
        j = cow.get(key)
        if j:
            w("%s: 1 MiB writes, %.0f MB/s, %.1f s, clat p99 %s us" %
              (what, j["mb_s"], j["runtime_s"], fmt(j["p99_us"])))
    if pr:
        w("the snapshot's files (du): after (b) %s, after the pass %s (the volume: %s), "
          "after (c) %s" % (mib(pr.get("preserved_after_b")), mib(pr.get("preserved_after_pass")),
                            mib(res["volume_bytes"]), mib(pr.get("preserved_after_c"))))
    w("")
    w("Snapshot series: %s snapshots per mode, one every %s ms (through servers 1, 2, 3 in "
      "turn), under a steady load: 4 KiB random writes, 32 in flight, at most %s IOPS, on the "
      "first %s of the volume (every server's pages; each snapshot preserves at most that "
      "much); %s s of load per series" %
      (m.get("count"), m.get("gap_ms"), res["rate_iops"] or "unlimited",
       mib(res["span_bytes"]), m.get("series_s")))
    w("")
    w("| mode | made | pause p50 ms | p90 | p99 | max | peerctl p50 ms | max |")
    w("|---|---|---|---|---|---|---|---|")
    for key in ("hold", "timestamp"):
        s = res["series"][key]
        p, t = s["pause_ms"], s["wall_ms"]
        w("| %s | %d of %d | %s | %s | %s | %s | %s | %s |" %
          (key, s["ok"], s["ok"] + s["failed"], fmt(p["p50"]), fmt(p["p90"]), fmt(p["p99"]),
           fmt(p["max"]), fmt(t["p50"]), fmt(t["max"])))
    w("")
    w("| client during | IOPS | p50 us | p99 us | p99.9 us | max us | p99 / without | "
      "max / without |")
    w("|---|---|---|---|---|---|---|---|")
    for key, label in SERIES:
        s = res["series"][key]
        j = s["fio"]
        if not j:
            w("| %s | failed | | | | | | |" % label)
            continue
        w("| %s | %d | %s | %s | %s | %s | %s | %s |" %
          (label, j["iops"], fmt(j["p50_us"]), fmt(j["p99_us"]), fmt(j["p999_us"]),
           fmt(j["max_us"]), fmt(s.get("p99_ratio")), fmt(s.get("max_ratio"))))
    w("")
    for key in ("hold", "timestamp"):
        s = res["series"][key]
        w("%s, per snapshot: pause ms / client's max us in the seconds it took: %s" %
          (key, ", ".join("%s/%s" % (fmt(x["pause_ms"]), fmt(x["client_max_us"]))
                          for x in s["snapshots"])))
        if s["outside_fio"]:
            w("  (%d of them ran past the load: the machine was slower than the plan)" %
              s["outside_fio"])
    sp = res["space"]
    w("")

    def per_server(d):
        return "%s (servers %s)" % (mib(d["total"]), ", ".join(mib(x) for x in d["servers"])) \
            if d else "-"

    w("Space: DATA/snaps before the deletes %s for %s snapshots (%s preserved, as `snapshot "
      "list` counts it); after %s" % (per_server(sp["snaps_before"]), sp["snapshots_before"],
                                      mib(sp["preserved_before"]), per_server(sp["snaps_after"])))
    w("whole data directories: %s before, %s after" %
      (mib((sp["data_before"] or {}).get("total")), mib((sp["data_after"] or {}).get("total"))))
    d = sp["delete_ms"]
    w("%d snapshots deleted (oldest first) in %.1f s (each: p50 %s ms, max %s ms); their files "
      "gone %.1f s after the last delete; %d files and %s snapshots left" %
      (sp["deleted"], sp["delete_total_ms"] / 1000, fmt(d["p50"]), fmt(d["max"]),
       sp["freed_wait_ms"] / 1000, sp["snap_files_left"], fmt(sp["snapshots_left"])))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in")
    ap.add_argument("--from", dest="from_")
    ap.add_argument("--json")
    for k in ("size", "runtime", "elapsed", "build", "pv-env", "fused-opts", "loadavg",
              "command", "commit"):
        ap.add_argument("--" + k, default="")
    a = ap.parse_args()
    print(render(result(a, collect)))


if __name__ == "__main__":
    sys.exit(main())
