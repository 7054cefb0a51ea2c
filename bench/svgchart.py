"""Small hand-written SVG charts for docs/benchmarks.md (no plotting library): grouped
horizontal bars (lootlog beside its peer and its ceiling) and a line over time."""
import html
import math

COLORS = {"lootlog": "#2b6cb0", "peer": "#dd6b20", "ceiling": "#718096"}
PALETTE = ["#63b3ed", "#f6ad55", "#38a169", "#805ad5", "#d53f8c"]


def color_of(series, order):
    """lootlog / peer / ceiling have fixed colours; other series names take the palette."""
    if series in COLORS:
        return COLORS[series]
    return PALETTE[order.index(series) % len(PALETTE)] if series in order else "#a0aec0"
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def nice_step(span, target_ticks=5):
    """A tick step of 1, 2 or 5 times a power of ten giving about target_ticks ticks."""
    if span <= 0:
        return 1
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def short(v):
    """A compact label: 1.2M, 35k, 0.85."""
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def _text(x, y, s, size=12, anchor="start", weight="normal", fill="#1a202c"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{html.escape(str(s))}</text>')


def bar_chart(title, groups, unit, note=None, width=760):
    """groups: [(label, [(series, value or None, value_label or None), ...]), ...] where
    series is "lootlog", "peer" or "ceiling" (or any name: grey). One shared linear scale."""
    label_w, right_pad, bar_h, gap, group_gap = 230, 90, 16, 3, 14
    top = 46
    values = [v for _, bars in groups for _, v, _ in bars if v is not None]
    vmax = max(values) if values else 1
    step = nice_step(vmax)
    axis_max = step * math.ceil(vmax / step) if vmax > 0 else 1
    plot_w = width - label_w - right_pad
    rows = sum(max(1, len(bars)) for _, bars in groups)
    height = top + rows * (bar_h + gap) + len(groups) * group_gap + 40 + (16 if note else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           _text(10, 20, title, 15, weight="bold")]
    used = []
    for _, bars in groups:
        used += [series for series, _, _ in bars if series not in used]
    others = [s for s in used if s not in COLORS]
    legend_x = 10
    for name in used:
        out.append(f'<rect x="{legend_x}" y="29" width="10" height="10" '
                   f'fill="{color_of(name, others)}"/>')
        out.append(_text(legend_x + 14, 38, name, 11))
        legend_x += 24 + 7 * len(name)
    plot_top = top
    plot_bottom = top + rows * (bar_h + gap) + (len(groups) - 1) * group_gap + 4
    tick = 0.0
    while tick <= axis_max + 1e-9:
        x = label_w + plot_w * tick / axis_max
        out.append(f'<line x1="{x:.1f}" y1="{plot_top - 4}" x2="{x:.1f}" y2="{plot_bottom}" '
                   f'stroke="#e2e8f0" stroke-width="1"/>')
        out.append(_text(x, plot_bottom + 14, short(tick), 10, anchor="middle", fill="#4a5568"))
        tick += step
    y = top
    for label, bars in groups:
        out.append(_text(label_w - 8, y + bar_h - 3, label, 12, anchor="end"))
        for series, value, value_label in bars or [("lootlog", None, None)]:
            color = color_of(series, others)
            if value is None:
                out.append(_text(label_w + 4, y + bar_h - 4, f"{series} {value_label or 'n/a'}",
                                 11, fill="#c53030"))
            else:
                w = max(1.0, plot_w * value / axis_max)
                out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                           f'fill="{color}"><title>{html.escape(series)}: {value}</title></rect>')
                out.append(_text(label_w + w + 4, y + bar_h - 4, value_label or short(value), 11))
            y += bar_h + gap
        y += group_gap
    out.append(_text(label_w + plot_w / 2, plot_bottom + 30, unit, 11, anchor="middle",
                     fill="#4a5568"))
    if note:
        out.append(_text(10, height - 6, note, 10, fill="#4a5568"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def line_chart(title, points, x_label, y_label, band=None, hline=None, note=None,
               width=760, height=320):
    """points: [(x, y)]. band: (x0, x1, label) shaded (e.g. while producing).
    hline: (y, label) dashed reference line (e.g. the goal)."""
    left, right, top, bottom = 70, 20, 40, 50 + (14 if note else 0)
    pw, ph = width - left - right, height - top - bottom
    xs = [p[0] for p in points] or [0, 1]
    ys = [p[1] for p in points] or [0]
    xmax = max(max(xs), band[1] if band else 0) or 1
    ymax = max(max(ys), hline[0] if hline else 0) or 1
    xstep, ystep = nice_step(xmax), nice_step(ymax)
    xmax, ymax = xstep * math.ceil(xmax / xstep), ystep * math.ceil(ymax / ystep)

    def px(x):
        return left + pw * x / xmax

    def py(y):
        return top + ph - ph * y / ymax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           _text(10, 20, title, 15, weight="bold")]
    if band:
        out.append(f'<rect x="{px(band[0]):.1f}" y="{top}" width="{px(band[1]) - px(band[0]):.1f}" '
                   f'height="{ph}" fill="#ebf8ff"/>')
        out.append(_text(px(band[0]) + 4, top + 12, band[2], 10, fill="#2c5282"))
    t = 0.0
    while t <= ymax + 1e-9:
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" '
                   f'stroke="#e2e8f0"/>')
        out.append(_text(left - 6, py(t) + 4, short(t), 10, anchor="end", fill="#4a5568"))
        t += ystep
    t = 0.0
    while t <= xmax + 1e-9:
        out.append(_text(px(t), top + ph + 14, short(t), 10, anchor="middle", fill="#4a5568"))
        t += xstep
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#4a5568"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#4a5568"/>')
    if hline:
        out.append(f'<line x1="{left}" y1="{py(hline[0]):.1f}" x2="{left + pw}" '
                   f'y2="{py(hline[0]):.1f}" stroke="#c53030" stroke-dasharray="6 4"/>')
        out.append(_text(left + pw - 4, py(hline[0]) - 4, hline[1], 10, anchor="end", fill="#c53030"))
    if points:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS["lootlog"]}" '
                   f'stroke-width="2"/>')
    out.append(_text(left + pw / 2, top + ph + 32, x_label, 11, anchor="middle", fill="#4a5568"))
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" {FONT} font-size="11" fill="#4a5568" '
               f'text-anchor="middle" transform="rotate(-90 14 {top + ph / 2:.1f})">'
               f'{html.escape(y_label)}</text>')
    if note:
        out.append(_text(10, height - 6, note, 10, fill="#4a5568"))
    out.append("</svg>")
    return "\n".join(out) + "\n"
