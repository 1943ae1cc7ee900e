"""A report's figures drawn as SVG: pure functions from `domain.reports` data to markup.

The same markup serves the portal's reports page (inline, server-rendered, no script) and
the yearly PDF (fpdf2 draws it: `pdf.image(io.BytesIO(svg.encode()), w=...)`). So the
drawing keeps to what fpdf2 renders — `svg`, `g`, `rect`, `line`, `text`, every colour and
size an attribute, no stylesheet, no `<pattern>`, no clip path — and to a generic font
family unless the caller names one its PDF has registered (`font_family`). fpdf2 logs that
it passes over `<title>` and `<desc>` (a PDF prints its own headings); with only its core
fonts it has no "–" or "…", so a PDF writes Vietnamese — and these — in a registered font.

    figures (Report)  ──►  _Bars: categories × series, labels, scale
                                   │
          ┌────────────────────────┼───────────────────────┐
      _columns (months)     _rows (stages, parties)   _stacked (agencies)
          └────────────────────────┼───────────────────────┘
                                   ▼
             <svg role="img" aria-labelledby="… title … desc"> legend, axis, bars, labels

Words come from the caller, already in the reader's language (`ChartText`): the title and
description a screen reader announces, the legend, the names of stages, parties and
agencies, the axis, and what to say when there is nothing to draw. Numbers on the bars are
the caller's too (`number`, `percent`), so a Vietnamese page writes 85,7%.

Accessible by construction: `role="img"` named by `<title>` and described by `<desc>`;
every bar carries its figure as text beside it; series differ by fill *and* by hatching
(drawn as plain lines, which fpdf2 renders), in the legend's order, so nothing is told by
colour alone; every fill keeps at least 4.5:1 against white (the background and the labels
written inside segments). Sized by `viewBox` only: the chart scales to its container.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from domain.reports import AdoptionRow, OnTime, Spread, Volumes

WIDTH = 640  # viewBox units; the chart scales to its container
PAD = 8
FONT = 13  # category labels, legend, axis
SMALL = 12  # figures on the bars, ticks
INK = "#1b1b1b"  # the portal's text colour: 17:1 on white
MUTED = "#4a4a4a"
GRID = "#d0d0d0"  # decoration only: the figures are written on the bars

# Series styles in the legend's order: a fill at least 4.5:1 against white, and a hatching
# that differs from its neighbours', so series stay apart in greyscale and for readers who
# do not tell these colours apart.
PALETTE: tuple[tuple[str, str | None], ...] = (
    ("#0b4f8a", None),  # blue, solid
    ("#9a4a00", "rising"),  # brown-orange, ////
    ("#1d6b35", "falling"),  # green, \\\\
    ("#5c5c5c", "horizontal"),  # grey, ====
    ("#a3001b", "cross"),  # red, xxxx
    ("#5b3a8c", "vertical"),  # purple, ||||
)
# The answers on adoption as a reader expects them: adopted green, not adopted red.
ADOPTION_STYLES: tuple[tuple[str, str | None], ...] = (
    ("#1d6b35", None),  # adopted: green, solid
    ("#0b4f8a", "rising"),  # partially adopted: blue, ////
    ("#a3001b", "cross"),  # not adopted: red, xxxx
    ("#5c5c5c", "horizontal"),  # no answer: grey, ====
    ("#9a4a00", "falling"),  # awaiting: brown-orange, \\\\
)
HATCH_EVERY = 6  # units between hatch lines


@dataclass(frozen=True)
class ChartText:
    """What a chart says, in the reader's language.

    `title` and `description` name and describe the chart to a screen reader (and a PDF
    reader may print the title above it); `series` names the legend's entries in the
    chart's order; `names` maps a category's key (a stage, a party, an agency code) to its
    label, the key itself standing in for one it lacks; `axis` says what the values count;
    `empty` is said instead of bars when there is no figure at all; `missing` is
    written where a figure does not exist (no visit to measure, no deadline settled)."""

    title: str
    description: str
    series: Sequence[str] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    axis: str = ""
    empty: str = ""
    missing: str = "–"


def _plain(value: float) -> str:
    return f"{value:g}"


def _whole_percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


# --- the charts ----------------------------------------------------------------------------------


def requests_per_month(
    per_month: Mapping[str, Volumes],
    text: ChartText,
    *,
    chart_id: str = "chart-months",
    number: Callable[[float], str] = _plain,
    font_family: str = "sans-serif",
) -> str:
    """Requests received and completed in each month ("YYYY-MM" → Volumes, in order), as
    columns side by side, each month under its columns as "07" and its year under the first
    month and every January. `text.series`: the names of received and completed."""
    months = list(per_month)
    bars = _Bars(
        keys=months,
        labels=[m[5:7] for m in months],
        sublabels=[m[:4] if i == 0 or m[5:7] == "01" else "" for i, m in enumerate(months)],
        series=[
            [float(per_month[m].received) for m in months],
            [float(per_month[m].completed) for m in months],
        ],
        text=text,
        number=number,
    )
    return _columns(bars, chart_id, font_family)


def time_in_stage(
    stages: Mapping[str, Spread],
    text: ChartText,
    *,
    chart_id: str = "chart-stages",
    number: Callable[[float], str] = _plain,
    font_family: str = "sans-serif",
) -> str:
    """Median and p90 working days in each stage (stage → Spread, in the order to show),
    as pairs of bars. `text.series`: the names of the median and the p90; `text.names`:
    the stages'."""
    keys = list(stages)
    bars = _Bars(
        keys=keys,
        labels=[text.names.get(k, k) for k in keys],
        series=[
            [_maybe(stages[k].median) for k in keys],
            [_maybe(stages[k].p90) for k in keys],
        ],
        text=text,
        number=number,
    )
    return _rows(bars, chart_id, font_family)


