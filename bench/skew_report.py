#!/usr/bin/env python3
"""bench/skew_report.py: the report of scripts/bench --skew.

Reads the work directory of a run (meta, the sampler's samples.jsonl, fio's
per-second logs and JSON, the peerd logs), writes the JSON of the run and
an SVG of its time series, and prints the time series and the summary in
Markdown:

  skew_report.py --in WORKDIR/out/skew --json OUT.json --svg OUT.svg [facts...]
  skew_report.py --from OUT.json [--svg OUT.svg]   # print (and draw) a run again

Second 0 is the start of fio. Shares are each server's share of the
group's load as server 1 reports it (`peerctl load`: 10 s decaying rates,
the figures the rebalancer judges by), sampled at the end of each second.
Client figures are fio's: IOPS (reads + writes) per second from its IOPS
log, mean and p99 completion latency from its per-second latency histogram
(the p99 of a phase from the histograms of its seconds merged). A move is
decided at its "rebalance:" log line and runs from its "moving" line to its
"moved" line (the source's log).

The rebalancer is off for the first seconds (before), then on. A server is
over when its share exceeds its fair share x (1 + balance.threshold). The
group has converged at the first second from which no server is over and
no move is decided or runs until the end of the run; "during" is from
balance on to that second, "after" the rest.
"""
import argparse
import json
import math
import os
import re
import sys
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # no __pycache__ in bench/ for the import below
from migrate_report import read_meta, read_moves, result, run_facts, ts_ms  # noqa: E402

REBALANCE = re.compile(r"^(\S+)Z .*rebalance: (\S+) page (\d+) (\d+)->(\d+): server \d+ carries "
                       r"(\d+)% of the load, fair share (\d+)%, page \d+ carries (\d+)%")
COLORS = {1: "#d62728", 2: "#1f77b4", 3: "#2ca02c"}


def plat_val(idx):
    """The middle of fio's latency histogram bin idx (fio's plat_idx_to_val,
    6 bits per power of two), in the log's unit (ns)."""
    if idx < 128:
        return idx
    bits = (idx >> 6) - 1
    return (1 << (bits + 6)) + (idx % 64 + 0.5) * (1 << bits)


def hist_stats(bins):
    """(count, mean, p99) of a merged histogram, latencies in microseconds."""
    n = sum(bins)
    if not n:
        return 0, None, None
    mean = sum(c * plat_val(i) for i, c in enumerate(bins) if c) / n / 1000
    acc = 0
    for i, c in enumerate(bins):
        acc += c
        if acc >= 0.99 * n:
            return n, round(mean), round(plat_val(i) / 1000)
    return n, round(mean), None


def second_of(ts, t0):
    """The second of the run a fio log entry (stamped at the end of its
    1000 ms window) covers."""
    return round((ts - t0) / 1000) - 1


def read_fio_logs(indir, t0):
    """{second: {"read": IOs, "write": IOs, "bins": histogram}} from fio's logs."""
    secs = {}
    path = os.path.join(indir, "skew_iops.1.log")
    for line in open(path) if os.path.exists(path) else []:
        f = [x.strip() for x in line.split(",")]
        if len(f) >= 3:
            s = secs.setdefault(second_of(int(f[0]), t0), {"read": 0, "write": 0, "bins": None})
            s["read" if f[2] == "0" else "write"] += int(f[1])
    path = os.path.join(indir, "skew_clat_hist.1.log")
    for line in open(path) if os.path.exists(path) else []:
        f = [int(x) for x in line.split(",")]
        s = secs.setdefault(second_of(f[0], t0), {"read": 0, "write": 0, "bins": None})
        b = f[3:]
        s["bins"] = b if s["bins"] is None else [x + y for x, y in zip(s["bins"], b)]
    return secs


