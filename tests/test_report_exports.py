"""The reports' exports read back by readers that are not the writers — the csv module,
openpyxl, pypdf — and compared figure by figure with the report they came from; then
`advisory report` end to end against PostgreSQL: the file it writes, and what it refuses.

The figures are the hand-built year of tests/test_report_measures.py (eight requests of three
agencies, worked out on a printed 2026 calendar), so a figure lost or moved on its way into a
file fails here.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import subprocess
import sys
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pypdf
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from db import reports as db_reports
from domain.calendar import VN_TZ
from domain.documents import date_line
from domain.reports import ON_TIME_ROWS, STAGES, Report, ReportFilter, parse_period
from starter.reports.exports import Names, to_csv, to_pdf, to_xlsx
from starter.reports.words import (
    ADOPTION,
    EXPERTS,
    LOAD,
    ON_TIME,
    STAGE_TIME,
    TURNAROUND,
    VOLUMES,
    Words,
)
from tests.conftest import ROOT, register_agency
from tests.test_report_measures import POLICY, Trail, report, year

UNION = POLICY.union
NAMES = Names(
    agencies={
        "STNMT": "Sở Tài nguyên và Môi trường tỉnh Bắc Giang",
        "SXD": "Sở Xây dựng tỉnh Bắc Giang",
        "UBND-BG": "Ủy ban nhân dân thành phố Bắc Giang",
    },
    experts={"E01": "PGS.TS. Nguyễn Văn Ánh", "E07": "TS. Đỗ Thị Hường"},
)
SIGNER = {"signer_name": "Nguyễn Thị Lan", "signer_title": "Chánh Văn phòng Liên hiệp hội"}


@pytest.fixture(scope="module")
def the_year() -> Report:
    return report(*year())


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


# --- CSV ----------------------------------------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)  # Excel reads UTF-8 only with it
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def number(text: str) -> int | float | None:
    if text == "":
        return None
    return int(text) if text.lstrip("-").isdigit() else float(text)


def expected_figures(r: Report, w: Words) -> dict[tuple[str, str, str, str], object]:
    """Every figure of the report, keyed as the CSV keys it, built from the report's fields
    rather than from the exporter's rows."""
    out: dict[tuple[str, str, str, str], object] = {}

    def put(section, group, key, model, fields):
        for name, measure in fields.items():
            out[(w._(section), group, key, w._(measure))] = getattr(model, name)

    every = w._("All")
    put("Requests", every, "", r.volumes, VOLUMES)
    for month, v in r.per_month.items():
        put("Requests", w._("Month"), month, v, VOLUMES)
    for kind, v in r.by_kind.items():
        put("Requests", w._("Kind"), w.kind(kind), v, VOLUMES)
    for code, v in r.by_agency.items():
        put("Requests", w._("Agency"), code, v, VOLUMES)
    for f, v in r.by_field.items():
        put("Requests", w._("Field of expertise"), f, v, VOLUMES)
    put("Turnaround", every, "", r.turnaround, TURNAROUND)
    for s in STAGES:
        put("Time in stage", w._("Stage"), w.stage(s.value), r.time_in_stage[s.value], STAGE_TIME)
    for party, deadline in ON_TIME_ROWS:
        row = r.on_time_for(party, deadline)
        put("Deadlines kept", w.party(party), w.deadline(party, deadline), row, ON_TIME)
    for party, row in r.on_time_by_party.items():
        put("Deadlines kept", w.party(party), w.deadline(party, "all"), row, ON_TIME)
    for e in r.experts:
        put("Experts", e.expert_code, "", e, EXPERTS)
        for month, load in e.load.items():
            out[(w._("Experts"), e.expert_code, month, w._(LOAD))] = load
    put("Experts", every, "", r.experts_total, EXPERTS)
    put("Adoption", every, "", r.adoption, ADOPTION)
    for code, a in r.adoption_by_agency.items():
        put("Adoption", w._("Agency"), code, a, ADOPTION)
    for kind, a in r.adoption_by_kind.items():
        put("Adoption", w._("Kind"), w.kind(kind), a, ADOPTION)
    return out


