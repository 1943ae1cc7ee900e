"""Prints an approved conclusion as a PDF in the administrative format of Decree 30/2020/NĐ-CP
(Appendix I): A4, margins 20 mm top and bottom, 30 mm left, 15 mm right; the two-column
header (the Union's name left, the national title and motto right, in bold); the number left and
the place and date right in italics; the subject under the number; the addressee centred; the
body justified with indented first lines; the signature block right and Nơi nhận left; page
numbers from the second page, centred in the top margin.

Pure: the only input is the document and the only I/O is reading the font files. The same
document gives the same bytes (the creation date is the document's date), so a retried
activity stores the same content under the same digest.

The font is IBM Plex Serif, from a PyPI package (static TrueType files with every Vietnamese
letter): the decree names Times New Roman, which may not be redistributed.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import fontpkg
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from domain.documents import ConclusionDocument, date_line, recipient_lines

FAMILY = "IBM Plex Serif"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

# Page geometry, millimetres.
TOP, BOTTOM, LEFT, RIGHT = 20, 20, 30, 15
WIDTH = 210 - LEFT - RIGHT
# The header's columns: the Union's name and number left, the national title and date right.
LEFT_COL = 72
RIGHT_COL = WIDTH - LEFT_COL
# The signature block takes the right half under the body, Nơi nhận the left.
SIGN_COL = 85
# Room left for the signature and the seal between the title and the name.
SIGNATURE_SPACE = 24

# Sizes, points (Appendix I's ranges: 12-13 for the letterhead, 13-14 for the rest).
HEADER = 12.5
MOTTO = 13
BODY = 13.5
RECIPIENTS_LABEL = 12
RECIPIENTS = 11
# Line height as a multiple of the font size; paragraphs are 6 pt apart.
LEADING = 1.3
PARAGRAPH_GAP = 6 * 25.4 / 72
INDENT = 10
# Paragraphs that go over to the next page with a signature block that does not fit under them
# (the last point or the recommendation, and the closing).
KEEP_WITH_SIGNATURE = 2

NATIONAL_TITLE = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO_TEXT = "Độc lập - Tự do - Hạnh phúc"
# The letter's own words around what the council wrote.
RECOMMENDATION = "Khuyến nghị của Hội đồng: {}."
POINTS = "Đề nghị Quý cơ quan nghiên cứu, tiếp thu các nội dung sau:"
CLOSING = "Trân trọng./."


@lru_cache(maxsize=1)
def font_files() -> dict[str, Path]:
    """Style ("", "B", "I", "BI") to its TrueType file in the installed font package."""
    return {
        style: fontpkg.path(FAMILY, weight=700 if "B" in style else 400, style=italic)
        for style, italic in (("", "normal"), ("B", "normal"), ("I", "italic"), ("BI", "italic"))
    }


def _pt(size: float) -> float:
    """A line's height in millimetres for a font size in points."""
    return size * LEADING * 25.4 / 72


def nfc(text: str) -> str:
    # Text typed on some systems arrives decomposed (a letter, then its marks); without a
    # shaping engine each mark would be placed on its own. Every Vietnamese letter has a
    # precomposed form, which the font draws as one glyph.
    return unicodedata.normalize("NFC", text)


class _Page(FPDF):
    def header(self) -> None:
        # Page numbers from the second page, centred in the top margin (Appendix I).
        if self.page_no() > 1:
            self.set_font(FAMILY, "", BODY)
            self.set_xy(LEFT, 8)
            self.cell(WIDTH, _pt(BODY), str(self.page_no()), align="C")
            self.set_xy(LEFT, TOP)


def render_conclusion_pdf(doc: ConclusionDocument) -> bytes:
    pdf, alone = _draw(doc, keep=0)
    if alone:
        # The signature would stand alone at the top of a page: the end of the text goes over
        # with it, as a typist would have it.
        pdf, _ = _draw(doc, keep=KEEP_WITH_SIGNATURE)
    return bytes(pdf.output())


