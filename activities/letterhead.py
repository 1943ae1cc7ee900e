"""The page every document of the Union is printed on, in the administrative format of Decree
30/2020/NĐ-CP (Appendix I): A4, margins 20 mm top and bottom, 30 mm left, 15 mm right; the
two-column header (the Union's name left, the national title and motto right, in bold); the
number left and the place and date right in italics; paragraphs justified with indented first
lines; the signature block right and Nơi nhận left; page numbers from the second page, centred
in the top margin. The conclusion (activities/conclusion_pdf.py) and the reports' PDF
(starter/reports/exports.py) print their own content between the header and the signature.

Pure: the only I/O is reading the font files. Nothing on the page depends on the clock (the
creation date is the document's date), so the same document gives the same bytes.

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

from domain.documents import OfficialDocument, date_line, recipient_lines

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

NATIONAL_TITLE = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO_TEXT = "Độc lập - Tự do - Hạnh phúc"
# A number left for the register to write in is printed with room for it: "Số:      /BC-LHH".
BLANK_NUMBER = " " * 8


@lru_cache(maxsize=1)
def font_files() -> dict[str, Path]:
    """Style ("", "B", "I", "BI") to its TrueType file in the installed font package."""
    return {
        style: fontpkg.path(FAMILY, weight=700 if "B" in style else 400, style=italic)
        for style, italic in (("", "normal"), ("B", "normal"), ("I", "italic"), ("BI", "italic"))
    }


def line_height(size: float) -> float:
    """A line's height in millimetres for a font size in points."""
    return size * LEADING * 25.4 / 72


def nfc(text: str) -> str:
    # Text typed on some systems arrives decomposed (a letter, then its marks); without a
    # shaping engine each mark would be placed on its own. Every Vietnamese letter has a
    # precomposed form, which the font draws as one glyph.
    return unicodedata.normalize("NFC", text)


class Page(FPDF):
    def header(self) -> None:
        # Page numbers from the second page, centred in the top margin (Appendix I).
        if self.page_no() > 1:
            self.set_font(FAMILY, "", BODY)
            self.set_xy(LEFT, 8)
            self.cell(WIDTH, line_height(BODY), str(self.page_no()), align="C")
            self.set_xy(LEFT, TOP)


def new_document(doc: OfficialDocument, title: str) -> Page:
    """An A4 document with the fonts and margins of the format, its first page begun; `title`
    is what a PDF reader shows as the document's title."""
    pdf = Page(orientation="P", unit="mm", format="A4")
    for style, path in font_files().items():
        pdf.add_font(FAMILY, style, path)
    pdf.set_margins(LEFT, TOP, RIGHT)
    pdf.set_auto_page_break(True, margin=BOTTOM)
    pdf.set_creation_date(datetime.combine(doc.date, time(), LOCAL))
    pdf.set_title(nfc(title))
    pdf.set_author(nfc(doc.issuer))
    pdf.set_lang("vi")
    pdf.add_page()
    return pdf


def centred(pdf: FPDF, x: float, width: float, text: str, style: str, size: float) -> None:
    """Wraps `text` centred in the column at x, in as few lines as the column allows and with
    those lines as even as they can be ("LIÊN HIỆP CÁC HỘI / KHOA HỌC VÀ KỸ THUẬT / TỈNH BẮC
    GIANG", not a last line of one word)."""
    pdf.set_font(FAMILY, style, size)
    text = nfc(text)
    narrow = balanced(pdf, text, width)
    pdf.set_x(x + (width - narrow) / 2)
    pdf.multi_cell(narrow, line_height(size), text, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)


def lines(pdf: FPDF, text: str, width: float) -> list[str]:
    return pdf.multi_cell(width, 1, nfc(text), align="C", dry_run=True, output="LINES")


def balanced(pdf: FPDF, text: str, width: float) -> float:
    """The narrowest width that keeps `text` in as few lines as `width` does."""
    count = len(lines(pdf, text, width))
    if count == 1:
        return width
    low, high = width / count, width
    while high - low > 0.5:
        middle = (low + high) / 2
        if len(lines(pdf, text, middle)) <= count:
            high = middle
        else:
            low = middle
    return min(width, high + 1)


def fitting(pdf: FPDF, text: str, style: str, size: float, width: float) -> float:
    """The largest size down from `size`, by quarter points, at which `text` is one line."""
    while size > 10:
        pdf.set_font(FAMILY, style, size)
        if pdf.get_string_width(text) <= width - 2:
            break
        size -= 0.25
    return size


def rule(pdf: FPDF, centre: float, length: float, y: float) -> None:
    pdf.set_line_width(0.3)
    pdf.line(centre - length / 2, y, centre + length / 2, y)


