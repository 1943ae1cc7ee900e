"""The approved conclusion as a PDF: every part of the page, every Vietnamese letter, read back
by an extractor that is not the writer (pypdf), on A4, flowing onto further pages."""

from __future__ import annotations

import io
import unicodedata
from datetime import date

import pypdf
import pytest
from pydantic import ValidationError

from activities.conclusion_pdf import render_conclusion_pdf
from activities.letterhead import font_files
from domain.documents import ConclusionDocument, date_line, recipient_lines
from domain.policy import UnionIdentity

VOWELS = "aăâeêioôơuưy"
TONES = "\u0300\u0301\u0309\u0303\u0323"  # huyền, sắc, hỏi, ngã, nặng
# Every letter of Vietnamese, each vowel with each tone, in both cases.
LETTERS = " ".join(
    "".join(unicodedata.normalize("NFC", v + t) for t in ("", *TONES)) for v in VOWELS
)
ALPHABET = f"{LETTERS} đ bcdghklmnpqrstvx"
MARKS = f"Đủ dấu: {ALPHABET} {ALPHABET.upper()} ắằẳẵặ ấầẩẫậ ếềểễệ ốồổỗộ ớờởỡợ ứừửữự ỳỷỹỵý đĐ."

UNION = UnionIdentity(
    name="Liên hiệp các Hội Khoa học và Kỹ thuật tỉnh Bắc Giang",
    name_en="Bac Giang Union of Science and Technology Associations",
    short_name="Liên hiệp hội tỉnh Bắc Giang",
    parent="UBND tỉnh Bắc Giang",
    place="Bắc Giang",
    document_symbol="LHH-TVPB",
    recipients=["Như trên", "Thường trực Tỉnh ủy (để b/c)", "Lưu: VT, TVPB"],
    authority=["TL. CHỦ TỊCH"],
    signatures={
        "Phó Chủ tịch Liên hiệp hội": {
            "authority": ["TM. BAN THƯỜNG VỤ", "KT. CHỦ TỊCH"],
            "title": "PHÓ CHỦ TỊCH",
        }
    },
)

PARAGRAPHS = [
    "Thực hiện đề nghị của Sở Giao thông vận tải tỉnh Bắc Giang, Liên hiệp các Hội Khoa học và "
    "Kỹ thuật tỉnh Bắc Giang đã tổ chức Hội đồng phản biện Dự thảo Đề án phát triển giao thông "
    "nông thôn giai đoạn 2026 - 2030, tầm nhìn đến năm 2045.",
    "Hội đồng đánh giá Dự thảo được chuẩn bị công phu, bố cục hợp lý; tuy nhiên phần đánh giá "
    "thực trạng còn thiếu số liệu về suất đầu tư, nguồn vốn và khả năng huy động xã hội hóa; "
    "một số chỉ tiêu chưa có căn cứ định lượng rõ ràng (ưu tiên, lộ trình, kiểm soát rủi ro).",
    MARKS,
]
POINTS = [
    "Bổ sung số liệu đánh giá thực trạng kết cấu hạ tầng giao thông nông thôn theo từng huyện.",
    "Làm rõ cơ chế huy động nguồn lực xã hội hóa và lộ trình đầu tư theo từng giai đoạn.",
]


