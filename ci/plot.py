#!/usr/bin/env python3
"""Bar charts (SVG) of the throughput bench's RESULT lines. Standard library only.

usage: cargo bench --bench throughput | python3 ci/plot.py -o bench.svg
       python3 ci/plot.py bench.txt -o bench.svg [--title TEXT]

One panel per (workload, unit): stream, stream-server, stream-client and churn in msgs/s (churn's are
connections/s), pingpong latency (p50/p99 in microseconds) and pingpong round trips/s; with the tls
feature, tls in msgs/s and payload bytes/s, tls-handshake in handshakes/s and tls-ceiling in bytes/s.
A TLS contender has the colour of its plain counterpart (the ceiling raw's); buffstreams-acked
(acknowledged delivery, stream and pingpong only) is a darker red than buffstreams-uring.
Bars are grouped by configuration (size, connections, server cores and, in a panel with more
than one, the loopback MTU), one colour per contender. A panel whose values span more than 50x
uses a logarithmic axis. Lines without `mtu=` (older output) count as one unnamed MTU.
"""

import argparse
import math
import re
import sys
from xml.sax.saxutils import escape

CONTENDERS = [
    "buffstreams-uring",
    "buffstreams-acked",
    "buffstreams-epoll",
    "tokio-ct",
    "tokio-mt",
    "tokio-uring-adapter",
    "monoio-adapter",
    "std",
    "raw",
    "buffstreams-tls",
    "tokio-rustls",
    "std-rustls",
    "aes128gcm-seal",
]
COLOURS = {
    "buffstreams-uring": "#d62728",
    "buffstreams-acked": "#8b0000",
    "buffstreams-epoll": "#ff9896",
    "tokio-ct": "#1f77b4",
    "tokio-mt": "#aec7e8",
    "tokio-uring-adapter": "#9467bd",
    "monoio-adapter": "#c5b0d5",
    "std": "#2ca02c",
    "raw": "#7f7f7f",
    "buffstreams-tls": "#d62728",
    "tokio-rustls": "#1f77b4",
    "std-rustls": "#2ca02c",
    "aes128gcm-seal": "#7f7f7f",
}
EXTRA_COLOURS = ["#8c564b", "#e377c2", "#bcbd22", "#17becf"]
WORKLOADS = [
    "stream", "stream-server", "stream-client", "churn", "pingpong", "tls", "tls-ceiling",
    "tls-handshake",
]
UNIT_TITLES = {
    "msgs_per_s": "messages/s (higher is better)",
    "rtts_per_s": "round trips/s (higher is better)",
    "rtt_us": "round-trip time, µs (lower is better)",
    "bytes_per_s": "payload bytes/s (higher is better)",
    "handshakes_per_s": "full handshakes/s (higher is better)",
}

RESULT = re.compile(r"^RESULT\s+(.*)$")

# Layout (px).
WIDTH_MIN = 720
PANEL_H = 260
MARGIN_L, MARGIN_R, MARGIN_T = 80, 20, 70
BAR_W, BAR_GAP, GROUP_GAP = 16, 2, 16
GROUP_MIN_W = 104  # room for the two-line group label
LABEL_H = 46


def parse(lines):
    """RESULT lines -> list of dicts (the last line wins for a repeated key)."""
    seen = {}
    for line in lines:
        m = RESULT.match(line.strip())
        if not m:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
        try:
            row = {
                "workload": fields["workload"],
                "size": int(fields["size"]),
                "conns": int(fields["conns"]),
                "cores": int(fields["cores"]),
                "contender": fields["contender"],
                "value": float(fields["value"]),
                "unit": fields["unit"],
                "mtu": int(fields["mtu"]) if "mtu" in fields else None,
            }
        except (KeyError, ValueError):
            print(f"plot.py: skipping malformed line: {line.strip()}", file=sys.stderr)
            continue
        key = tuple(
            row[k] for k in ("workload", "size", "conns", "cores", "mtu", "contender", "unit"))
        seen[key] = row
    return list(seen.values())


def human(v):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def size_label(b):
    if b >= 1024 and b % 1024 == 0:
        return f"{b // 1024} KiB"
    return f"{b} B"


def panels_of(rows):
    """[(title, unit_key, [(group_label, {contender: value})])] in a stable order."""
    panels = {}
    for r in rows:
        unit = r["unit"]
        unit_key = "rtt_us" if unit in ("rtt_p50_us", "rtt_p99_us") else unit
        pkey = (r["workload"], unit_key)
        group = (r["size"], r["conns"], r["cores"], r["mtu"], unit)
        # Dicts keep insertion order: panels and groups come out in the bench's own order.
        panels.setdefault(pkey, {}).setdefault(group, {})[r["contender"]] = r["value"]

    def wl_order(w):
        return WORKLOADS.index(w) if w in WORKLOADS else len(WORKLOADS)

    out = []
    for (workload, unit_key) in sorted(panels, key=lambda k: wl_order(k[0])):
        groups = []
        panel = panels[(workload, unit_key)]
        several_mtus = len({mtu for (_, _, _, mtu, _) in panel}) > 1
        for (size, conns, cores, mtu, unit) in panel:
            label = f"{size_label(size)} × {conns} conn"
            label += f"\n{cores} core" + ("s" if cores > 1 else "")
            if unit_key == "rtt_us":
                label += ", " + ("p50" if unit == "rtt_p50_us" else "p99")
            if several_mtus:
                label += f"\nMTU {mtu}" if mtu is not None else "\nMTU ?"
            groups.append((label, panel[(size, conns, cores, mtu, unit)]))
        what = "connections/s (higher is better)" if workload == "churn" else UNIT_TITLES.get(
            unit_key, unit_key)
        out.append((f"{workload}: {what}", unit_key, groups))
    return out