def _draw(doc: ConclusionDocument, keep: int) -> tuple[FPDF, bool]:
    """The page, the last `keep` paragraphs starting a new page; and whether the signature
    block had to start a page of its own."""
    pdf = _Page(orientation="P", unit="mm", format="A4")
    for style, path in font_files().items():
        pdf.add_font(FAMILY, style, path)
    pdf.set_margins(LEFT, TOP, RIGHT)
    pdf.set_auto_page_break(True, margin=BOTTOM)
    pdf.set_creation_date(datetime.combine(doc.date, time(), LOCAL))
    pdf.set_title(nfc(f"{doc.number} V/v {doc.subject}"))
    pdf.set_author(nfc(doc.issuer))
    pdf.set_lang("vi")
    pdf.add_page()

    _header(pdf, doc)
    _addressee(pdf, doc)
    paragraphs = _paragraphs(doc)
    split = len(paragraphs) - keep
    _body(pdf, paragraphs[:split])
    if keep:
        pdf.add_page()
        _body(pdf, paragraphs[split:])
    return pdf, _signature_and_recipients(pdf, doc)


def _centred(pdf: FPDF, x: float, width: float, text: str, style: str, size: float) -> None:
    """Wraps `text` centred in the column at x, in as few lines as the column allows and with
    those lines as even as they can be ("LIÊN HIỆP CÁC HỘI / KHOA HỌC VÀ KỸ THUẬT / TỈNH BẮC
    GIANG", not a last line of one word)."""
    pdf.set_font(FAMILY, style, size)
    text = nfc(text)
    narrow = _balanced(pdf, text, width)
    pdf.set_x(x + (width - narrow) / 2)
    pdf.multi_cell(narrow, _pt(size), text, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)


def _lines(pdf: FPDF, text: str, width: float) -> list[str]:
    return pdf.multi_cell(width, 1, nfc(text), align="C", dry_run=True, output="LINES")


def _balanced(pdf: FPDF, text: str, width: float) -> float:
    """The narrowest width that keeps `text` in as few lines as `width` does."""
    lines = len(_lines(pdf, text, width))
    if lines == 1:
        return width
    low, high = width / lines, width
    while high - low > 0.5:
        middle = (low + high) / 2
        if len(_lines(pdf, text, middle)) <= lines:
            high = middle
        else:
            low = middle
    return min(width, high + 1)


def _fitting(pdf: FPDF, text: str, style: str, size: float, width: float) -> float:
    """The largest size down from `size`, by quarter points, at which `text` is one line."""
    while size > 10:
        pdf.set_font(FAMILY, style, size)
        if pdf.get_string_width(text) <= width - 2:
            break
        size -= 0.25
    return size


def _rule(pdf: FPDF, centre: float, length: float, y: float) -> None:
    pdf.set_line_width(0.3)
    pdf.line(centre - length / 2, y, centre + length / 2, y)


def _header(pdf: FPDF, doc: ConclusionDocument) -> None:
    left_centre = LEFT + LEFT_COL / 2
    right_x = LEFT + LEFT_COL
    right_centre = right_x + RIGHT_COL / 2

    # Left: the governing body (regular) and the Union (bold), in capitals; a rule under the
    # name a third to a half as long.
    pdf.set_y(TOP)
    if doc.issuer_parent:
        _centred(pdf, LEFT, LEFT_COL, doc.issuer_parent.upper(), "", HEADER)
    name = nfc(doc.issuer.upper())
    _centred(pdf, LEFT, LEFT_COL, name, "B", HEADER)
    rule_y = pdf.get_y() + 0.8
    lines = _lines(pdf, name, _balanced(pdf, name, LEFT_COL))
    _rule(pdf, left_centre, max(pdf.get_string_width(line) for line in lines) * 0.4, rule_y)
    left_bottom = rule_y

    # Right: the national title and the motto, bold, the motto underlined its full length.
    title = nfc(NATIONAL_TITLE)
    motto = nfc(MOTTO_TEXT)
    pdf.set_y(TOP)
    _centred(pdf, right_x, RIGHT_COL, title, "B", _fitting(pdf, title, "B", HEADER, RIGHT_COL))
    size = _fitting(pdf, motto, "B", MOTTO + 0.5, RIGHT_COL)
    _centred(pdf, right_x, RIGHT_COL, motto, "B", size)
    pdf.set_font(FAMILY, "B", size)
    rule_y = pdf.get_y() + 0.8
    _rule(pdf, right_centre, pdf.get_string_width(motto), rule_y)
    right_bottom = rule_y

    # The number (left) and the place and date (right, italic) on one line under both.
    line_y = max(left_bottom, right_bottom) + 4
    pdf.set_y(line_y)
    _centred(pdf, LEFT, LEFT_COL, f"Số: {doc.number}", "", HEADER + 0.5)
    subject_y = pdf.get_y()
    pdf.set_y(line_y)
    when = date_line(doc.place, doc.date)
    _centred(pdf, right_x, RIGHT_COL, when, "I", _fitting(pdf, nfc(when), "I", BODY, RIGHT_COL))
    date_bottom = pdf.get_y()

    # The subject (trích yếu) of an official letter stands under its number.
    pdf.set_y(subject_y + 0.5)
    _centred(pdf, LEFT, LEFT_COL, f"V/v {doc.subject}", "", HEADER)
    pdf.set_y(max(pdf.get_y(), date_bottom) + 6)