def test_the_csv_holds_every_figure_of_the_report_and_nothing_else(the_year):
    rows = read_csv(to_csv(the_year))
    assert rows[0] == ["Kỳ báo cáo", "Phần", "Nhóm", "Mục", "Chỉ tiêu", "Giá trị"]
    assert {r[0] for r in rows[1:]} == {"2026"}
    overview = {r[4]: r[5] for r in rows[1:] if r[1] == "Tổng quan"}
    assert overview == {
        "Kỳ báo cáo": "2026",
        "Từ ngày": "2026-01-01",
        "Đến ngày": "2026-12-31",
        "Số liệu tính đến": "2026-07-31 12:00",
        "Cơ quan": "Tất cả",
        "Loại hình": "Tất cả",
        "Lĩnh vực chuyên môn": "Tất cả",
    }
    got = {tuple(r[1:5]): number(r[5]) for r in rows[1:] if r[1] != "Tổng quan"}
    assert len(got) == len(rows) - 1 - len(overview)  # no figure twice
    assert got == expected_figures(the_year, Words("vi"))
    # Read by hand, in the words a reader sees: April's intake, the experts' opinions on time.
    assert got[("Hồ sơ", "Tháng", "2026-04", "Tiếp nhận")] == 2
    assert got[("Bảo đảm thời hạn", "Chuyên gia", "Gửi ý kiến", "Tỷ lệ đúng hạn")] == 6 / 7
    assert got[("Thời gian giải quyết", "Tất cả", "", "Trung vị (ngày làm việc)")] == 13


def test_the_csv_in_english_and_with_nothing_to_measure(the_year):
    rows = read_csv(to_csv(the_year, "en"))
    assert rows[0] == ["Period", "Section", "Group", "Key", "Measure", "Value"]
    got = {tuple(r[1:5]): number(r[5]) for r in rows[1:] if r[1] != "Overview"}
    assert got == expected_figures(the_year, Words("en"))
    assert got[("Requests", "Kind", "Critique", "Received")] == 3
    # A stage nobody left has no median: an empty cell, never a zero.
    quiet = read_csv(to_csv(report(*year(), period="2026-12")))
    medians = [r[5] for r in quiet if r[1] == "Thời gian từng bước" and r[4].startswith("Trung")]
    assert medians and set(medians) == {""}


# --- XLSX ---------------------------------------------------------------------------------------