def group_width(vals):
    return max(GROUP_MIN_W, len(vals) * (BAR_W + BAR_GAP))


def contender_order(rows):
    names = [c for c in CONTENDERS if any(r["contender"] == c for r in rows)]
    names += sorted({r["contender"] for r in rows} - set(CONTENDERS))
    return names


def colour(name, order):
    if name in COLOURS:
        return COLOURS[name]
    extras = [c for c in order if c not in COLOURS]
    return EXTRA_COLOURS[extras.index(name) % len(EXTRA_COLOURS)]


class Axis:
    def __init__(self, values, height):
        lo, hi = min(values), max(values)
        self.height = height
        self.log = lo > 0 and hi / lo > 50
        if self.log:
            self.lo = 10 ** math.floor(math.log10(lo))
            self.hi = 10 ** math.ceil(math.log10(hi))
            if self.hi == self.lo:
                self.hi *= 10
            self.ticks = []
            t = self.lo
            while t <= self.hi * 1.0001:
                self.ticks.append(t)
                t *= 10
        else:
            self.lo = 0.0
            step = nice_step(hi / 5 if hi > 0 else 1)
            self.hi = step * math.ceil(hi / step) if hi > 0 else 1
            self.ticks = [i * step for i in range(int(round(self.hi / step)) + 1)]

    def y(self, v):
        """Distance from the axis bottom, in px."""
        if self.log:
            v = max(v, self.lo)
            frac = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            frac = (v - self.lo) / (self.hi - self.lo)
        return max(0.0, min(1.0, frac)) * self.height


def nice_step(raw):
    exp = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * exp:
            return m * exp
    return 10 * exp


def render(rows, title):
    order = contender_order(rows)
    panels = panels_of(rows)
    if not panels:
        raise SystemExit("plot.py: no RESULT lines in the input")

    def panel_width(groups):
        return sum(group_width(vals) + GROUP_GAP for _, vals in groups)

    width = max(WIDTH_MIN, MARGIN_L + MARGIN_R + max(panel_width(g) for _, _, g in panels))
    height = MARGIN_T + len(panels) * (PANEL_H + LABEL_H + 40)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    # Legend.
    x = MARGIN_L
    for name in order:
        out.append(f'<rect x="{x}" y="36" width="12" height="12" fill="{colour(name, order)}"/>')
        out.append(f'<text x="{x + 16}" y="46">{escape(name)}</text>')
        x += 24 + 7 * len(name)

    top = MARGIN_T
    for ptitle, _unit, groups in panels:
        plot_h = PANEL_H - 30
        base = top + 30 + plot_h
        values = [v for _, vals in groups for v in vals.values() if v > 0]
        axis = Axis(values or [1.0], plot_h)
        out.append(f'<text x="{MARGIN_L}" y="{top + 16}" font-size="13" '
                   f'font-weight="bold">{escape(ptitle)}'
                   f'{" (log scale)" if axis.log else ""}</text>')
        right = width - MARGIN_R
        for t in axis.ticks:
            y = base - axis.y(t)
            out.append(f'<line x1="{MARGIN_L}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
            out.append(f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{human(t)}</text>')
        out.append(f'<line x1="{MARGIN_L}" x2="{right}" y1="{base}" y2="{base}" '
                   f'stroke="#333"/>')
        x = MARGIN_L + GROUP_GAP / 2
        for label, vals in groups:
            names = [c for c in order if c in vals]
            gx, gw = x, group_width(vals)
            x += (gw - len(names) * (BAR_W + BAR_GAP)) / 2
            for name in names:
                v = vals[name]
                h = axis.y(v)
                out.append(
                    f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{BAR_W}" height="{h:.1f}" '
                    f'fill="{colour(name, order)}"><title>{escape(name)}: {human(v)}'
                    f'</title></rect>')
                tx, ty = x + BAR_W / 2 + 3, base - h - 3
                out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="9" '
                           f'transform="rotate(-90 {tx:.1f} {ty:.1f})">{human(v)}</text>')
                x += BAR_W + BAR_GAP
            mid = gx + gw / 2
            for i, part in enumerate(label.split("\n")):
                out.append(f'<text x="{mid:.1f}" y="{base + 14 + 12 * i}" '
                           f'text-anchor="middle" font-size="10">{escape(part)}</text>')
            x = gx + gw + GROUP_GAP
        top += PANEL_H + LABEL_H + 40
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", default="-", help="bench output (default: stdin)")
    ap.add_argument("-o", "--output", required=True, help="SVG file to write")
    ap.add_argument("--title", default="buffstreams throughput bench",
                    help="chart title")
    args = ap.parse_args()
    if args.input == "-":
        lines = sys.stdin.readlines()
    else:
        with open(args.input, encoding="utf-8") as f:
            lines = f.readlines()
    rows = parse(lines)
    svg = render(rows, args.title)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(svg)
    print(f"plot.py: {len(rows)} results -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