def letterhead(pdf: FPDF, doc: OfficialDocument, subject: str | None = None) -> None:
    """The header of the first page; `subject` (an official letter's "V/v ...") under the
    number. Leaves the cursor under the header, where the document's own content begins."""
    left_centre = LEFT + LEFT_COL / 2
    right_x = LEFT + LEFT_COL
    right_centre = right_x + RIGHT_COL / 2

    # Left: the governing body (regular) and the Union (bold), in capitals; a rule under the
    # name a third to a half as long.
    pdf.set_y(TOP)
    if doc.issuer_parent:
        centred(pdf, LEFT, LEFT_COL, doc.issuer_parent.upper(), "", HEADER)
    name = nfc(doc.issuer.upper())
    centred(pdf, LEFT, LEFT_COL, name, "B", HEADER)
    rule_y = pdf.get_y() + 0.8
    name_lines = lines(pdf, name, balanced(pdf, name, LEFT_COL))
    rule(pdf, left_centre, max(pdf.get_string_width(line) for line in name_lines) * 0.4, rule_y)
    left_bottom = rule_y

    # Right: the national title and the motto, bold, the motto underlined its full length.
    title = nfc(NATIONAL_TITLE)
    motto = nfc(MOTTO_TEXT)
    pdf.set_y(TOP)
    centred(pdf, right_x, RIGHT_COL, title, "B", fitting(pdf, title, "B", HEADER, RIGHT_COL))
    size = fitting(pdf, motto, "B", MOTTO + 0.5, RIGHT_COL)
    centred(pdf, right_x, RIGHT_COL, motto, "B", size)
    pdf.set_font(FAMILY, "B", size)
    rule_y = pdf.get_y() + 0.8
    rule(pdf, right_centre, pdf.get_string_width(motto), rule_y)
    right_bottom = rule_y

    # The number (left) and the place and date (right, italic) on one line under both.
    line_y = max(left_bottom, right_bottom) + 4
    pdf.set_y(line_y)
    number = doc.number if doc.number[:1].isdigit() else BLANK_NUMBER + doc.number
    centred(pdf, LEFT, LEFT_COL, f"Số: {number}", "", HEADER + 0.5)
    subject_y = pdf.get_y()
    pdf.set_y(line_y)
    when = date_line(doc.place, doc.date)
    centred(pdf, right_x, RIGHT_COL, when, "I", fitting(pdf, nfc(when), "I", BODY, RIGHT_COL))
    date_bottom = pdf.get_y()

    # The subject (trích yếu) of an official letter stands under its number.
    if subject is not None:
        pdf.set_y(subject_y + 0.5)
        centred(pdf, LEFT, LEFT_COL, subject, "", HEADER)
        subject_y = pdf.get_y()
    pdf.set_y(max(subject_y, date_bottom) + 6)


def paragraphs(pdf: FPDF, texts: list[str]) -> None:
    """Body text: justified, first lines indented, paragraphs 6 pt apart."""
    pdf.set_font(FAMILY, "", BODY)
    with pdf.text_columns(text_align="J", line_height=LEADING) as cols:
        for text in texts:
            with cols.paragraph(first_line_indent=INDENT, bottom_margin=PARAGRAPH_GAP) as p:
                p.write(nfc(text))


def signature_height(pdf: FPDF, doc: OfficialDocument) -> float:
    """The height, millimetres, the signature block and Nơi nhận take side by side."""
    sign_x = LEFT + WIDTH - SIGN_COL
    block = [*doc.signing_authority, doc.signer_title]
    pdf.set_font(FAMILY, "B", BODY)
    height = sum(len(lines(pdf, line.upper(), SIGN_COL)) for line in block) * line_height(BODY)
    height += SIGNATURE_SPACE + line_height(BODY + 0.5)
    items = recipient_lines(doc.recipients)
    pdf.set_font(FAMILY, "", RECIPIENTS)
    listed = sum(len(lines(pdf, r, sign_x - LEFT - 4)) for r in items) * line_height(RECIPIENTS)
    return max(height, line_height(RECIPIENTS_LABEL) + listed)


def signature_and_recipients(pdf: FPDF, doc: OfficialDocument) -> bool:
    """The signature block (right) and Nơi nhận (left) under what was printed last; True
    when the block did not fit and had to start a page of its own."""
    sign_x = LEFT + WIDTH - SIGN_COL
    block = [*doc.signing_authority, doc.signer_title]
    items = recipient_lines(doc.recipients)
    # The signature block is never cut from its name: if it does not fit, it starts the next
    # page whole (and the caller may bring the end of the text over with it).
    top = pdf.get_y() + 2
    alone = top + signature_height(pdf, doc) > pdf.h - BOTTOM
    if alone:
        pdf.add_page()
        top = pdf.get_y()

    # Right: authority lines and title in bold capitals, room for the signature, the name.
    pdf.set_y(top)
    for line in block:
        centred(pdf, sign_x, SIGN_COL, line.upper(), "B", BODY)
    pdf.set_y(pdf.get_y() + SIGNATURE_SPACE)
    centred(pdf, sign_x, SIGN_COL, doc.signer_name, "B", BODY + 0.5)

    # Left: "Nơi nhận:" in bold italics, the recipients small, one a line.
    pdf.set_y(top)
    pdf.set_x(LEFT)
    pdf.set_font(FAMILY, "BI", RECIPIENTS_LABEL)
    pdf.cell(
        0, line_height(RECIPIENTS_LABEL), nfc("Nơi nhận:"), new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font(FAMILY, "", RECIPIENTS)
    for item in items:
        pdf.set_x(LEFT)
        pdf.multi_cell(
            sign_x - LEFT - 4,
            line_height(RECIPIENTS) * 0.95,
            nfc(item),
            align="L",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    return alone