def on_time_by_party(
    parties: Mapping[str, OnTime],
    text: ChartText,
    *,
    chart_id: str = "chart-on-time",
    percent: Callable[[float], str] = _whole_percent,
    font_family: str = "sans-serif",
) -> str:
    """Each party's on-time rate, 0 to 100 % (party → OnTime, in the order to show); a
    party with no deadline settled shows "–". `text.series`: one name (the rate);
    `text.names`: the parties'."""
    keys = list(parties)
    bars = _Bars(
        keys=keys,
        labels=[text.names.get(k, k) for k in keys],
        series=[[parties[k].rate for k in keys]],
        text=text,
        number=percent,
        top=1.0,
        ticks=[0.0, 0.25, 0.5, 0.75, 1.0],
    )
    return _rows(bars, chart_id, font_family)


ADOPTION_PARTS = ("adopted", "partially_adopted", "not_adopted", "no_answer", "awaiting")


def adoption_by_agency(
    agencies: Mapping[str, AdoptionRow],
    text: ChartText,
    *,
    chart_id: str = "chart-adoption",
    number: Callable[[float], str] = _plain,
    font_family: str = "sans-serif",
) -> str:
    """Conclusions delivered to each agency (code → AdoptionRow), stacked by the answer on
    adoption in `ADOPTION_PARTS`' order, the total at the end. `text.series`: the five
    answers' names; `text.names`: agency code → name."""
    keys = list(agencies)
    bars = _Bars(
        keys=keys,
        labels=[text.names.get(k, k) for k in keys],
        series=[[float(getattr(agencies[k], part)) for k in keys] for part in ADOPTION_PARTS],
        text=text,
        number=number,
        styles=ADOPTION_STYLES,
    )
    return _stacked(bars, chart_id, font_family)


def _maybe(value: int | None) -> float | None:
    return None if value is None else float(value)


# --- what every chart shares -----------------------------------------------------------------