def workbook(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def table(sheet) -> tuple[list[str], list[list[object]]]:
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    return rows[0], rows[1:]


def test_the_workbook_has_a_sheet_per_part_with_typed_figures(the_year):
    r = the_year
    book = workbook(to_xlsx(r, "vi", names=NAMES))
    assert book.sheetnames == [
        "Tổng quan",
        "Theo tháng",
        "Theo cơ quan",
        "Theo loại hình",
        "Theo lĩnh vực",
        "Thời gian từng bước",
        "Bảo đảm thời hạn",
        "Chuyên gia",
        "Nhiệm vụ đồng thời theo tháng",
        "Tiếp thu ý kiến",
    ]
    for sheet in book.worksheets:
        assert all(cell.font.b for cell in sheet[1]), sheet.title
        assert sheet.freeze_panes in ("B2", "C2"), sheet.title
        assert all(sheet.column_dimensions[c].width >= 8 for c in "AB"), sheet.title

    overview = {row[1]: row[2] for row in table(book["Tổng quan"])[1]}
    assert overview["Kỳ báo cáo"] == "2026"
    assert overview["Từ ngày"] == datetime(2026, 1, 1)  # a date cell, not text
    assert overview["Đến ngày"] == datetime(2026, 12, 31)
    assert overview["Cơ quan"] == "Tất cả"
    assert overview["Tiếp nhận"] == 8
    assert overview["Tỷ lệ nhận lời"] == pytest.approx(r.experts_total.acceptance_rate, rel=1e-14)

    volumes = list(VOLUMES)
    head, rows = table(book["Theo tháng"])
    assert head == [
        "Tháng",
        "Tiếp nhận",
        "Hoàn thành",
        "Cơ quan đề nghị rút hồ sơ",
        "Từ chối khi sơ loại",
        "Đóng do không bổ sung",
    ]
    assert [row[0] for row in rows[:-1]] == [datetime(2026, m, 1) for m in range(1, 13)]
    assert rows[:-1] == [
        [datetime(2026, int(m[5:]), 1), *(getattr(v, f) for f in volumes)]
        for m, v in r.per_month.items()
    ]
    assert rows[-1] == ["Tổng cộng", *(getattr(r.volumes, f) for f in volumes)]
    assert all(type(x) is int for row in rows for x in row[1:])

    head, rows = table(book["Theo cơ quan"])
    assert rows[:-1] == [
        [code, NAMES.agencies[code], *(getattr(v, f) for f in volumes)]
        for code, v in r.by_agency.items()
    ]
    assert rows[-1][2:] == [getattr(r.volumes, f) for f in volumes]
    advisory = r.by_kind["advisory"]
    assert table(book["Theo loại hình"])[1][0] == [
        "Tư vấn",
        *(getattr(advisory, f) for f in volumes),
    ]
    assert table(book["Theo lĩnh vực"])[1] == [
        [f, *(getattr(v, f2) for f2 in volumes)] for f, v in r.by_field.items()
    ]

    rows = table(book["Thời gian từng bước"])[1]
    assert rows == [
        [Words("vi").stage(s.value), *(getattr(r.time_in_stage[s.value], f) for f in STAGE_TIME)]
        for s in STAGES
    ]

    sheet = book["Bảo đảm thời hạn"]
    head, rows = table(sheet)
    rate = head.index("Tỷ lệ đúng hạn")
    # Spreadsheets keep 15 significant digits.
    assert [row[rate] for row in rows[: len(ON_TIME_ROWS)]] == pytest.approx(
        [o.rate for o in r.on_time], rel=1e-14
    )
    for row, o in zip(rows[len(ON_TIME_ROWS) :], r.on_time_by_party.values(), strict=True):
        assert row[2:] == pytest.approx([getattr(o, f) for f in ON_TIME], rel=1e-14)
    assert sheet.cell(row=2, column=rate + 1).number_format == "0.0%"

    sheet = book["Chuyên gia"]
    head, rows = table(sheet)
    assert [row[0] for row in rows] == [e.expert_code for e in r.experts] + ["Tổng cộng"]
    assert rows[0][1] == "PGS.TS. Nguyễn Văn Ánh" and rows[1][1] == "E02"  # no name: the code
    for row, e in zip(rows, [*r.experts, r.experts_total], strict=True):
        assert row[2:] == pytest.approx([getattr(e, f) for f in EXPERTS], rel=1e-14)
    accept = head.index("Tỷ lệ nhận lời") + 1
    assert sheet.cell(row=2, column=accept).number_format == "0.0%"

    head, rows = table(book["Nhiệm vụ đồng thời theo tháng"])
    assert head[2:] == [f"{m:02d}/2026" for m in range(1, 13)]
    assert rows == [
        [e.expert_code, NAMES.experts.get(e.expert_code, e.expert_code), *e.load.values()]
        for e in r.experts
    ]

    rows = table(book["Tiếp thu ý kiến"])[1]
    assert rows[0][3:] == [getattr(r.adoption, f) for f in ADOPTION]
    by_agency = {row[1]: row[3:] for row in rows if row[0] == "Cơ quan"}
    assert by_agency == {
        code: [getattr(a, f) for f in ADOPTION] for code, a in r.adoption_by_agency.items()
    }


def test_the_workbook_names_the_filter_and_is_dated_by_the_report():
    r = report(*year(), agencies=frozenset({"SXD"}), kinds=frozenset({"critique"}))
    book = workbook(to_xlsx(r, "en"))
    assert book.properties.created == datetime(2026, 7, 31, 12, 0)  # as_of, Vietnam's time
    overview = {row[1]: row[2] for row in table(book["Overview"])[1]}
    assert overview["Agencies"] == "SXD"
    assert overview["Kinds of request"] == "Critique"
    assert overview["Fields of expertise"] == "All"
    assert overview["Received"] == r.volumes.received == 2


# --- PDF ----------------------------------------------------------------------------------------

CHART_FILL = b"0.0431 0.3098 0.5412 rg"  # the charts' first series, #0b4f8a


def pdf_pages(data: bytes) -> list[pypdf.PageObject]:
    return list(pypdf.PdfReader(io.BytesIO(data)).pages)


def pdf_text(data: bytes) -> str:
    """The words of every page, the page numbers of pages 2.. checked and taken off."""
    texts = []
    for n, page in enumerate(pdf_pages(data), start=1):
        text = page.extract_text()
        if n > 1:
            number, _, text = text.partition("\n")
            assert number.strip() == str(n)
        texts.append(text)
    return norm("\n".join(texts))


def test_the_yearly_pdf_reads_as_the_unions_report(the_year):
    data = to_pdf(
        the_year,
        union=UNION,
        names=NAMES,
        addressees=["Liên hiệp các Hội Khoa học và Kỹ thuật Việt Nam"],
        **SIGNER,
    )
    text = pdf_text(data)
    parts = [
        "LIÊN HIỆP CÁC HỘI KHOA HỌC VÀ KỸ THUẬT TỈNH BẮC GIANG",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "/BC-LHH",
        "Bắc Giang, ngày 31 tháng 7 năm 2026",
        "BÁO CÁO",
        "Kết quả hoạt động tư vấn, phản biện và giám định xã hội năm 2026",
        "Kính gửi: Liên hiệp các Hội Khoa học và Kỹ thuật Việt Nam.",
        "từ ngày 01/01/2026 đến ngày 31/12/2026 (số liệu tính đến ngày 31/07/2026)",
        "I. TÌNH HÌNH TIẾP NHẬN VÀ GIẢI QUYẾT HỒ SƠ",
        "Trong năm 2026, Liên hiệp hội tỉnh Bắc Giang đã tiếp nhận 8 hồ sơ đề nghị tư vấn, "
        "phản biện và giám định xã hội; đã hoàn thành, gửi kết luận đối với 5 hồ sơ.",
        "Ngoài ra, có 1 hồ sơ do cơ quan đề nghị rút lại, 1 hồ sơ không được chấp nhận khi sơ "
        "loại và 1 hồ sơ đóng do không được bổ sung trong thời hạn.",
        "Số hồ sơ tiếp nhận theo loại hình: tư vấn 4, phản biện 3, giám định xã hội 1.",
        "Sở Xây dựng tỉnh Bắc Giang (4)",
        "Bảng 1. Số hồ sơ theo tháng",
        "Tổng cộng 8 5 1 1 1",
        "Hình 1. Số hồ sơ tiếp nhận và hoàn thành theo tháng",
        "II. THỜI GIAN GIẢI QUYẾT",
        "Đối với 5 hồ sơ đã gửi kết luận, một nửa số hồ sơ được giải quyết trong không quá 13 "
        "ngày làm việc",
        "90% số hồ sơ trong không quá 33 ngày làm việc.",
        "Bảng 2. Thời gian giải quyết từng bước (ngày làm việc)",
        "Hình 2.",
        "III. BẢO ĐẢM THỜI HẠN",
        "chuyên gia đạt 88,9% (16/18 thời hạn)",
        "Trong kỳ có 2 lượt gia hạn, với tổng cộng 10 ngày làm việc.",
        "Bảng 3. Việc bảo đảm thời hạn theo từng bên và từng loại thời hạn",
        "Hình 3. Tỷ lệ đúng hạn theo bên thực hiện",
        "IV. SỰ THAM GIA CỦA CHUYÊN GIA",
        "Đã gửi 11 lời mời tới 7 chuyên gia; trong đó 9 lời mời được nhận lời (đạt 81,8%",
        "Có 6/7 ý kiến chuyên gia được gửi đúng hạn.",
        "Bảng 4. Sự tham gia của từng chuyên gia",
        "PGS.TS. Nguyễn Văn Ánh (E01)",
        "V. VIỆC TIẾP THU Ý KIẾN CỦA CƠ QUAN ĐỀ NGHỊ",
        "Trong 5 kết luận đã gửi, có 1 kết luận được cơ quan đề nghị tiếp thu toàn bộ",
        "Bảng 5. Kết quả tiếp thu ý kiến theo từng cơ quan đề nghị",
        "Hình 4. Kết luận đã gửi từng cơ quan đề nghị và kết quả tiếp thu",
        "Trên đây là báo cáo kết quả hoạt động tư vấn, phản biện và giám định xã hội năm 2026 "
        "của Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Bắc Giang./.",
        "TL. CHỦ TỊCH CHÁNH VĂN PHÒNG",
        "Nguyễn Thị Lan",
        "Nơi nhận:",
        "- Như trên;",
        "- Lưu: VT, TVPB.",
    ]
    at = 0
    for part in parts:
        found = text.find(norm(part), at)
        assert found >= 0, f"not on the page (after position {at}): {part!r}"
        at = found + len(norm(part))
    # The charts are drawn on the pages (vector paths in the charts' colours), not left out.
    pages = pdf_pages(data)
    assert len(pages) >= 3
    drawn = [p for p in pages if CHART_FILL in p.get_contents().get_data()]
    assert len(drawn) >= 2
    assert all(abs(float(p.mediabox.width) - 595.28) < 0.5 for p in pages)  # A4


def test_a_period_with_no_activity_says_so_and_is_still_signed():
    data = to_pdf(report(*year(), period="2025-Q4"), union=UNION, **SIGNER)
    text = pdf_text(data)
    assert (
        norm(
            "Trong quý IV năm 2025, Liên hiệp hội tỉnh Bắc Giang không tiếp nhận, giải quyết hồ sơ "
            "đề nghị tư vấn, phản biện và giám định xã hội nào."
        )
        in text
    )
    assert "Kết quả hoạt động tư vấn, phản biện và giám định xã hội quý IV năm 2025" in text
    assert "Bảng" not in text and "Hình" not in text
    assert all(CHART_FILL not in p.get_contents().get_data() for p in pdf_pages(data))
    # Addressed to nobody by name: no Kính gửi, and Nơi nhận without "Như trên".
    assert "Kính gửi" not in text and "Như trên" not in text
    assert "CHÁNH VĂN PHÒNG Nguyễn Thị Lan" in text


@pytest.mark.parametrize(
    ("period", "title", "span"),
    [
        ("2026-07", "tháng 7/2026", "từ ngày 01/07/2026 đến ngày 31/07/2026"),
        (
            "2026-03-01..2026-04-30",
            "giai đoạn từ ngày 01/03/2026 đến ngày 30/04/2026",
            "từ ngày 01/03/2026 đến ngày 30/04/2026",
        ),
    ],
)
def test_any_period_and_a_filter_are_named_on_the_page(period, title, span):
    r = report(*year(), period=period, agencies=frozenset({"STNMT", "SXD"}))
    text = pdf_text(to_pdf(r, union=UNION, names=NAMES, **SIGNER))
    assert f"Kết quả hoạt động tư vấn, phản biện và giám định xã hội {title}" in text
    assert span in text
    assert (
        norm(
            "Số liệu trong báo cáo chỉ tính các hồ sơ của Sở Tài nguyên và Môi trường tỉnh Bắc "
            "Giang, Sở Xây dựng tỉnh Bắc Giang."
        )
        in text
    )


def test_the_closing_and_the_signature_stand_whole_on_the_last_page():
    # Reports of every length: each month's and quarter's of the year.
    for period in [f"2026-{m:02d}" for m in range(1, 13)] + [f"2026-Q{q}" for q in range(1, 5)]:
        data = to_pdf(report(*year(), period=period), union=UNION, **SIGNER)
        last = norm(pdf_pages(data)[-1].extract_text())
        # The closing begins on the page its signature is on.
        assert "Trên đây là báo cáo kết quả hoạt động" in last, period
        assert "./. TL. CHỦ TỊCH CHÁNH VĂN PHÒNG Nguyễn Thị Lan Nơi nhận:" in last, period


def test_the_same_report_gives_the_same_pdf(the_year):
    one = to_pdf(the_year, union=UNION, names=NAMES, **SIGNER)
    assert one == to_pdf(the_year, union=UNION, names=NAMES, **SIGNER)
    assert one != to_pdf(the_year, union=UNION, names=NAMES, **{**SIGNER, "signer_name": "Lê Hoa"})


# --- the words ----------------------------------------------------------------------------------


def test_every_word_of_the_exports_is_in_both_catalogues():
    used = {
        m if isinstance(m, str) else m[0]
        for _, _, m, _, _ in extract_from_dir(
            str(ROOT / "starter" / "reports"),
            [("**.py", "python")],
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        )
    }
    assert len(used) > 100
    for lang in ("vi", "en"):
        path = ROOT / "starter" / "portal" / "locale" / lang / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as f:
            catalog = read_po(f)
        translated = {
            m.id if isinstance(m.id, str) else m.id[0]
            for m in catalog
            if m.id and all(m.string if isinstance(m.string, tuple) else [m.string])
        }
        assert not used - translated, f"{lang}: missing {sorted(used - translated)}"


# --- `advisory report` --------------------------------------------------------------------------


async def store(pool, trails: list[Trail], agency: str, policy) -> None:
    """The trails as the engine would have left them: request rows, their audit log and
    their report rows (written as the recording transaction writes them), each request
    renamed to be this test's own and sent by `agency`."""
    async with pool.acquire() as conn, conn.transaction():
        for t in trails:
            rid = f"{t.facts.id}-{agency}"
            f = t.facts
            await conn.execute(
                """
                INSERT INTO requests (id, workflow_id, agency_code, agency_reference, kind, title,
                    summary, expertise_fields, documents, requested_by, stage, submitted_at,
                    updated_at)
                VALUES ($1, 'review-' || $1, $2, $1, $3, 'Dự thảo đề án', 'Tóm tắt', $4,
                    '[]'::jsonb, '{}'::jsonb, 'closed', $5, $5)
                """,
                rid,
                agency,
                f.kind.value,
                f.expertise_fields,
                f.submitted_at,
            )
            for i, e in enumerate(t.events):
                await conn.execute(
                    "INSERT INTO audit_log (idempotency_key, request_id, at, actor, action,"
                    " stage, details) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    f"report-test:{rid}:{i}",
                    rid,
                    e.at,
                    e.actor,
                    e.action,
                    e.stage.value if e.stage else None,
                    e.details,
                )
            await db_reports.refresh(conn, rid, policy)


def advisory_in(cwd: Path, *args: str, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    """`advisory` run in `cwd` (where a report is written by default)."""
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ADVISORY_CLI_AS": "coordinator:VP01",
            **env_vars,
        },
    )