def fio_start(indir, meta):
    """When fio's job started (wall ms): the end of its JSON report less its
    runtime; else a second before its first IOPS entry; else when the
    script started fio (fio itself takes up to seconds to start on a busy
    machine)."""
    path = os.path.join(indir, "skew.json")
    try:
        d = json.load(open(path))
        return int(d["timestamp_ms"]) - int(d["jobs"][0]["job_runtime"])
    except (OSError, ValueError, KeyError, IndexError):
        pass
    path = os.path.join(indir, "skew_iops.1.log")
    try:
        return int(open(path).readline().split(",")[0]) - 1000
    except (OSError, ValueError):
        return int(meta["fio_start_ms"])


def read_decisions(indir):
    """Every rebalance decision in the peerd logs, by time."""
    out = []
    for n in (1, 2, 3):
        path = os.path.join(indir, "peerd%d.log" % n)
        for line in open(path, errors="replace") if os.path.exists(path) else []:
            m = REBALANCE.match(line)
            if m:
                out.append({"ms": ts_ms(m.group(1)), "volume": m.group(2),
                            "page": int(m.group(3)), "from": int(m.group(4)),
                            "to": int(m.group(5)), "share": int(m.group(6)),
                            "fair": int(m.group(7)), "page_share": int(m.group(8)),
                            "refused": ": refused: " in line})
    return sorted(out, key=lambda d: d["ms"])


def read_samples(indir):
    path = os.path.join(indir, "samples.jsonl")
    out = []
    for line in open(path) if os.path.exists(path) else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def phase(series, a, b):
    """Client figures over seconds [a, b)."""
    rows = [r for r in series if a <= r["t"] < b and r.get("ios")]
    if not rows:
        return None
    bins = None
    for r in rows:
        bins = r["bins"] if bins is None else [x + y for x, y in zip(bins, r["bins"])]
    n, mean, p99 = hist_stats(bins) if bins else (0, None, None)
    return {"from_s": a, "to_s": b, "seconds": len(rows),
            "iops": round(sum(r["ios"] for r in rows) / len(rows)), "mean_us": mean,
            "p99_us": p99}