@dataclass
class _Bars:
    keys: list[str]
    labels: list[str]
    series: list[list[float | None]]  # one list per series, one value per category
    text: ChartText
    number: Callable[[float], str]
    top: float | None = None  # the scale's end; None: from the figures
    ticks: list[float] | None = None
    styles: Sequence[tuple[str, str | None]] = PALETTE  # each series' fill and hatching
    sublabels: list[str] | None = None  # a second line under the labels (columns only)

    def style(self, series: int) -> tuple[str, str | None]:
        return self.styles[series % len(self.styles)]

    @property
    def empty(self) -> bool:
        """Nothing to draw: no category, or no figure at all. A zero is a figure (a stage
        left the day it was entered took 0 days) and is drawn, as a bar of no length."""
        return not self.keys or all(v is None for s in self.series for v in s)

    def scale(self, stacked: bool = False) -> tuple[float, list[float]]:
        """The value at the end of the axis and the ticks along it."""
        if self.top is not None and self.ticks is not None:
            return self.top, self.ticks
        if stacked:
            biggest = max(sum(v or 0 for v in column) for column in zip(*self.series, strict=True))
        else:
            biggest = max((v or 0) for s in self.series for v in s)
        return _nice_scale(biggest)


def _nice_scale(biggest: float) -> tuple[float, list[float]]:
    """Whole-number ticks, 1, 2 or 5 times a power of ten apart, at most six of them, the
    last at or above `biggest`."""
    if biggest <= 0:
        return 1.0, [0.0, 1.0]
    for magnitude in (10**k for k in range(0, 12)):
        for step in (1 * magnitude, 2 * magnitude, 5 * magnitude):
            n = math.ceil(biggest / step)
            if n <= 5:
                return float(n * step), [float(i * step) for i in range(n + 1)]
    raise ValueError(f"{biggest} is beyond any report's scale")


def _text_width(s: str, size: float, bold: bool = False) -> float:
    """An estimate of a string's width in a generic sans-serif: no font metrics are at hand
    (the browser or the PDF picks the font), so layouts leave room to spare."""
    return len(s) * size * (0.62 if bold else 0.58)


def _wrap(label: str, width: float, size: float, lines: int = 2) -> list[str]:
    """`label` in at most `lines` lines of about `width` units; what does not fit ends
    with an ellipsis (the table beside the chart has the whole name)."""
    out: list[str] = []
    words = label.split()
    current = ""
    for w in words:
        trial = f"{current} {w}".strip()
        if _text_width(trial, size) <= width or not current:
            current = trial
        else:
            out.append(current)
            current = w
    out.append(current)
    if len(out) > lines:
        out = out[:lines]
        out[-1] += "…"
    fitted = []
    for line in out:
        while _text_width(line, size) > width and len(line) > 2:
            line = line[:-2] + "…"
        fitted.append(line)
    return fitted


