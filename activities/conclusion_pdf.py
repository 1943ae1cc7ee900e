"""Prints an approved conclusion as a PDF: an official letter (công văn) on the Union's page
(activities/letterhead.py, Decree 30/2020/NĐ-CP's format), its subject under the number, the
addressee centred under the header, the council's text, the recommendation and the points,
then the signature block and Nơi nhận.

Pure: the only input is the document and the only I/O is reading the font files. The same
document gives the same bytes (the creation date is the document's date), so a retried
activity stores the same content under the same digest.
"""

from __future__ import annotations

from fpdf import FPDF

from activities.letterhead import (
    BODY,
    LEFT,
    WIDTH,
    centred,
    letterhead,
    new_document,
    paragraphs,
    signature_and_recipients,
)
from domain.documents import ConclusionDocument

# Paragraphs that go over to the next page with a signature block that does not fit under them
# (the last point or the recommendation, and the closing).
KEEP_WITH_SIGNATURE = 2

# The letter's own words around what the council wrote.
RECOMMENDATION = "Khuyến nghị của Hội đồng: {}."
POINTS = "Đề nghị Quý cơ quan nghiên cứu, tiếp thu các nội dung sau:"
CLOSING = "Trân trọng./."


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
    pdf = new_document(doc, f"{doc.number} V/v {doc.subject}")
    letterhead(pdf, doc, subject=f"V/v {doc.subject}")
    _addressee(pdf, doc)
    texts = _paragraphs(doc)
    split = len(texts) - keep
    paragraphs(pdf, texts[:split])
    if keep:
        pdf.add_page()
        paragraphs(pdf, texts[split:])
    return pdf, signature_and_recipients(pdf, doc)


def _addressee(pdf: FPDF, doc: ConclusionDocument) -> None:
    addressee = doc.addressee if doc.addressee[-1:] in ".;:" else f"{doc.addressee}."
    centred(pdf, LEFT, WIDTH, f"Kính gửi: {addressee}", "", BODY + 0.5)
    pdf.set_y(pdf.get_y() + 4)


def _paragraphs(doc: ConclusionDocument) -> list[str]:
    texts = [p.strip() for p in doc.text.splitlines() if p.strip()]
    texts.append(RECOMMENDATION.format(doc.recommendation.rstrip(" .")))
    if doc.points:
        texts.append(POINTS)
        texts += [f"{i}. {p.strip()}" for i, p in enumerate(doc.points, start=1)]
    texts.append(CLOSING)
    return texts