async def run_in(cwd: Path, *args: str, env_vars: dict[str, str]):
    import asyncio

    return await asyncio.to_thread(advisory_in, cwd, *args, env_vars=env_vars)


@pytest.fixture
async def agency_year(pool, policy):
    """The hand-built year, sent by an agency of this test's own."""
    code = f"RPT{uuid.uuid4().hex[:6].upper()}"
    await register_agency(pool, code, name=f"Sở Khoa học và Công nghệ {code}")
    await store(pool, year(), code, policy)
    return code


async def test_the_cli_writes_each_format_with_the_reports_figures(
    pool, database_url, policy, agency_year, tmp_path
):
    env_vars = {"DATABASE_URL": database_url}
    out = await run_in(
        tmp_path,
        "report",
        "--period",
        "2026",
        "--agency",
        agency_year,
        "--format",
        "csv",
        "--output",
        "year.csv",
        env_vars=env_vars,
    )
    assert out.returncode == 0, out.stderr
    written = tmp_path / "year.csv"
    assert out.stdout.strip() == f"wrote {written.resolve()}"
    async with pool.acquire() as conn:
        expected = await db_reports.report(
            conn,
            parse_period("2026"),
            ReportFilter(agencies=frozenset({agency_year})),
            policy=policy,
            as_of=datetime.now(UTC),
        )
    rows = read_csv(written.read_bytes())
    got = {tuple(r[1:5]): number(r[5]) for r in rows[1:] if r[1] != "Tổng quan"}
    assert got == expected_figures(expected, Words("vi"))
    assert got[("Hồ sơ", "Tất cả", "", "Tiếp nhận")] == 8

    out = await run_in(
        tmp_path,
        "report",
        "--period",
        "2026",
        "--agency",
        agency_year,
        "--kind",
        "critique",
        "advisory",
        "--format",
        "xlsx",
        "--language",
        "en",
        env_vars=env_vars,
    )
    assert out.returncode == 0, out.stderr
    book = workbook((tmp_path / "report-2026.xlsx").read_bytes())
    overview = {row[1]: row[2] for row in table(book["Overview"])[1]}
    assert overview["Agencies"] == agency_year
    assert overview["Kinds of request"] == "Advisory, Critique"
    assert overview["Received"] == 7

    out = await run_in(
        tmp_path,
        "report",
        "--period",
        "2026",
        "--agency",
        agency_year,
        "--format",
        "pdf",
        env_vars=env_vars,
    )
    assert out.returncode == 0, out.stderr
    text = pdf_text((tmp_path / "bao-cao-2026.pdf").read_bytes())
    assert "Kết quả hoạt động tư vấn, phản biện và giám định xã hội năm 2026" in text
    assert f"Sở Khoa học và Công nghệ {agency_year}" in text  # the filter, by the registry's name
    assert "đã tiếp nhận 8 hồ sơ" in text
    assert date_line("Bắc Giang", datetime.now(VN_TZ).date()) in text
    assert "TL. CHỦ TỊCH CHÁNH VĂN PHÒNG Nguyễn Thị Lan" in text  # VP01 from the registry