def _tint(colour: str, share: float = 0.4) -> str:
    """`colour` mixed with white: the hatching drawn over a fill."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in rgb)


def _f(v: float) -> str:
    """A coordinate, short: 12.5, 40."""
    return f"{round(v, 2):g}"


def _rect(
    x: float, y: float, w: float, h: float, style: tuple[str, str | None], **data: str
) -> str:
    """A bar (or a legend's swatch) in a series' style: its fill, then its hatching as
    plain lines inside it."""
    fill, hatch = style
    extra = "".join(f" data-{k}={quoteattr(v)}" for k, v in data.items())
    out = [f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" fill="{fill}"{extra}/>']
    if hatch and w > 0 and h > 0:
        out.append(_hatching(x, y, w, h, hatch, _tint(fill)))
    return "".join(out)


def _hatching(x0: float, y0: float, w: float, h: float, kind: str, colour: str) -> str:
    """Hatch lines clipped to the rectangle by arithmetic (fpdf2 has no clip paths for
    this), laid on a grid of the whole chart so neighbouring bars' lines line up."""
    x1, y1, s = x0 + w, y0 + h, HATCH_EVERY
    segments: list[tuple[float, float, float, float]] = []
    if kind in ("rising", "cross"):  # x + y = c
        c = math.ceil((x0 + y0) / s) * s
        while c < x1 + y1:
            a, b = max(x0, c - y1), min(x1, c - y0)
            if b > a:
                segments.append((a, c - a, b, c - b))
            c += s
    if kind in ("falling", "cross"):  # x - y = c
        c = math.ceil((x0 - y1) / s) * s
        while c < x1 - y0:
            a, b = max(x0, c + y0), min(x1, c + y1)
            if b > a:
                segments.append((a, a - c, b, b - c))
            c += s
    if kind == "horizontal":
        y = math.ceil(y0 / s) * s
        while y < y1:
            if y > y0:
                segments.append((x0, y, x1, y))
            y += s
    if kind == "vertical":
        x = math.ceil(x0 / s) * s
        while x < x1:
            if x > x0:
                segments.append((x, y0, x, y1))
            x += s
    lines = "".join(
        f'<line x1="{_f(a)}" y1="{_f(b)}" x2="{_f(c)}" y2="{_f(d)}"/>' for a, b, c, d in segments
    )
    return f'<g stroke="{colour}" stroke-width="1.5">{lines}</g>' if lines else ""


def _label(
    x: float,
    y: float,
    s: str,
    *,
    size: float = FONT,
    anchor: str = "start",
    fill: str = INK,
    bold: bool = False,
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" text-anchor="{anchor}"'
        f' fill="{fill}"{weight}>{escape(s)}</text>'
    )


def _inside(x: float, y: float, s: str, fill: str) -> str:
    """A figure written on its bar: white, bold, on a patch of the bar's plain fill (4.5:1
    or more) that keeps the hatching from under the digits."""
    w = _text_width(s, SMALL, bold=True) + 4
    top, h = y - SMALL + 1, SMALL + 3
    patch = f'<rect x="{_f(x - w / 2)}" y="{_f(top)}" width="{_f(w)}" height="{h}" fill="{fill}"/>'
    return patch + _label(x, y, s, size=SMALL, anchor="middle", fill="#ffffff", bold=True)


def _legend(bars: _Bars, y: float) -> tuple[str, float]:
    """The legend's swatches and names, wrapped over as many lines as they need; the
    markup and the height it takes."""
    names = bars.text.series
    if not names:
        return "", 0.0
    parts, x, line = [], float(PAD), 0
    for i, name in enumerate(names):
        width = 14 + 6 + _text_width(name, FONT) + 18
        if x + width > WIDTH - PAD and x > PAD:
            x, line = float(PAD), line + 1
        top = y + line * 22
        parts.append(_rect(x, top, 14, 14, bars.style(i)))
        parts.append(_label(x + 20, top + 11.5, name))
        x += width
    return "<g>" + "".join(parts) + "</g>", (line + 1) * 22.0


def _svg(bars: _Bars, chart_id: str, font_family: str, height: float, body: str) -> str:
    t = bars.text
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {_f(height)}"'
        f' role="img" aria-labelledby="{chart_id}-title {chart_id}-desc"'
        f" id={quoteattr(chart_id)} font-family={quoteattr(font_family)}>"
        f'<title id="{chart_id}-title">{escape(t.title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(t.description)}</desc>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{_f(height)}" fill="#ffffff"/>'
        f"{body}</svg>"
    )


def _nothing(bars: _Bars, chart_id: str, font_family: str) -> str:
    """A chart with nothing to draw: its message, where the bars would be."""
    height = 48.0
    body = _label(WIDTH / 2, 28, bars.text.empty, anchor="middle", fill=MUTED)
    return _svg(bars, chart_id, font_family, height, body)


# --- columns: one group per category along the bottom (months) -----------------------------


COLUMN_PLOT = 200  # height of the columns' plot area


