"""The reports' SVG charts, read back as XML: each bar's size follows its figure, every figure
and name is written as text, the chart is named and described for a screen reader, nothing
is told by colour alone, an empty chart says so, and fpdf2 draws every one of them."""

from __future__ import annotations

import io
import logging
import re
import xml.etree.ElementTree as ET
from itertools import combinations

import pytest
from fpdf import FPDF

from activities.conclusion_pdf import FAMILY, font_files
from domain.reports import AdoptionRow, OnTime, Spread, Volumes
from starter.reports import charts
from starter.reports.charts import ChartText

NS = "{http://www.w3.org/2000/svg}"
DRAWN = {"svg", "title", "desc", "g", "rect", "line", "text"}

STAGE_NAMES = {
    "screening": "Sơ loại hồ sơ",
    "supplement": "Chờ bổ sung hồ sơ",
    "review": "Hội đồng thẩm định, phản biện",
}
PARTY_NAMES = {"coordinator": "Văn phòng", "agency": "Cơ quan đề nghị", "expert": "Chuyên gia"}
ANSWERS = ["Tiếp thu", "Tiếp thu một phần", "Không tiếp thu", "Không trả lời", "Đang chờ"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def tag(e: ET.Element) -> str:
    return e.tag.removeprefix(NS)


def bars(root: ET.Element, series: str | None = None) -> list[ET.Element]:
    """The bars (data-key), of one series if given, in the order drawn."""
    return [
        r
        for r in root.iter(f"{NS}rect")
        if "data-key" in r.attrib and (series is None or r.get("data-series") == series)
    ]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def num(e: ET.Element, name: str) -> float:
    return float(e.get(name))


def months() -> dict[str, Volumes]:
    return {
        "2026-01": Volumes(received=4, completed=2),
        "2026-02": Volumes(received=0, completed=1),
        "2026-03": Volumes(received=8, completed=0),
    }


def month_text(**changes) -> ChartText:
    return ChartText(
        title="Hồ sơ theo tháng",
        description="Số hồ sơ tiếp nhận và hoàn thành mỗi tháng; bảng bên cạnh có số liệu.",
        series=["Tiếp nhận", "Hoàn thành"],
        axis="số hồ sơ",
        empty="Không có hồ sơ nào trong kỳ",
        **changes,
    )


def stages() -> dict[str, Spread]:
    return {
        "screening": Spread(count=4, median=2, p90=5),
        "supplement": Spread(),
        "review": Spread(count=3, median=14, p90=20),
    }


def parties() -> dict[str, OnTime]:
    return {
        "coordinator": OnTime(party="coordinator", deadline="all", on_time=3, late=1),
        "agency": OnTime(party="agency", deadline="all"),
        "expert": OnTime(party="expert", deadline="all", on_time=2, late=0),
    }


def adoption() -> dict[str, AdoptionRow]:
    return {
        "STNMT": AdoptionRow(
            delivered=6, adopted=3, partially_adopted=1, not_adopted=1, awaiting=1
        ),
        "SGTVT": AdoptionRow(delivered=2, no_answer=2),
    }


def every_chart() -> list[str]:
    return [
        charts.requests_per_month(months(), month_text()),
        charts.time_in_stage(
            stages(), ChartText("Thời gian", "Ngày làm việc", ["Trung vị", "P90"], STAGE_NAMES)
        ),
        charts.on_time_by_party(parties(), ChartText("Đúng hạn", "Tỷ lệ", [], PARTY_NAMES)),
        charts.adoption_by_agency(
            adoption(), ChartText("Tiếp thu", "Theo cơ quan", ANSWERS, {"STNMT": "Sở TN&MT"})
        ),
    ]


# --- what every chart is -------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(4))
def test_every_chart_is_a_named_described_image_scaled_by_its_viewbox(n):
    root = parse(every_chart()[n])
    assert tag(root) == "svg"
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert (title.get("id"), desc.get("id")) == (title_id, desc_id)
    assert title.text and desc.text
    assert root.get("viewBox").startswith("0 0 640 ")
    assert root.get("width") is None and root.get("height") is None
    assert root.get("font-family") == "sans-serif"
    # What fpdf2 draws, coloured by attributes: no stylesheet, class or inline style.
    for e in root.iter():
        assert tag(e) in DRAWN
        assert not {"style", "class"} & set(e.attrib)


def test_the_chart_id_names_its_title_and_description_so_charts_share_a_page():
    root = parse(charts.requests_per_month(months(), month_text(), chart_id="months-2026"))
    assert root.get("id") == "months-2026"
    assert root.get("aria-labelledby") == "months-2026-title months-2026-desc"
    assert root.find(f"{NS}title").get("id") == "months-2026-title"


def test_words_are_escaped():
    svg = charts.time_in_stage(
        stages(), ChartText("A <b> & c", "d", ["x", "y"], {"screening": "Sơ loại <&> “x”"})
    )
    root = parse(svg)
    assert root.find(f"{NS}title").text == "A <b> & c"
    assert "Sơ loại <&> “x”" in texts(root)


# --- requests per month --------------------------------------------------------------------------


def test_columns_per_month_are_as_tall_as_their_figures():
    root = parse(charts.requests_per_month(months(), month_text()))
    received, completed = bars(root, "0"), bars(root, "1")
    assert [b.get("data-key") for b in received] == ["2026-01", "2026-02", "2026-03"]
    assert [num(b, "data-value") for b in received] == [4, 0, 8]
    assert [num(b, "data-value") for b in completed] == [2, 1, 0]
    heights = [num(b, "height") for b in received + completed]
    unit = heights[0] / 4
    assert heights == pytest.approx([4 * unit, 0, 8 * unit, 2 * unit, unit, 0], abs=0.05)
    # All stand on one baseline, the received left of the completed in each month.
    assert len({num(b, "y") + num(b, "height") for b in received + completed}) == 1
    assert all(num(r, "x") < num(c, "x") for r, c in zip(received, completed, strict=True))
    shown = texts(root)
    for label in ("01", "02", "03", "Tiếp nhận", "Hoàn thành", "số hồ sơ"):
        assert label in shown
    assert shown.count("2026") == 1  # the year once, under its first month
    assert {"4", "8", "2", "1", "0"} <= set(shown)


def test_the_scale_ends_on_a_round_figure_at_or_above_the_tallest():
    root = parse(charts.requests_per_month({"2026-01": Volumes(received=7)}, month_text()))
    # Ticks 0, 2, 4, 6, 8: the 7 reaches seven eighths of the axis.
    assert {"0", "2", "4", "6", "8"} <= set(texts(root))
    grid = [num(line, "y1") for line in root.iter(f"{NS}line") if line.get("stroke") == "#d0d0d0"]
    bottom, top = max(grid), min(grid)
    column = bars(root, "0")[0]
    assert num(column, "height") == pytest.approx(7 / 8 * (bottom - top), abs=0.02)


def test_many_months_write_fewer_month_names_but_every_column_and_each_year():
    many = {f"{2024 + i // 12}-{i % 12 + 1:02d}": Volumes(received=i % 3) for i in range(120)}
    root = parse(charts.requests_per_month(many, month_text()))
    assert len(bars(root, "0")) == 120
    bottom = max(num(t, "y") for t in root.iter(f"{NS}text"))
    years = [t for t in root.iter(f"{NS}text") if num(t, "y") == bottom]
    assert [t.text for t in years] == [str(y) for y in range(2024, 2034)]
    names = [t for t in root.iter(f"{NS}text") if num(t, "y") == bottom - 16]
    assert names and len(names) < 120 and all(re.fullmatch(r"\d\d", t.text) for t in names)
    for line in (names, years):
        xs = sorted(num(t, "x") for t in line)
        # Never closer than a name's own width: they do not run into each other.
        assert min(b - a for a, b in zip(xs, xs[1:], strict=False)) >= 2 * charts.SMALL * 0.58


def test_a_year_starting_in_december_writes_both_years_apart():
    two = {"2025-12": Volumes(received=1), "2026-01": Volumes(received=2)}
    shown = texts(parse(charts.requests_per_month(two, month_text())))
    assert {"12", "01", "2025", "2026"} <= set(shown)


# --- time in stage -------------------------------------------------------------------------------


def test_stage_bars_are_as_long_as_their_days_and_a_stage_never_visited_shows_a_dash():
    root = parse(
        charts.time_in_stage(
            stages(),
            ChartText("Thời gian", "d", ["Trung vị", "P90"], STAGE_NAMES, axis="ngày làm việc"),
        )
    )
    median, p90 = bars(root, "0"), bars(root, "1")
    assert [b.get("data-key") for b in median] == ["screening", "supplement", "review"]
    widths = [num(b, "width") for b in median + p90]
    unit = widths[0] / 2
    assert widths == pytest.approx([2 * unit, 0, 14 * unit, 5 * unit, 0, 20 * unit], abs=0.05)
    assert len({num(b, "x") for b in median + p90}) == 1  # from one axis
    shown = texts(root)
    for label in (*STAGE_NAMES.values(), "Trung vị", "P90", "ngày làm việc", "14", "20", "5"):
        assert label in shown
    assert shown.count("–") == 2  # supplement: no median, no p90


def test_a_stage_without_a_name_is_shown_by_its_key():
    svg = charts.time_in_stage({"council": Spread(count=1, median=3, p90=3)}, ChartText("t", "d"))
    assert "council" in texts(parse(svg))


def test_a_long_name_is_wrapped_and_cut_never_overflowing_the_names_column():
    name = "Ủy ban nhân dân huyện " + "Lục Ngạn tỉnh Bắc Giang " * 6
    root = parse(
        charts.adoption_by_agency(
            {"UBND": AdoptionRow(delivered=1, adopted=1)},
            ChartText("t", "d", ANSWERS, {"UBND": name}),
        )
    )
    lines = [t for t in root.iter(f"{NS}text") if t.get("text-anchor") == "end"]
    assert len(lines) == 2 and lines[0].text.startswith("Ủy ban") and lines[1].text.endswith("…")
    assert all(len(t.text) * charts.FONT * 0.58 <= 640 * 0.38 for t in lines)


# --- on time -------------------------------------------------------------------------------------


def test_on_time_rates_run_from_zero_to_one_hundred_percent():
    root = parse(
        charts.on_time_by_party(
            parties(),
            ChartText("Đúng hạn", "d", [], PARTY_NAMES, axis="tỷ lệ đúng hạn"),
            percent=lambda r: f"{r * 100:.1f}%".replace(".", ","),
        )
    )
    coordinator, agency, expert = bars(root)
    assert num(agency, "width") == 0
    # 100 % is the whole axis; 75 % three quarters of it.
    assert num(coordinator, "width") == pytest.approx(0.75 * num(expert, "width"), abs=0.02)
    axis = [num(line, "x1") for line in root.iter(f"{NS}line") if line.get("stroke") == "#d0d0d0"]
    assert num(expert, "x") + num(expert, "width") == pytest.approx(max(axis), abs=0.02)
    shown = texts(root)
    for label in ("75,0%", "100,0%", "–", "0,0%", "50,0%", *PARTY_NAMES.values()):
        assert label in shown


# --- adoption ------------------------------------------------------------------------------------


def test_adoption_stacks_each_agencys_answers_in_order_with_its_total():
    root = parse(
        charts.adoption_by_agency(
            adoption(),
            ChartText("Tiếp thu", "d", ANSWERS, {"STNMT": "Sở Tài nguyên và Môi trường"}),
        )
    )
    stnmt = [b for b in bars(root) if b.get("data-key") == "STNMT"]
    sgtvt = [b for b in bars(root) if b.get("data-key") == "SGTVT"]
    # Parts with nothing in them are not drawn; the rest in the legend's order, end to end.
    assert [b.get("data-series") for b in stnmt] == ["0", "1", "2", "4"]
    assert [num(b, "data-value") for b in stnmt] == [3, 1, 1, 1]
    for a, b in zip(stnmt, stnmt[1:], strict=False):
        assert num(a, "x") + num(a, "width") == pytest.approx(num(b, "x"), abs=0.02)
    unit = num(stnmt[0], "width") / 3
    assert [num(b, "width") for b in stnmt] == pytest.approx([3 * unit, unit, unit, unit], abs=0.05)
    assert [b.get("data-series") for b in sgtvt] == ["3"]
    assert num(sgtvt[0], "width") == pytest.approx(2 * unit, abs=0.05)
    shown = texts(root)
    assert "Sở Tài nguyên và Môi trường" in shown and "SGTVT" in shown
    assert {"6", "2", "3"} <= set(shown)  # the totals, and the parts wide enough to hold one
    for answer in ANSWERS:
        assert answer in shown


# --- not colour alone, and enough contrast -------------------------------------------------------


def luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("styles", [charts.PALETTE, charts.ADOPTION_STYLES])
def test_series_differ_by_hatching_too_and_every_fill_holds_white_text(styles):
    for fill, _ in styles:
        assert contrast(fill, "#ffffff") >= 4.5, fill
    for (fill_a, hatch_a), (fill_b, hatch_b) in combinations(styles, 2):
        assert hatch_a != hatch_b and fill_a != fill_b
    assert contrast(charts.INK, "#ffffff") >= 7 and contrast(charts.MUTED, "#ffffff") >= 4.5


def hatch_lines_in(root: ET.Element, bar: ET.Element) -> list[ET.Element]:
    x0, y0 = num(bar, "x"), num(bar, "y")
    x1, y1 = x0 + num(bar, "width"), y0 + num(bar, "height")
    return [
        line
        for g in root.iter(f"{NS}g")
        if g.get("stroke-width") == "1.5"
        for line in g
        if all(x0 - 0.01 <= num(line, a) <= x1 + 0.01 for a in ("x1", "x2"))
        and all(y0 - 0.01 <= num(line, a) <= y1 + 0.01 for a in ("y1", "y2"))
    ]


def test_a_hatched_series_is_drawn_with_lines_inside_its_bars():
    root = parse(charts.requests_per_month(months(), month_text()))
    completed, received = bars(root, "1")[0], bars(root, "0")[0]  # January: 2 and 4
    assert len(hatch_lines_in(root, completed)) >= 3
    assert not hatch_lines_in(root, received)  # the first series is solid


# --- nothing to draw -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "svg",
    [
        lambda t: charts.requests_per_month({}, t),
        lambda t: charts.time_in_stage({"screening": Spread()}, t),
        lambda t: charts.on_time_by_party({"agency": OnTime(party="agency", deadline="all")}, t),
        lambda t: charts.adoption_by_agency({}, t),
    ],
)
def test_a_chart_with_nothing_to_draw_says_so(svg):
    root = parse(svg(month_text()))
    assert root.get("role") == "img" and root.find(f"{NS}title").text == "Hồ sơ theo tháng"
    assert not bars(root)
    assert texts(root) == ["Không có hồ sơ nào trong kỳ"]


