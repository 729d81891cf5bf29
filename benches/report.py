#!/usr/bin/env python3
"""Usage: python3 benches/report.py [--criterion DIR] [--out DIR] [--order PREFIX[,PREFIX...]] [--group-prefix P ...] [--unit ev]
Reads criterion's */new/{benchmark,estimates}.json; writes one SVG bar chart per group plus tables.md to --out (default <workspace>/perf)."""

# Standard library only (no matplotlib). Charts are hand-written SVG.
#
# Data model: every `<criterion dir>/**/new/benchmark.json` that has a sibling
# `estimates.json` is one benchmark. Directory names are never interpreted;
# group, function and parameter come from benchmark.json. Figures use the
# MEDIAN estimate (ns per iteration) and its 95% confidence interval.

import argparse
import json
import math
import os
import re
import sys
import urllib.parse
from xml.sax.saxutils import escape as _xml_escape

HINDSIGHT = "hindsight"
HINDSIGHT_COLOUR = "#e8590c"  # strong orange; no other palette entry is orange/red
PALETTE = [
    "#1f77b4",  # blue
    "#2ca02c",  # green
    "#9467bd",  # purple
    "#17becf",  # cyan
    "#8c564b",  # brown
    "#bcbd22",  # olive
    "#e377c2",  # pink
    "#393b79",  # dark indigo
    "#637939",  # dark olive
    "#6b6ecf",  # periwinkle
    "#5a9e9e",  # teal
    "#7f7f7f",  # grey
]

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(SCRIPT_DIR)


def warn(msg):
    print("report.py: warning: " + msg, file=sys.stderr)


# --------------------------------------------------------------------------
# formatting helpers


def natural_key(s):
    """Natural sort key: 'a2' < 'a10'. Never compares int with str."""
    if s is None:
        return ((-1, ""),)
    parts = re.split(r"(\d+(?:\.\d+)?)", str(s))
    key = []
    for p in parts:
        if p == "":
            continue
        if re.fullmatch(r"\d+(?:\.\d+)?", p):
            key.append((0, float(p), p))
        else:
            key.append((1, 0.0, p.lower()))
    return tuple(key)