def _columns(bars: _Bars, chart_id: str, font_family: str) -> str:
    if bars.empty:
        return _nothing(bars, chart_id, font_family)
    legend, legend_h = _legend(bars, PAD)
    top, ticks = bars.scale()
    tick_w = max(_text_width(bars.number(t), SMALL) for t in ticks) + 6
    x0, x1 = PAD + tick_w, WIDTH - PAD
    axis_y = PAD + legend_h + 14  # the axis's name, above the plot
    y0 = axis_y + 16  # the plot's top: room for the tallest bar's figure
    y1 = y0 + COLUMN_PLOT
    n, k = len(bars.keys), len(bars.series)
    group = (x1 - x0) / n
    bar = min(28.0, group * 0.8 / k)
    out = [legend]
    if bars.text.axis:
        out.append(_label(PAD, axis_y, bars.text.axis, size=SMALL, fill=MUTED))
    for t in ticks:
        y = y1 - (t / top) * COLUMN_PLOT
        out.append(f'<line x1="{_f(x0)}" y1="{_f(y)}" x2="{_f(x1)}" y2="{_f(y)}" stroke="{GRID}"/>')
        out.append(_label(x0 - 4, y + 4, bars.number(t), size=SMALL, anchor="end", fill=MUTED))
    # Names along the bottom: every one while they fit, else every second, third...; the
    # second line's where it does not run into the one before.
    every = max(1, math.ceil((max(_text_width(x, SMALL) for x in bars.labels) + 4) / group))
    last_sub = -math.inf
    figures = bar >= _text_width("000", SMALL) * 0.8
    for i, key in enumerate(bars.keys):
        gx = x0 + i * group + (group - k * bar - (k - 1) * 2) / 2
        for s, values in enumerate(bars.series):
            v = values[i]
            x = gx + s * (bar + 2)
            h = ((v or 0) / top) * COLUMN_PLOT
            data = {"key": key, "series": str(s), "value": _f(v or 0)}
            out.append(_rect(x, y1 - h, bar, h, bars.style(s), **data))
            if figures:
                shown = bars.text.missing if v is None else bars.number(v)
                out.append(_label(x + bar / 2, y1 - h - 4, shown, size=SMALL, anchor="middle"))
        mid = x0 + (i + 0.5) * group
        if i % every == 0:
            out.append(_label(mid, y1 + 16, bars.labels[i], size=SMALL, anchor="middle"))
        sub = bars.sublabels[i] if bars.sublabels else ""
        if sub and mid - last_sub >= _text_width(sub, SMALL) + 8:
            out.append(_label(mid, y1 + 32, sub, size=SMALL, anchor="middle", fill=MUTED))
            last_sub = mid
    out.append(f'<line x1="{_f(x0)}" y1="{_f(y1)}" x2="{_f(x1)}" y2="{_f(y1)}" stroke="{INK}"/>')
    bottom = y1 + (32 if bars.sublabels else 16)
    return _svg(bars, chart_id, font_family, bottom + PAD + 4, "".join(out))


# --- rows: one group of horizontal bars per category (stages, parties) ------------------------


BAR = 16  # a horizontal bar's thickness
GAP = 14  # between two categories' groups
LINE = 14  # a wrapped label's line height


def _label_column(bars: _Bars) -> tuple[float, list[list[str]]]:
    """The width the categories' names take (at most 38 % of the chart) and each name in
    the lines it is written on."""
    widest = max(_text_width(label, FONT) for label in bars.labels)
    width = min(widest, WIDTH * 0.38)
    return width, [_wrap(label, width, FONT) for label in bars.labels]


def _row_frame(
    bars: _Bars, stacked: bool
) -> tuple[list[str], float, float, float, float, list[float], list[list[str]]]:
    """What the row charts share: legend, the names' column, the plot's left and right,
    its top, the scale's end and ticks, and the names' lines."""
    legend, legend_h = _legend(bars, PAD)
    label_w, lines = _label_column(bars)
    top, ticks = bars.scale(stacked=stacked)
    room = (
        max(_text_width(bars.number(top), SMALL, bold=True), _text_width(bars.text.missing, SMALL))
        + 12
    )
    x0 = PAD + label_w + 8
    x1 = WIDTH - PAD - room
    y0 = PAD + legend_h + 8
    return [legend], x0, x1, y0, top, ticks, lines