def sample(**changes) -> ConclusionDocument:
    page = dict(
        date=date(2026, 11, 25),
        subject="Phản biện Dự thảo Đề án phát triển giao thông nông thôn tỉnh Bắc Giang",
        addressee="Sở Giao thông vận tải tỉnh Bắc Giang",
        recommendation="Đồng thuận có điều chỉnh",
        text="\n".join(PARAGRAPHS),
        points=POINTS,
        signer_name="Vũ Quang Hải",
    )
    page.update(changes)
    return ConclusionDocument.for_union(
        UNION, number=12, signer_registered_title="Phó Chủ tịch Liên hiệp hội", **page
    )


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def pages(pdf: bytes) -> list[pypdf.PageObject]:
    return list(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def page_text(pdf: bytes) -> str:
    """The document's words in reading order, the page numbers of pages 2.. taken off (each
    checked to be its page's number)."""
    texts = []
    for n, page in enumerate(pages(pdf), start=1):
        text = page.extract_text()
        if n > 1:
            number, _, text = text.partition("\n")
            assert number.strip() == str(n)
        texts.append(text)
    return norm("\n".join(texts))


def assert_in_order(text: str, parts: list[str]) -> None:
    at = 0
    for part in parts:
        found = text.find(norm(part), at)
        assert found >= 0, f"not on the page (after position {at}): {part!r}"
        at = found + len(norm(part))


def parts_of(doc: ConclusionDocument) -> list[str]:
    """Every part of the page, in the order it is written."""
    return [
        doc.issuer_parent.upper(),
        doc.issuer.upper(),
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        f"Số: {doc.number}",
        date_line(doc.place, doc.date),
        f"V/v {doc.subject}",
        f"Kính gửi: {doc.addressee}.",
        *[p for p in doc.text.splitlines() if p],
        f"Khuyến nghị của Hội đồng: {doc.recommendation}.",
        "Đề nghị Quý cơ quan nghiên cứu, tiếp thu các nội dung sau:",
        *[f"{i}. {p}" for i, p in enumerate(doc.points, start=1)],
        "Trân trọng./.",
        *doc.signing_authority,
        doc.signer_title,
        doc.signer_name,
        "Nơi nhận:",
        *recipient_lines(doc.recipients),
    ]


def test_every_part_is_on_the_page_letter_for_letter():
    doc = sample()
    text = page_text(render_conclusion_pdf(doc))
    assert_in_order(text, parts_of(doc))
    # Exactly as given: a letter the font lacked would be missing here (the writer drops it).
    assert norm(MARKS) in text
    assert "12/LHH-TVPB" in text and "ngày 25 tháng 11 năm 2026" in text
    assert "TM. BAN THƯỜNG VỤ KT. CHỦ TỊCH PHÓ CHỦ TỊCH Vũ Quang Hải" in text


def test_a_letter_the_font_lacks_would_fail_the_comparison():
    # The check above holds only if a missing glyph is missing from the text read back.
    text = page_text(render_conclusion_pdf(sample(recommendation="Đồng thuận 中")))
    assert "Khuyến nghị của Hội đồng: Đồng thuận 中." not in text


def test_every_page_is_a4():
    mm = 25.4 / 72
    for page in pages(render_conclusion_pdf(sample(text="\n".join(PARAGRAPHS * 4)))):
        assert float(page.mediabox.width) * mm == pytest.approx(210, abs=0.1)
        assert float(page.mediabox.height) * mm == pytest.approx(297, abs=0.1)


def test_a_long_conclusion_flows_onto_numbered_pages():
    doc = sample(text="\n".join(PARAGRAPHS * 8), points=POINTS * 3)
    pdf = render_conclusion_pdf(doc)
    assert len(pages(pdf)) >= 2
    # Every paragraph whole, in order, across the page breaks; the signature block and the
    # recipients after the text, and whole on the last page.
    assert_in_order(page_text(pdf), parts_of(doc))
    last = norm(pages(pdf)[-1].extract_text())
    assert "PHÓ CHỦ TỊCH Vũ Quang Hải Nơi nhận:" in last


def test_the_signature_never_stands_alone_on_a_page():
    # Conclusions of every length around a page's end: the signature block and the end of
    # the text are on one page, the block whole.
    for extra in range(14):
        doc = sample(text="\n".join([*PARAGRAPHS, *["Hội đồng thống nhất ý kiến."] * extra]))
        last = norm(pages(render_conclusion_pdf(doc))[-1].extract_text())
        assert "Trân trọng./." in last and "PHÓ CHỦ TỊCH Vũ Quang Hải" in last, extra


def test_text_typed_decomposed_is_printed_composed():
    decomposed = unicodedata.normalize("NFD", MARKS)
    assert decomposed != MARKS
    text = page_text(render_conclusion_pdf(sample(text=decomposed, points=[])))
    assert norm(MARKS) in text


def test_the_same_document_gives_the_same_bytes():
    # Content-addressed storage: a retried rendering stores nothing new.
    assert render_conclusion_pdf(sample()) == render_conclusion_pdf(sample())
    assert render_conclusion_pdf(sample()) != render_conclusion_pdf(sample(signer_name="Lê Hoa"))


def test_the_font_comes_from_the_installed_package():
    files = font_files()
    assert set(files) == {"", "B", "I", "BI"}
    assert all(path.is_file() and "site-packages" in path.parts for path in files.values())


def test_the_date_line_writes_small_days_and_months_with_a_zero():
    assert date_line("Bắc Giang", date(2026, 11, 25)) == "Bắc Giang, ngày 25 tháng 11 năm 2026"
    assert date_line("Bắc Giang", date(2026, 2, 5)) == "Bắc Giang, ngày 05 tháng 02 năm 2026"
    assert date_line("Bắc Giang", date(2026, 3, 9)) == "Bắc Giang, ngày 09 tháng 3 năm 2026"


def test_the_union_gives_letterhead_number_and_signature():
    doc = sample(subject="V/v phản biện Dự thảo")
    assert doc.number == "12/LHH-TVPB"
    assert doc.subject == "phản biện Dự thảo"
    assert (doc.issuer, doc.issuer_parent, doc.place) == (UNION.name, UNION.parent, UNION.place)
    assert doc.signing_authority == ["TM. BAN THƯỜNG VỤ", "KT. CHỦ TỊCH"]
    assert doc.signer_title == "PHÓ CHỦ TỊCH"
    # The registry's title matched however it is spaced or capitalised; a title the policy
    # does not list signs under the default authority, in capitals.
    assert UNION.signature("  phó CHỦ tịch liên hiệp   hội").title == "PHÓ CHỦ TỊCH"
    other = UNION.signature("Chánh Văn phòng")
    assert (other.authority, other.title) == (["TL. CHỦ TỊCH"], "CHÁNH VĂN PHÒNG")
    assert recipient_lines(UNION.recipients) == [
        "- Như trên;",
        "- Thường trực Tỉnh ủy (để b/c);",
        "- Lưu: VT, TVPB.",
    ]
    with pytest.raises(ValueError, match="number: 0"):
        UNION.document_number(0)
    with pytest.raises(ValidationError, match="document_symbol"):
        UnionIdentity.model_validate({**UNION.model_dump(), "document_symbol": "lhh tvpb"})