def _addressee(pdf: FPDF, doc: ConclusionDocument) -> None:
    addressee = doc.addressee if doc.addressee[-1:] in ".;:" else f"{doc.addressee}."
    _centred(pdf, LEFT, WIDTH, f"Kính gửi: {addressee}", "", BODY + 0.5)
    pdf.set_y(pdf.get_y() + 4)


def _paragraphs(doc: ConclusionDocument) -> list[str]:
    paragraphs = [p.strip() for p in doc.text.splitlines() if p.strip()]
    paragraphs.append(RECOMMENDATION.format(doc.recommendation.rstrip(" .")))
    if doc.points:
        paragraphs.append(POINTS)
        paragraphs += [f"{i}. {p.strip()}" for i, p in enumerate(doc.points, start=1)]
    paragraphs.append(CLOSING)
    return paragraphs


def _body(pdf: FPDF, paragraphs: list[str]) -> None:
    pdf.set_font(FAMILY, "", BODY)
    with pdf.text_columns(text_align="J", line_height=LEADING) as cols:
        for text in paragraphs:
            with cols.paragraph(first_line_indent=INDENT, bottom_margin=PARAGRAPH_GAP) as p:
                p.write(nfc(text))


def _signature_and_recipients(pdf: FPDF, doc: ConclusionDocument) -> bool:
    sign_x = LEFT + WIDTH - SIGN_COL
    block = [*doc.signing_authority, doc.signer_title]
    pdf.set_font(FAMILY, "B", BODY)
    height = sum(len(_lines(pdf, line.upper(), SIGN_COL)) for line in block) * _pt(BODY)
    height += SIGNATURE_SPACE + _pt(BODY + 0.5)
    items = recipient_lines(doc.recipients)
    pdf.set_font(FAMILY, "", RECIPIENTS)
    listed = sum(len(_lines(pdf, r, sign_x - LEFT - 4)) for r in items) * _pt(RECIPIENTS)
    height = max(height, _pt(RECIPIENTS_LABEL) + listed)
    # The signature block is never cut from its name: if it does not fit, it starts the next
    # page whole (and the caller brings the end of the text over with it).
    top = pdf.get_y() + 2
    alone = top + height > pdf.h - BOTTOM
    if alone:
        pdf.add_page()
        top = pdf.get_y()

    # Right: authority lines and title in bold capitals, room for the signature, the name.
    pdf.set_y(top)
    for line in block:
        _centred(pdf, sign_x, SIGN_COL, line.upper(), "B", BODY)
    pdf.set_y(pdf.get_y() + SIGNATURE_SPACE)
    _centred(pdf, sign_x, SIGN_COL, doc.signer_name, "B", BODY + 0.5)

    # Left: "Nơi nhận:" in bold italics, the recipients small, one a line.
    pdf.set_y(top)
    pdf.set_x(LEFT)
    pdf.set_font(FAMILY, "BI", RECIPIENTS_LABEL)
    pdf.cell(0, _pt(RECIPIENTS_LABEL), nfc("Nơi nhận:"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FAMILY, "", RECIPIENTS)
    for item in items:
        pdf.set_x(LEFT)
        pdf.multi_cell(
            sign_x - LEFT - 4,
            _pt(RECIPIENTS) * 0.95,
            nfc(item),
            align="L",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    return alone