async def test_the_cli_refuses_a_bad_period_or_an_unknown_agency_and_writes_nothing(
    database_url, agency_year, tmp_path
):
    env_vars = {"DATABASE_URL": database_url}
    for args, option, rule in [
        (["--period", "2026-13"], "--period", "'2026-13': a month is 01 to 12"),
        (
            ["--period", "last year"],
            "--period",
            "'last year' is not a period: write a year (2026), a quarter (2026-Q3), a month "
            "(2026-07) or two dates (2026-01-01..2026-06-30)",
        ),
        (
            ["--period", "2026", "--agency", agency_year, "NO-SUCH"],
            "--agency",
            "no registered agency has the code 'NO-SUCH'",
        ),
        (
            ["--period", "2026", "--field", "astrology"],
            "--field",
            "no expert is registered in the field 'astrology'",
        ),
    ]:
        out = await run_in(tmp_path, "report", *args, "--format", "pdf", env_vars=env_vars)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.strip() == f"advisory: {option}: {rule}", args
        assert "Traceback" not in out.stderr
        assert list(tmp_path.iterdir()) == [], args
    # Standard output is for CSV only: a PDF there would be bytes on a terminal.
    out = await run_in(
        tmp_path,
        "report",
        "--period",
        "2026",
        "--format",
        "xlsx",
        "--output",
        "-",
        env_vars=env_vars,
    )
    assert out.returncode == 2 and out.stderr.startswith("advisory: --output:")
    assert list(tmp_path.iterdir()) == []


def test_counts_in_the_pdf_are_written_as_their_reader_writes_them():
    """43.970 in Vietnamese sentences, 43,970 in English; a year stays a year."""
    from starter.reports.words import Words

    vi, en = Words("vi"), Words("en")
    sentence = (
        "Deadlines were extended %(n)s time, by %(days)s working days in all.",
        "Deadlines were extended %(n)s times, by %(days)s working days in all.",
    )
    assert "43.970" in vi.ngettext(*sentence, 43970, days=1234)
    assert "1.234" in vi.ngettext(*sentence, 43970, days=1234)
    assert "43,970" in en.ngettext(*sentence, 43970, days=1234)
    assert vi.period(parse_period("2026")).endswith("2026")
    assert "2026" in vi.period(parse_period("2026-Q3"))