def collect(a):
    indir = a.__dict__["in"]
    meta = read_meta(os.path.join(indir, "meta"))
    facts = dict(run_facts(a, "skew", meta), status=meta.get("status", "failed"))
    if facts["status"] != "ok" or "balance_on_ms" not in meta:
        return dict(facts, status="failed", reason=meta.get("reason", "the run did not start"))
    t0 = fio_start(indir, meta)
    on_s = (int(meta["balance_on_ms"]) - t0) / 1000
    end_s = (int(meta.get("fio_end_ms") or t0) - t0) / 1000
    page_size = int(meta.get("page_size", "0") or 0)
    samples = read_samples(indir)
    fio = read_fio_logs(indir, t0)
    threshold = next((s["balance"]["threshold"] for s in samples
                      if s.get("balance", {}).get("threshold") is not None), 0.25)

    # one row per second: the last sample taken in it, fio's figures of it
    nsec = max([int(end_s)] + [k + 1 for k in fio])
    by_sec = {}
    for s in samples:
        by_sec[int((s["t_ms"] - t0) // 1000)] = s
    series = []
    for t in range(nsec):
        row = {"t": t}
        s = by_sec.get(t)
        if s and s.get("servers"):
            row["shares"] = {str(x["id"]): round(x["share"] or 0, 4) for x in s["servers"]}
            row["fair"] = {str(x["id"]): round(x["fair_share"] or 0, 4) for x in s["servers"]}
            row["over"] = [x["id"] for x in s["servers"] if x["fair_share"] and
                           (x["share"] or 0) > x["fair_share"] * (1 + threshold)]
        if s and s.get("balance"):
            row["state"] = s["balance"].get("state")
        if s and s.get("moves") is not None:
            row["moves_under_way"] = len({(m["volume"], m["page"]) for m in s["moves"]
                                          if m["state"] in ("queued", "starting", "copying",
                                                            "switching")})
        f = fio.get(t)
        if f:
            row["read_iops"], row["write_iops"] = f["read"], f["write"]
            row["ios"] = f["read"] + f["write"]
            if f["bins"]:
                row["bins"] = f["bins"]
                _, row["mean_us"], row["p99_us"] = hist_stats(f["bins"])
        series.append(row)

    # moves: decided (rebalance line), started and ended (migrate lines)
    decisions = read_decisions(indir)
    moves = []
    for m in read_moves(indir):
        d = [x for x in decisions if x["page"] == m["page"] and x["from"] == m["from"] and
             x["to"] == m["to"] and x["ms"] <= m["start_ms"] + 1000]
        e = dict(m, decided_ms=d[-1]["ms"] if d else None, reason=d[-1] if d else None,
                 bytes=m["pieces"] * m["piece_size"], ms=m["end_ms"] - m["start_ms"])
        e["decided_s"] = round((e["decided_ms"] - t0) / 1000, 1) if d else None
        e["start_s"] = round((m["start_ms"] - t0) / 1000, 1)
        e["end_s"] = round((m["end_ms"] - t0) / 1000, 1)
        moves.append(e)
    # the bytes each move copied, as the migrations list showed them last
    copied = {}
    for s in samples:
        for m in s.get("moves") or []:
            k = (m["page"], m["from"], m["to"])
            copied[k] = max(copied.get(k, 0), m.get("bytes_copied") or 0)
    for e in moves:
        e["bytes_copied_seen"] = copied.get((e["page"], e["from"], e["to"]))

    # converged: from this second on, no server over and no move
    last_move_s = max([e["end_s"] for e in moves] + [d_s for d_s in
                      ((x["ms"] - t0) / 1000 for x in decisions)] + [on_s])
    conv = None
    for row in reversed(series):
        if "over" not in row:  # no sample in that second
            continue
        if row["t"] < on_s or row["over"]:
            break
        if row["t"] >= last_move_s:
            conv = row["t"]
    first_below = next((r["t"] for r in series if r["t"] >= on_s and "over" in r and
                        not r["over"]), None)
    on_i = int(-(-on_s // 1))  # the first whole second with the rebalancer on
    summary = {
        "threshold": threshold, "max_mbps": next((x["max_mbps"] for x in samples
                                                  if x.get("max_mbps")), None),
        "balance_on_s": round(on_s, 1), "end_s": round(end_s, 1),
        "converged_s": conv, "time_to_converge_s": round(conv - on_s, 1) if conv is not None
        else None, "first_below_s": first_below,
        "moves": len(moves), "pages_moved": len({(e["volume"], e["page"]) for e in moves}),
        "bytes_moved": sum(e["bytes"] for e in moves),
        "max_moves_per_page": max([sum(1 for x in moves if x["page"] == e["page"])
                                   for e in moves] or [0]),
        "moves_refused": sum(1 for d in decisions if d["refused"]),
        "moves_after_converged": sum(1 for e in moves if conv is not None and
                                     e["start_s"] >= conv),
        # whole seconds only; second 0: fio starting
        "phases": {"before": phase(series, 1, math.floor(on_s)),
                   "during": phase(series, on_i, conv if conv is not None else nsec),
                   "after": phase(series, conv, nsec) if conv is not None else None},
    }
    shares1 = [r["shares"].get("1") for r in series if "shares" in r]
    before = [r["shares"]["1"] for r in series if "shares" in r and 3 <= r["t"] < on_s]
    summary["share_1"] = {"before_mean": round(sum(before) / len(before), 3) if before else None,
                          "end": shares1[-1] if shares1 else None}
    fj = os.path.join(indir, "skew.json")
    total = None
    if os.path.exists(fj):
        j = json.load(open(fj))["jobs"][0]
        total = {"iops": round(j["read"]["iops"] + j["write"]["iops"]),
                 "read_p99_us": round(j["read"]["clat_ns"]["percentile"]["99.000000"] / 1000),
                 "write_p99_us": round(j["write"]["clat_ns"]["percentile"]["99.000000"] / 1000)}
    for row in series:
        row.pop("bins", None)
    return dict(facts, page_size=page_size, summary=summary, fio_total=total, moves=moves,
                decisions=decisions, series=series)


def pct(v):
    return "-" if v is None else "%.0f%%" % (v * 100)


def move_marks(res):
    """{second: [text, ...]}: each move's decision, start and end."""
    marks = {}
    for e in res["moves"]:
        name = "p%d %d->%d" % (e["page"], e["from"], e["to"])
        if e["decided_s"] is not None:
            r = e["reason"]
            marks.setdefault(int(e["decided_s"]), []).append(
                "decided %s (server %d at %d%%, page %d%%)" % (name, r["from"], r["share"],
                                                              r["page_share"]))
        marks.setdefault(int(e["end_s"]), []).append("moved %s in %d ms" % (name, e["ms"]))
    return marks


def render(res):
    if res["status"] != "ok":
        return "peervol skewed-load benchmark: FAILED: %s" % res.get("reason")
    out = []
    w = out.append
    s, m = res["summary"], res["meta"]
    w("peervol skewed-load benchmark (%s, %s, %s CPUs), commit %s" %
      (res["host"], res["date"], res["cpus"], res["commit"]))
    w("command: %s; volume %s, pages of %d KiB; hot pages %s (server 1's); balance.interval "
      "%s, threshold %.2f; migrate.max-mbps %s; rebalancer off for %.1f s, then on; fio ran "
      "%.1f s" % (res["command"], res["size"], res["page_size"] // 1024, m.get("hot_pages"),
                  m.get("interval"), s["threshold"], s["max_mbps"], s["balance_on_s"],
                  s["end_s"]))
    w("load average (1/5/15 min): %s" % res["loadavg"])
    w("")
    w("| s | server 1 | server 2 | server 3 | server 1's rebalancer | IOPS | mean us | p99 us "
      "| moves |")
    w("|---|---|---|---|---|---|---|---|---|")
    marks = move_marks(res)
    for r in res["series"]:
        sh = r.get("shares", {})
        cells = []
        for i in ("1", "2", "3"):
            c = pct(sh.get(i))
            cells.append("**%s**" % c if int(i) in r.get("over", []) else c)
        note = "; ".join(marks.get(r["t"], []))
        if int(s["balance_on_s"]) == r["t"]:
            note = "balance on" + ("; " + note if note else "")
        if s["converged_s"] == r["t"]:
            note = "converged" + ("; " + note if note else "")
        w("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" %
          (r["t"], cells[0], cells[1], cells[2], r.get("state", "-"), r.get("ios", "-"),
           r.get("mean_us", "-"), r.get("p99_us", "-"), note))
    w("")
    w("(bold: over its fair share x (1 + %.2f))" % s["threshold"])
    w("")
    if s["converged_s"] is not None:
        w("converged %.1f s after the rebalancer was turned on (second %d; a share first under "
          "the threshold at second %s); %d moves after that" %
          (s["time_to_converge_s"], s["converged_s"], s["first_below_s"],
           s["moves_after_converged"]))
    else:
        w("did NOT converge within the run (a share first under the threshold at second %s)" %
          s["first_below_s"])
    w("server 1's share: %s before, %s at the end" % (pct(s["share_1"]["before_mean"]),
                                                      pct(s["share_1"]["end"])))
    w("moves: %d (%d pages, at most %d per page), %.1f MiB moved, %d refused" %
      (s["moves"], s["pages_moved"], s["max_moves_per_page"], s["bytes_moved"] / 2**20,
       s["moves_refused"]))
    for e in res["moves"]:
        w("- %s page %d %d->%d: decided at %s s, moved %.1f-%.1f s (%d ms, %d pieces of %d "
          "KiB)%s" % (e["volume"], e["page"], e["from"], e["to"], e["decided_s"], e["start_s"],
                     e["end_s"], e["ms"], e["pieces"], e["piece_size"] // 1024,
                     "; reason: server %d carries %d%%, fair share %d%%, page %d%%" %
                     (e["reason"]["from"], e["reason"]["share"], e["reason"]["fair"],
                      e["reason"]["page_share"]) if e["reason"] else ""))
    w("")
    w("| client (fio) | seconds | IOPS | mean us | p99 us |")
    w("|---|---|---|---|---|")
    for name in ("before", "during", "after"):
        p = s["phases"].get(name)
        if p:
            w("| %s (%s-%s s) | %d | %d | %s | %s |" % (name, p["from_s"], p["to_s"],
                                                       p["seconds"], p["iops"], p["mean_us"],
                                                       p["p99_us"]))
        else:
            w("| %s | - | - | - | - |" % name)
    if res.get("fio_total"):
        t = res["fio_total"]
        w("")
        w("whole run (fio): %d IOPS, p99 read %d us, write %d us" %
          (t["iops"], t["read_p99_us"], t["write_p99_us"]))
    return "\n".join(out)


# ---- the image ----

W, LEFT, RIGHT, PANEL_H, GAP, TOP = 980, 70, 80, 170, 46, 74


def nice(v):
    """The smallest of 1, 2, 2.5, 5 x 10^k at least v (v > 0)."""
    k = 10 ** math.floor(math.log10(v))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= v)


def svg(res):
    s = res["summary"]
    series = res["series"]
    n = max(len(series), 1)
    xw = W - LEFT - RIGHT
    x = lambda t: LEFT + t / n * xw  # noqa: E731
    o = []
    h = TOP + 3 * (PANEL_H + GAP) + 30
    o.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'font-family="sans-serif" font-size="11">' % (W, h))
    o.append('<rect width="100%" height="100%" fill="white"/>')
    title = "peervol skewed load: %s hot pages of server 1, rebalancer on at %.0f s, %s, %s" % (
        len(res["meta"].get("hot_pages", "").split()), s["balance_on_s"], res["host"],
        res["date"][:16])
    o.append('<text x="10" y="20" font-size="14" font-weight="bold">%s</text>' % escape(title))
    sub = ("converged %.0f s after balance on; %d moves, %.0f MiB; commit %s" %
           (s["time_to_converge_s"], s["moves"], s["bytes_moved"] / 2**20, res["commit"])
           if s["converged_s"] is not None else
           "not converged within the run; %d moves; commit %s" % (s["moves"], res["commit"]))
    o.append('<text x="10" y="38">%s</text>' % escape(sub))

    def panel(i, label, lines, ymax, fmt, hlines=()):
        y0 = TOP + i * (PANEL_H + GAP)
        y = lambda v: y0 + PANEL_H - min(v, ymax) / ymax * PANEL_H  # noqa: E731
        o.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (LEFT, y0 - 6,
                                                                         escape(label)))
        # rebalancer off: grey; converged: green
        o.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="#eeeeee"/>' %
                 (LEFT, y0, x(s["balance_on_s"]) - LEFT, PANEL_H))
        if s["converged_s"] is not None:
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e8f5e9"/>' %
                     (x(s["converged_s"]), y0, x(n) - x(s["converged_s"]), PANEL_H))
        for k in range(5):
            v = ymax * k / 4
            o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#dddddd"/>' %
                     (LEFT, W - RIGHT, y(v), y(v)))
            o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' %
                     (LEFT - 4, y(v) + 4, fmt(v)))
        for v, color, text in hlines:
            o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" '
                     'stroke-dasharray="5,3"/>' % (LEFT, W - RIGHT, y(v), y(v), color))
            o.append('<text x="%d" y="%.1f" fill="%s">%s</text>' %
                     (W - RIGHT + 4, y(v) + 4, color, escape(text)))
        for e in res["moves"]:
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ff7f0e" '
                     'fill-opacity="0.5"/>' % (x(e["start_s"]), y0,
                                               max(x(e["end_s"]) - x(e["start_s"]), 1.5),
                                               PANEL_H))
            if e["decided_s"] is not None:
                o.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ff7f0e" '
                         'stroke-dasharray="2,2"/>' % (x(e["decided_s"]), x(e["decided_s"]),
                                                       y0, y0 + PANEL_H))
            if i == 0:
                o.append('<text x="%.1f" y="%d" fill="#b35900" font-size="10">p%d %d&#8594;%d'
                         '</text>' % (x(e["start_s"]) + 2, y0 + 10, e["page"], e["from"],
                                      e["to"]))
        for pts, color, name in lines:
            if pts:
                o.append('<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>' %
                         (color, " ".join("%.1f,%.1f" % (x(t + 0.5), y(v)) for t, v in pts)))
        # the legend on the title's line, at the right
        lx = W - RIGHT - sum(25 + 7 * len(name) for _, _, name in lines)
        for _, color, name in lines:
            o.append('<rect x="%d" y="%d" width="10" height="3" fill="%s"/>' %
                     (lx, y0 - 10, color))
            o.append('<text x="%d" y="%d">%s</text>' % (lx + 13, y0 - 6, escape(name)))
            lx += 25 + 7 * len(name)
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888888"/>' %
                 (LEFT, y0, xw, PANEL_H))
        return y0

    fair = next((r["fair"].get("1") for r in series if r.get("fair")), 1 / 3)
    shares = [([(r["t"], r["shares"][str(i)]) for r in series if str(i) in r.get("shares", {})],
               COLORS[i], "server %d" % i) for i in (1, 2, 3)]
    panel(0, "share of the group's load (10 s rates, as server 1 reports them)", shares, 1.0,
          lambda v: "%.0f%%" % (v * 100),
          [(fair, "#555555", "fair share"),
           (fair * (1 + s["threshold"]), "#aa0000", "threshold")])
    iops = [(r["t"], r["ios"]) for r in series if r.get("ios")]
    top = nice(max([v for _, v in iops] or [1]))
    panel(1, "client IOPS (fio, 4 KiB random 70/30 reads/writes, 16 in flight)",
          [(iops, "#333333", "IOPS")], top,
          lambda v: "%gK" % (v / 1000) if top >= 10000 and v else "%.0f" % v)
    p99 = [(r["t"], r["p99_us"]) for r in series if r.get("p99_us")]
    mean = [(r["t"], r["mean_us"]) for r in series if r.get("mean_us")]
    top = nice(max([v for _, v in p99] or [1]))
    y0 = panel(2, "client completion latency per second (ms)",
               [(p99, "#9467bd", "p99"), (mean, "#8c564b", "mean")], top,
               lambda v: "%g" % round(v / 1000, 2))
    ya = y0 + PANEL_H + 16
    step = max(1, int(nice(n / 12)))
    for t in range(0, n + 1, step):
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x(t), ya, t))
    o.append('<text x="%d" y="%d" text-anchor="middle">seconds since fio started (grey: '
             'rebalancer off; orange: a page moving, dashed: decided; green: converged)</text>'
             % (LEFT + xw // 2, ya + 16))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in")
    ap.add_argument("--from", dest="from_")
    ap.add_argument("--json")
    ap.add_argument("--svg")
    for k in ("size", "runtime", "elapsed", "build", "pv-env", "fused-opts", "loadavg",
              "command", "commit"):
        ap.add_argument("--" + k, default="")
    a = ap.parse_args()
    res = result(a, collect)
    if a.svg and res["status"] == "ok":
        with open(a.svg, "w") as f:
            f.write(svg(res))
    print(render(res))


if __name__ == "__main__":
    sys.exit(main())
