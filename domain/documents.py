"""The approved conclusion as a document: everything its page shows, in the administrative
format of Decree 30/2020/NĐ-CP (an official letter, công văn). Pure data and the few rules of
the format that are words rather than layout; activities/conclusion_pdf.py prints it.

    ┌──────────────────────────────┬─────────────────────────────────────┐
    │ [PARENT]                     │ CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM  │
    │ ISSUER                       │    Độc lập - Tự do - Hạnh phúc      │
    │   ────                       │    ───────────────────────────      │
    │ Số: 12/LHH-TVPB              │ Bắc Giang, ngày 25 tháng 11 năm 2026│
    │ V/v subject                  │                                     │
    └──────────────────────────────┴─────────────────────────────────────┘
                         Kính gửi: addressee.
        text, paragraph by paragraph; the recommendation; the points, numbered
    Nơi nhận:                                     AUTHORITY LINES
    - Như trên;                                   SIGNER TITLE
    - Lưu: VT, TVPB.                              (signature, seal)
                                                  Signer Name
"""

from __future__ import annotations

from datetime import date as Date
from typing import Annotated

from pydantic import Field, field_validator

from domain.models import Model, ShortText, Text
from domain.policy import Line, UnionIdentity


class ConclusionDocument(Model):
    """One approved conclusion as printed. Filled from the Union's identity (see `for_union`),
    the request, the approved draft and the approving coordinator's registry entry."""

    # The letterhead: the Union's full name (printed in capitals) and the line above it.
    issuer: ShortText
    issuer_parent: Line | None = None
    # Số và ký hiệu, given once on approval: "12/LHH-TVPB".
    number: Annotated[str, Field(min_length=3, max_length=60, pattern=r"^\d+/\S+$")]
    place: Line
    date: Date
    # Trích yếu: what the letter is about, printed after "V/v".
    subject: ShortText
    # Kính gửi: the requesting agency's registered name.
    addressee: ShortText
    # The council's recommendation as worded for the agency ("Đồng thuận có điều chỉnh").
    recommendation: ShortText
    # The conclusion; each line is a paragraph.
    text: Text
    # What the agency is asked to take up, printed numbered after the recommendation.
    points: list[Text] = []
    # The signature block: authority lines, the title as printed, the registered name.
    signing_authority: list[Line] = []
    signer_title: Line
    signer_name: ShortText
    # Nơi nhận, in order ("Như trên" for the addressee, "Lưu: VT, ...").
    recipients: list[Line] = Field(min_length=1)

    @field_validator("subject")
    @classmethod
    def _without_vv(cls, v: str) -> str:
        # The page prints "V/v" itself; a subject written with it is not printed twice.
        head = v[:4].casefold()
        return v[4:].lstrip() if head in ("v/v ", "v/v:") else v

    @classmethod
    def for_union(
        cls,
        union: UnionIdentity,
        *,
        number: int,
        signer_registered_title: str,
        **page: object,
    ) -> ConclusionDocument:
        """The page in the Union's letterhead: its name, place and recipients, the number in
        its symbol, and the signature block its policy gives the signer's registered title."""
        signature = union.signature(signer_registered_title)
        return cls.model_validate(
            {
                "issuer": union.name,
                "issuer_parent": union.parent,
                "number": union.document_number(number),
                "place": union.place,
                "recipients": union.recipients,
                "signing_authority": signature.authority,
                "signer_title": signature.title,
                **page,
            }
        )


def date_line(place: str, on: Date) -> str:
    """ "Bắc Giang, ngày 05 tháng 02 năm 2026": a day below 10 and the months 1 and 2 are
    written with a leading zero (Decree 30/2020/NĐ-CP, Appendix I)."""
    month = f"{on.month:02d}" if on.month <= 2 else str(on.month)
    return f"{place}, ngày {on.day:02d} tháng {month} năm {on.year}"


def recipient_lines(recipients: list[str]) -> list[str]:
    """Nơi nhận as printed: each on its own line after a dash, a semicolon after each but the
    last, which ends with a full stop."""
    items = [r.rstrip(" ;.") for r in recipients]
    return [f"- {r}{'.' if i == len(items) - 1 else ';'}" for i, r in enumerate(items)]
