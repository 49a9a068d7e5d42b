#!/usr/bin/env python3
"""chart.py: a bar chart (SVG) of one scripts/bench results JSON: one panel
per fio profile, one bar per system; rand-rw bars are split into reads and
writes. Standard library only.

    python3 bench/chart.py bench/results/<run>.json [-o out.svg]
"""

import json
import sys
from xml.sax.saxutils import escape

PROFILES = [("seq-write", "seq-write, 1 MiB, QD8 (MB/s)"),
            ("seq-read", "seq-read, 1 MiB, QD8 (MB/s)"),
            ("rand-read", "rand-read, 4 KiB, QD32 (IOPS)"),
            ("rand-write", "rand-write, 4 KiB, QD32 (IOPS)"),
            ("rand-rw", "rand-rw 70/30, 4 KiB, QD16 (IOPS, reads + writes)")]
COLORS = {"kernel": "#7f7f7f", "fuse": "#bcbd22", "nbd": "#1f77b4", "pv1": "#d62728",
          "pv3": "#ff7f0e"}
WIDTH = 760
LABEL_W = 230
BAR_AREA = 400
BAR_H = 16
GAP = 5


def fmt(v):
    if v >= 10000:
        return "%.1fK" % (v / 1000)
    return "%.0f" % v


def svg(res):
    systems = res["systems"]
    out = []
    y = 40
    panel_h = 28 + len(systems) * (BAR_H + GAP) + 12
    height = y + panel_h * len(PROFILES) + 10
    out.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
               'font-family="sans-serif" font-size="12">' % (WIDTH, height))
    out.append('<rect width="100%" height="100%" fill="white"/>')
    title = "peervol bench, %s, %s, %s (loop direct-io %s, %s s/job)" % (
        res.get("mode", ""), res.get("host", ""), res.get("date", "")[:16],
        res.get("loop_direct_io", ""), res.get("runtime_s", ""))
    out.append('<text x="10" y="22" font-size="14" font-weight="bold">%s</text>' % escape(title))
    for pid, ptitle in PROFILES:
        vals = []
        for s in systems:
            r = s.get("profiles", {}).get(pid, {}) if s.get("status") == "ok" else {}
            vals.append(r.get("value") or 0)
        top = max(vals) if vals and max(vals) > 0 else 1
        out.append('<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 16, escape(ptitle)))
        by = y + 26
        for s, v in zip(systems, vals):
            out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (
                LABEL_W - 6, by + BAR_H - 4, escape(s.get("label", s["id"]))))
            color = COLORS.get(s["id"], "#999999")
            if s.get("status") != "ok":
                out.append('<text x="%d" y="%d" fill="#999999">%s</text>' % (
                    LABEL_W + 4, by + BAR_H - 4, escape(s.get("status", ""))))
            elif pid == "rand-rw" and v:
                r = s["profiles"][pid]
                wr = r["read"]["iops"] / top * BAR_AREA
                ww = r["write"]["iops"] / top * BAR_AREA
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (
                    LABEL_W, by, wr, BAR_H, color))
                out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                           'fill-opacity="0.45"/>' % (LABEL_W + wr, by, ww, BAR_H, color))
                out.append('<text x="%.1f" y="%d">%s r / %s w</text>' % (
                    LABEL_W + wr + ww + 4, by + BAR_H - 4, fmt(r["read"]["iops"]),
                    fmt(r["write"]["iops"])))
            else:
                w = v / top * BAR_AREA
                out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (
                    LABEL_W, by, w, BAR_H, color))
                out.append('<text x="%.1f" y="%d">%s</text>' % (
                    LABEL_W + w + 4, by + BAR_H - 4, fmt(v) if v else "error"))
            by += BAR_H + GAP
        y += panel_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    with open(sys.argv[1]) as f:
        res = json.load(f)
    text = svg(res)
    if len(sys.argv) >= 4 and sys.argv[2] == "-o":
        with open(sys.argv[3], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