def test_zero_is_a_figure_drawn_as_a_bar_of_no_length():
    """A stage left the day it was entered took 0 days: a figure, not a gap."""
    root = parse(
        charts.time_in_stage(
            {"screening": Spread(count=2, median=0, p90=0)},
            ChartText("t", "d", ["Trung vị", "P90"], empty="Không có"),
        )
    )
    assert [num(b, "width") for b in bars(root)] == [0, 0]
    assert texts(root).count("0") >= 2 and "Không có" not in texts(root)
    quiet = parse(charts.requests_per_month({"2026-01": Volumes()}, month_text()))
    assert [num(b, "height") for b in bars(quiet)] == [0, 0]


# --- fpdf2 draws them ----------------------------------------------------------------------------


def test_fpdf2_draws_every_chart_in_vietnamese_in_the_pdfs_font(caplog):
    pdf = FPDF(unit="mm", format="A4")
    for style, path in font_files().items():
        pdf.add_font(FAMILY, style, path)
    pdf.add_page()
    titled = [
        charts.requests_per_month(months(), month_text(), font_family=FAMILY),
        charts.adoption_by_agency(
            adoption(),
            ChartText("Tiếp thu", "d", ANSWERS, {"STNMT": "Sở Tài nguyên"}),
            font_family=FAMILY,
        ),
    ]
    with caplog.at_level(logging.WARNING, logger="fpdf.svg"):
        for svg in titled:
            drawn = pdf.image(io.BytesIO(svg.encode()), x=20, w=170)
            width, height = (float(v) for v in parse(svg).get("viewBox").split()[2:])
            assert drawn.rendered_height == pytest.approx(170 * height / width)
    # Only <title> and <desc>, which a PDF has no use for, are passed over.
    skipped = {r.getMessage() for r in caplog.records}
    assert all("<title>" in m or "<desc>" in m for m in skipped)
    assert bytes(pdf.output()).startswith(b"%PDF")


def test_fpdf2_draws_them_with_its_own_fonts_when_the_words_are_latin():
    """The generic family falls back to fpdf2's core Helvetica: English labels need no
    font registered."""
    english = [
        charts.requests_per_month(months(), ChartText("Per month", "d", ["In", "Done"])),
        charts.time_in_stage(stages(), ChartText("Stages", "d", ["Median", "P90"], missing="-")),
        charts.on_time_by_party(parties(), ChartText("On time", "d", missing="-")),
        charts.adoption_by_agency(adoption(), ChartText("Adoption", "d", ["a", "b", "c", "d"])),
    ]
    pdf = FPDF()
    pdf.add_page()
    for svg in english:
        pdf.image(io.BytesIO(svg.encode()), w=150)
    assert bytes(pdf.output()).startswith(b"%PDF")