def sig(x, digits):
    """Format x with `digits` significant digits, no exponent, no trailing junk."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    s = "%.*f" % (decimals, x)
    # rounding may have bumped a digit (9.999 -> 10.00): recompute once
    if len(s.replace("-", "").replace(".", "").lstrip("0")) > digits and decimals > 0:
        s = "%.*f" % (decimals - 1, x)
    return s


TIME_UNITS = [(1e9, "s"), (1e6, "ms"), (1e3, "\u00b5s"), (1.0, "ns")]


def time_unit(ns):
    for factor, unit in TIME_UNITS:
        if abs(ns) >= factor * 0.9995:  # so 999.96 ns -> "1.000 µs"
            return factor, unit
    return 1.0, "ns"


def fmt_time(ns, digits=4, unit=None):
    factor, name = unit if unit else time_unit(ns)
    return "%s %s" % (sig(ns / factor, digits), name)


SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def si_parts(x, digits=3):
    for factor, prefix in SI:
        if abs(x) >= factor * 0.9995:
            return sig(x / factor, digits), prefix
    return sig(x, digits), ""


def fmt_rate(per_sec, unit="", digits=3):
    """12400000 -> '12.4 M/s' (unit='') or '12.4 M ev/s' (unit='ev')."""
    num, prefix = si_parts(per_sec, digits)
    u = (unit + "/s") if unit else "/s"
    if prefix:
        return "%s %s%s%s" % (num, prefix, " " if unit else "", u)
    return "%s %s" % (num, u) if unit else "%s%s" % (num, u)


def fmt_bytes_rate(per_sec, binary):
    units = ["B", "KiB", "MiB", "GiB", "TiB"] if binary else ["B", "KB", "MB", "GB", "TB"]
    base = 1024.0 if binary else 1000.0
    i = 0
    while i < len(units) - 1 and per_sec >= base * 0.9995:
        per_sec /= base
        i += 1
    return "%s %s/s" % (sig(per_sec, 3), units[i])


def fmt_ratio(r):
    if not math.isfinite(r):
        return ""
    if r >= 100:
        return "%.0fx" % r
    if r >= 1:
        return "%.1fx" % r
    return "%sx" % sig(r, 2)


# --------------------------------------------------------------------------
# loading


class Bench:
    __slots__ = ("group", "function", "param", "elements", "bytes", "bytes_binary",
                 "median_ns", "lo_ns", "hi_ns", "full_id", "path")

    @property
    def rate(self):  # elements per second at the median, or None
        return self.elements / (self.median_ns * 1e-9) if self.elements else None

    def rate_ci(self):  # (low, high) elements/s from the median's CI
        return (self.elements / (self.hi_ns * 1e-9), self.elements / (self.lo_ns * 1e-9))


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_one(bench_path):
    d = os.path.dirname(bench_path)
    est_path = os.path.join(d, "estimates.json")
    try:
        with open(bench_path, encoding="utf-8") as f:
            meta = json.load(f)
        with open(est_path, encoding="utf-8") as f:
            est = json.load(f)
    except (OSError, ValueError) as e:
        warn("skipping %s: %s" % (d, e))
        return None
    if not isinstance(meta, dict) or not isinstance(est, dict):
        warn("skipping %s: unexpected JSON structure" % d)
        return None
    group = meta.get("group_id")
    if not isinstance(group, str) or not group:
        warn("skipping %s: no group_id in benchmark.json" % d)
        return None
    full_id = meta.get("full_id") if isinstance(meta.get("full_id"), str) else None
    param = meta.get("value_str")
    param = None if param is None or param == "" else str(param)
    function = meta.get("function_id")
    if not isinstance(function, str) or not function:
        # e.g. c.bench_function("name") outside a group: the id is the name.
        function = None
        if full_id and full_id.startswith(group + "/"):
            rest = full_id[len(group) + 1:]
            if param is not None and rest.endswith("/" + param):
                rest = rest[: -len(param) - 1]
            elif param is not None and rest == param:
                rest = ""
            function = rest or None
        if function is None:
            function = group
    med = est.get("median")
    try:
        point = med["point_estimate"]
        ci = med.get("confidence_interval") or {}
        lo, hi = ci.get("lower_bound", point), ci.get("upper_bound", point)
    except (TypeError, KeyError, AttributeError):
        warn("skipping %s: estimates.json has no median.point_estimate" % d)
        return None
    if not (_num(point) and point > 0):
        warn("skipping %s: median %r is not a positive number" % (d, point))
        return None
    if not (_num(lo) and _num(hi) and 0 < lo <= hi):
        warn("%s: odd confidence interval (%r, %r); using the point estimate" % (d, lo, hi))
        lo = hi = point
    b = Bench()
    b.group, b.function, b.param = group, function, param
    b.full_id = full_id or "/".join(x for x in (group, function, param) if x)
    b.median_ns, b.lo_ns, b.hi_ns = float(point), float(lo), float(hi)
    b.elements, b.bytes, b.bytes_binary = None, None, True
    b.path = d
    tp = meta.get("throughput")
    if isinstance(tp, dict):
        el = tp.get("Elements")
        if isinstance(tp.get("ElementsAndBytes"), dict):
            el = tp["ElementsAndBytes"].get("elements")
        if _num(el) and el > 0:
            b.elements = float(el)
        for key, binary in (("Bytes", True), ("BytesDecimal", False)):
            if _num(tp.get(key)) and tp[key] > 0:
                b.bytes, b.bytes_binary = float(tp[key]), binary
        if b.elements is None and b.bytes is None and tp:
            warn("%s: unrecognised throughput %r; using time" % (d, tp))
    elif tp is not None:
        warn("%s: unrecognised throughput %r; using time" % (d, tp))
    return b


def load_all(root):
    benches = []
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(x for x in dirnames if x not in ("report", "base", "change"))
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in filenames:
            continue
        if "estimates.json" not in filenames:
            warn("skipping %s: no estimates.json" % dirpath)
            continue
        b = load_one(os.path.join(dirpath, "benchmark.json"))
        if b is None:
            continue
        key = (b.group, b.function, b.param)
        if key in seen:
            warn("duplicate benchmark %s in %s and %s; keeping the first" % (b.full_id, seen[key], dirpath))
            continue
        seen[key] = dirpath
        benches.append(b)
    return benches


# --------------------------------------------------------------------------
# colours


def colour_map(function_ids):
    """Deterministic: hindsight fixed; others by position in the sorted id list."""
    cmap = {HINDSIGHT: HINDSIGHT_COLOUR}
    others = sorted(set(function_ids) - {HINDSIGHT}, key=natural_key)
    for i, fid in enumerate(others):
        if i < len(PALETTE):
            cmap[fid] = PALETTE[i]
        else:  # golden-angle hues, skipping the orange/red band used by hindsight
            h = (60 + (i - len(PALETTE)) * 137.508) % 300 + 45
            cmap[fid] = hsl_hex(h, 0.45, 0.45)
    return cmap


def hsl_hex(h, s, l):
    c = (1 - abs(2 * l - 1)) * s
    x = c * (1 - abs((h / 60.0) % 2 - 1))
    m = l - c / 2
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h // 60) % 6]
    return "#%02x%02x%02x" % tuple(int(round((v + m) * 255)) for v in (r, g, b))


# --------------------------------------------------------------------------
# ordering


def order_groups(groups, order_prefixes):
    def key(g):
        for i, p in enumerate(order_prefixes):
            if g.startswith(p):
                return (i, natural_key(g))
        return (len(order_prefixes), natural_key(g))
    return sorted(groups, key=key)


def order_rows(rows):
    """Grouped by parameter (natural order); hindsight first within a parameter."""
    return sorted(rows, key=lambda b: (natural_key(b.param), b.function != HINDSIGHT, natural_key(b.function)))


def group_uses_rate(rows):
    return all(b.elements for b in rows)


# --------------------------------------------------------------------------
# SVG


def x(s):
    return _xml_escape(str(s), {'"': "&quot;"})


def text_width(s, size):
    """Rough width in px of sans-serif text."""
    w = 0.0
    for ch in str(s):
        if ch in "il.,:;|!'`":
            w += 0.3
        elif ch in "mwMW":
            w += 0.85
        elif ch.isupper() or ch.isdigit():
            w += 0.62
        else:
            w += 0.55
    return w * size


def nice_step(span, n=5):
    raw = span / float(n)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def render_svg(group, rows, cmap, unit):
    use_rate = group_uses_rate(rows)
    rows = order_rows(rows)
    has_params = any(b.param is not None for b in rows)

    def val(b):
        return b.rate if use_rate else b.median_ns

    def ci(b):
        return b.rate_ci() if use_rate else (b.lo_ns, b.hi_ns)

    def label(b):
        return fmt_rate(b.rate, unit, 3) if use_rate else fmt_time(b.median_ns, 3)

    values = [val(b) for b in rows]
    vmin, vmax = min(values), max(values)
    lo_all = min([vmin] + [ci(b)[0] for b in rows])
    hi_all = max([vmax] + [ci(b)[1] for b in rows])
    log = vmax / vmin > 30

    # geometry
    W = 800
    font = 12
    left = 16 + max(text_width(b.function, font) for b in rows) + 10
    left = min(max(left, 90), 320)
    right_pad = 16 + max(text_width(label(b), font) for b in rows) + 8
    right_pad = min(max(right_pad, 90), 200)
    plot_x0, plot_x1 = left, W - right_pad
    plot_w = plot_x1 - plot_x0
    top = 52
    bar_h, bar_gap, group_gap, header_h = 20, 5, 12, 20

    # scale
    if log:
        d_lo = 10 ** math.floor(math.log10(lo_all) - 0.15)
        d_hi = 10 ** math.ceil(math.log10(hi_all))
        llo, lhi = math.log10(d_lo), math.log10(d_hi)

        def sx(v):
            v = max(v, d_lo)
            return plot_x0 + (math.log10(v) - llo) / (lhi - llo) * plot_w
        ticks = [10 ** e for e in range(int(round(llo)), int(round(lhi)) + 1)]
        minor = [m * 10 ** e for e in range(int(round(llo)), int(round(lhi))) for m in range(2, 10)]
        base = d_lo
    else:
        step = nice_step(hi_all)
        d_hi = math.ceil(hi_all / step - 1e-9) * step

        def sx(v):
            return plot_x0 + v / d_hi * plot_w
        ticks = [i * step for i in range(int(round(d_hi / step)) + 1)]
        minor = []
        base = 0.0

    def trim(num):
        return num.rstrip("0").rstrip(".") if "." in num else num

    def tick_label(v):
        if v == 0:
            return "0"
        if use_rate:
            num, prefix = si_parts(v, 3)
            return (trim(num) + " " + prefix).strip()
        factor, name = time_unit(v)
        return "%s %s" % (trim(sig(v / factor, 3)), name)

    # layout rows
    items = []  # (kind, y, payload)
    y = top
    current = object()
    for b in rows:
        if has_params and b.param != current:
            if items:
                y += group_gap
            current = b.param
            items.append(("header", y, b.param))
            y += header_h
        items.append(("bar", y, b))
        y += bar_h + bar_gap
    plot_y0, plot_y1 = top - 6, y
    H = int(plot_y1 + 58)

    out = []
    a = out.append
    a('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
      'font-family="sans-serif" font-size="%d">' % (W, H, W, H, font))
    a('<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (W, H))
    title = group + ("  (log scale)" if log else "")
    a('<text x="%d" y="28" font-size="17" font-weight="bold" fill="#222">%s</text>' % (16, x(title)))

    # grid + ticks
    for v in minor:
        px = sx(v)
        if plot_x0 <= px <= plot_x1:
            a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0" stroke-width="1"/>'
              % (px, plot_y0, px, plot_y1))
    for v in ticks:
        px = sx(v)
        a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd" stroke-width="1"/>'
          % (px, plot_y0, px, plot_y1))
        a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-width="1"/>'
          % (px, plot_y1, px, plot_y1 + 4))
        a('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="#444">%s</text>'
          % (px, plot_y1 + 17, x(tick_label(v))))
    a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-width="1"/>'
      % (plot_x0, plot_y1, plot_x1, plot_y1))
    a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-width="1"/>'
      % (plot_x0, plot_y0, plot_x0, plot_y1))

    if use_rate:
        axis_title = "throughput, %s/s at median time per iteration (higher is better)" % (unit or "elements")
    else:
        axis_title = "time per iteration, median (time, lower is better)"
    if log:
        axis_title += ", log scale"
    a('<text x="%.1f" y="%d" text-anchor="middle" font-size="12" fill="#333">%s</text>'
      % ((plot_x0 + plot_x1) / 2.0, H - 14, x(axis_title)))

    for kind, yy, p in items:
        if kind == "header":
            a('<text x="16" y="%.1f" font-weight="bold" fill="#333">%s</text>' % (yy + 14, x(p)))
            continue
        b = p
        v = val(b)
        x0, x1 = sx(base), sx(v)
        colour = cmap.get(b.function, "#999999")
        weight = ' font-weight="bold"' if b.function == HINDSIGHT else ""
        cy = yy + bar_h / 2.0
        a('<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="central" fill="#222"%s>%s</text>'
          % (plot_x0 - 8, cy, weight, x(b.function)))
        lo, hi = ci(b)
        tip = "%s: median %s, 95%% CI [%s, %s]" % (
            b.full_id, fmt_time(b.median_ns), fmt_time(b.lo_ns), fmt_time(b.hi_ns))
        if use_rate:
            tip += ", %s" % fmt_rate(b.rate, unit, 4)
        a('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>'
          % (x0, yy, max(x1 - x0, 1.0), bar_h, colour, x(tip)))
        # 95% CI whisker of the median
        wl, wh = sx(lo), sx(hi)
        if wh - wl >= 1.0:
            a('<g stroke="#333" stroke-width="1.2">'
              '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>'
              '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>'
              '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/></g>'
              % (wl, cy, wh, cy, wl, cy - 4, wl, cy + 4, wh, cy - 4, wh, cy + 4))
        a('<text x="%.1f" y="%.1f" dominant-baseline="central" fill="#222"%s>%s</text>'
          % (max(x1, wh) + 6, cy, weight, x(label(b))))

    a('</svg>')
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# markdown


def md(s):
    return str(s).replace("|", "\\|")


def render_table(group, rows, svg_rel, unit, heading="###"):
    rows = order_rows(rows)
    hs = {b.param: b for b in rows if b.function == HINDSIGHT}
    lines = ["%s %s" % (heading, group), "",
             "| benchmark | parameter | median | throughput | vs hindsight | median 95% CI |",
             "|---|---|--:|--:|--:|---|"]
    for b in rows:
        if b.elements:
            tput = fmt_rate(b.rate, "", 3)
        elif b.bytes:
            tput = fmt_bytes_rate(b.bytes / (b.median_ns * 1e-9), b.bytes_binary)
        else:
            tput = ""
        h = hs.get(b.param)
        if h is None:
            vs = ""
        elif h is b:
            vs = "1"
        elif h.elements and b.elements:
            vs = fmt_ratio(h.rate / b.rate)
        else:
            vs = fmt_ratio(b.median_ns / h.median_ns)
        unit_ = time_unit(b.median_ns)
        ci = "[%s, %s]" % (fmt_time(b.lo_ns, 4, unit_), fmt_time(b.hi_ns, 4, unit_))
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            md(b.function), md(b.param if b.param is not None else ""),
            fmt_time(b.median_ns, 4), tput, vs, ci))
    lines += ["", "![%s](%s)" % (md(group).replace("]", "\\]"), svg_rel), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------


def fill(target, by_group, svgs, out_dir, unit):
    """Replaces the marked regions of `target` with generated tables.

    A KEY that names no group but is the parent of some (`insert/1-thread`
    for `insert/1-thread/fresh` and `insert/1-thread/warm`) gets the table and
    chart of each of them, in natural order, under a heading of its own."""
    with open(target, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(r"(<!-- BEGIN (.+?) -->\n).*?(<!-- END \2 -->)", re.S)

    def table(group, heading="###"):
        rel = os.path.relpath(svgs[group], os.path.dirname(os.path.abspath(target)))
        return render_table(group, by_group[group], urllib.parse.quote(rel.replace(os.sep, "/")), unit, heading)

    def children(key):
        return sorted((g for g in by_group if g.startswith(key + "/")), key=natural_key)

    def region(m):
        key = m.group(2)
        if key.startswith("file:"):
            path = os.path.join(out_dir, key[5:] + ".md")
            if not os.path.exists(path):
                warn("%s: no %s; region left as it was" % (target, path))
                return m.group(0)
            with open(path, encoding="utf-8") as f:
                body = f.read().strip() + "\n"
        elif key in by_group:
            body = table(key)
            body = body.split("\n", 2)[2].strip() + "\n"  # drop the "### group" heading
        elif children(key):
            body = "\n".join(table(g, "####") for g in children(key)).strip() + "\n"
        else:
            warn("%s: no criterion group %r; region left as it was" % (target, key))
            return m.group(0)
        return m.group(1) + body + m.group(3)

    text, count = pattern.subn(region, text)
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    print("%s: %d regions filled" % (target, count), file=sys.stderr)


def default_criterion_dir():
    if os.environ.get("CRITERION_HOME"):
        return os.environ["CRITERION_HOME"]
    target = os.environ.get("CARGO_TARGET_DIR") or "target"
    return os.path.join(WORKSPACE, target, "criterion")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Charts (SVG) and markdown tables from criterion results.")
    ap.add_argument("--criterion", metavar="DIR", default=None,
                    help="criterion output dir (default: $CRITERION_HOME, else "
                         "<workspace>/${CARGO_TARGET_DIR:-target}/criterion)")
    ap.add_argument("--out", metavar="DIR", default=os.path.join(WORKSPACE, "perf"),
                    help="output dir for *.svg and tables.md (default: <workspace>/perf)")
    ap.add_argument("--order", metavar="PREFIXES", action="append", default=[],
                    help="group-id prefixes giving the group order, comma-separated or repeated; "
                         "unmatched groups follow; ties in natural order")
    ap.add_argument("--group-prefix", metavar="P", action="append", default=[],
                    help="only include groups whose id starts with P (repeatable)")
    ap.add_argument("--unit", default="ev", help="unit word for elements in chart labels (default: ev)")
    ap.add_argument("--fill", metavar="FILE", action="append", default=[],
                    help="in FILE, replace each region between '<!-- BEGIN KEY -->' and "
                         "'<!-- END KEY -->' with the table and chart of group KEY, or with "
                         "<out>/NAME.md for KEY 'file:NAME' (repeatable)")
    args = ap.parse_args(argv)

    root = args.criterion or default_criterion_dir()
    if not os.path.isdir(root):
        print("report.py: error: criterion directory not found: %s" % root, file=sys.stderr)
        return 2
    benches = load_all(root)
    if not benches:
        print("report.py: error: no benchmarks found under %s" % root, file=sys.stderr)
        return 1

    cmap = colour_map(b.function for b in benches)  # over all benches: stable under filtering
    by_group = {}
    for b in benches:
        if args.group_prefix and not any(b.group.startswith(p) for p in args.group_prefix):
            continue
        by_group.setdefault(b.group, []).append(b)
    if not by_group:
        print("report.py: error: no groups match --group-prefix %s" % args.group_prefix, file=sys.stderr)
        return 1
    order = [p for o in args.order for p in o.split(",") if p]
    groups = order_groups(by_group, order)

    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    tables_path = os.path.join(out_dir, "tables.md")
    written, used_names, sections, svgs = [], {}, [], {}
    for g in groups:
        name = re.sub(r"[/\\]", "-", g)
        name = re.sub(r"[\x00-\x1f<>:\"|?*]", "_", name) or "_"
        if name.lower() in used_names:
            n = 2
            while ("%s-%d" % (name, n)).lower() in used_names:
                n += 1
            warn("groups %r and %r map to the same file name; using %s-%d.svg"
                 % (used_names[name.lower()], g, name, n))
            name = "%s-%d" % (name, n)
        used_names[name.lower()] = g
        svg_path = os.path.join(out_dir, name + ".svg")
        with open(svg_path, "w", encoding="utf-8") as f:
            f.write(render_svg(g, by_group[g], cmap, args.unit))
        written.append(svg_path)
        svgs[g] = svg_path
        rel = os.path.relpath(svg_path, os.path.dirname(os.path.abspath(tables_path)))
        sections.append(render_table(g, by_group[g], urllib.parse.quote(rel.replace(os.sep, "/")), args.unit))

    with open(tables_path, "w", encoding="utf-8") as f:
        src = os.path.abspath(root)
        if src.startswith(WORKSPACE + os.sep):
            src = os.path.relpath(src, WORKSPACE).replace(os.sep, "/")
        f.write("<!-- generated by benches/report.py from %s; figures are criterion medians -->\n\n" % src)
        f.write("\n".join(sections))
    written.append(tables_path)
    for target in args.fill:
        fill(target, by_group, svgs, out_dir, args.unit)
        written.append(target)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