def _axis(
    bars: _Bars, x0: float, x1: float, y0: float, y1: float, top: float, ticks: list[float]
) -> tuple[list[str], float]:
    """The value axis under the rows: gridlines, ticks, the axis's name; and the height
    the chart ends at."""
    out = []
    for t in ticks:
        x = x0 + (t / top) * (x1 - x0)
        out.append(f'<line x1="{_f(x)}" y1="{_f(y0)}" x2="{_f(x)}" y2="{_f(y1)}" stroke="{GRID}"/>')
        out.append(_label(x, y1 + 14, bars.number(t), size=SMALL, anchor="middle", fill=MUTED))
    out.append(f'<line x1="{_f(x0)}" y1="{_f(y0)}" x2="{_f(x0)}" y2="{_f(y1)}" stroke="{INK}"/>')
    end = y1 + 14
    if bars.text.axis:
        end += 16
        out.append(
            _label((x0 + x1) / 2, end, bars.text.axis, size=SMALL, anchor="middle", fill=MUTED)
        )
    return out, end + PAD


def _names(x: float, mid: float, lines: list[str]) -> str:
    first = mid - (len(lines) - 1) * LINE / 2 + 4
    return "".join(_label(x, first + j * LINE, line, anchor="end") for j, line in enumerate(lines))


def _rows(bars: _Bars, chart_id: str, font_family: str) -> str:
    if bars.empty:
        return _nothing(bars, chart_id, font_family)
    out, x0, x1, y0, top, ticks, lines = _row_frame(bars, stacked=False)
    k = len(bars.series)
    y = y0 + GAP / 2
    for i, key in enumerate(bars.keys):
        group = max(k * BAR + (k - 1) * 3, len(lines[i]) * LINE)
        first = y + (group - (k * BAR + (k - 1) * 3)) / 2
        out.append(_names(x0 - 8, y + group / 2, lines[i]))
        for s, values in enumerate(bars.series):
            v, by = values[i], first + s * (BAR + 3)
            w = (min(v or 0, top) / top) * (x1 - x0)
            data = {"key": key, "series": str(s), "value": _f(v or 0)}
            out.append(_rect(x0, by, w, BAR, bars.style(s), **data))
            shown = bars.text.missing if v is None else bars.number(v)
            out.append(_label(x0 + w + 4, by + BAR - 4, shown, size=SMALL, bold=True))
        y += group + GAP
    y1 = y - GAP / 2
    grid, end = _axis(bars, x0, x1, y0, y1, top, ticks)
    # Gridlines under the bars: drawn first.
    return _svg(bars, chart_id, font_family, end, out[0] + "".join(grid) + "".join(out[1:]))


# --- stacked: one bar per category, in parts (agencies by adoption) ----------------------------


STACK = 22  # a stacked bar's thickness


def _stacked(bars: _Bars, chart_id: str, font_family: str) -> str:
    if bars.empty:
        return _nothing(bars, chart_id, font_family)
    out, x0, x1, y0, top, ticks, lines = _row_frame(bars, stacked=True)
    y = y0 + GAP / 2
    for i, key in enumerate(bars.keys):
        group = max(STACK, len(lines[i]) * LINE)
        by = y + (group - STACK) / 2
        out.append(_names(x0 - 8, y + group / 2, lines[i]))
        x, total = x0, 0.0
        for s, values in enumerate(bars.series):
            v = values[i] or 0
            total += v
            w = (v / top) * (x1 - x0)
            if w <= 0:
                continue
            data = {"key": key, "series": str(s), "value": _f(v)}
            out.append(_rect(x, by, w, STACK, bars.style(s), **data))
            shown = bars.number(v)
            if _text_width(shown, SMALL, bold=True) + 6 <= w:
                mid = by + STACK / 2 + 4
                out.append(_inside(x + w / 2, mid, shown, bars.style(s)[0]))
            # A white seam between parts: neighbours apart even where their fills are alike.
            out.append(
                f'<line x1="{_f(x + w)}" y1="{_f(by)}" x2="{_f(x + w)}" y2="{_f(by + STACK)}"'
                ' stroke="#ffffff" stroke-width="2"/>'
            )
            x += w
        out.append(_label(x + 6, by + STACK / 2 + 4, bars.number(total), size=SMALL, bold=True))
        y += group + GAP
    y1 = y - GAP / 2
    grid, end = _axis(bars, x0, x1, y0, y1, top, ticks)
    return _svg(bars, chart_id, font_family, end, out[0] + "".join(grid) + "".join(out[1:]))
