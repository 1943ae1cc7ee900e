"""The Union's documents as printed, in the administrative format of Decree 30/2020/NĐ-CP:
pure data and the few rules of the format that are words rather than layout. What every
document shares (the letterhead, the signature block, Nơi nhận) is `OfficialDocument`;
activities/letterhead.py prints it. The approved conclusion (an official letter, công văn) is
`ConclusionDocument`, printed by activities/conclusion_pdf.py; the reports' PDF is
`ReportDocument` (a document with a type name, báo cáo), printed by starter/reports/exports.py.

    ┌──────────────────────────────┬─────────────────────────────────────┐
    │ [PARENT]                     │ CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM  │
    │ ISSUER                       │    Độc lập - Tự do - Hạnh phúc      │
    │   ────                       │    ───────────────────────────      │
    │ Số: 12/LHH-TVPB              │ Bắc Giang, ngày 25 tháng 11 năm 2026│
    │ V/v subject                  │                                     │
    └──────────────────────────────┴─────────────────────────────────────┘
                                 BÁO CÁO                    (a report: its type and subject)
                              subject, in bold
                         Kính gửi: addressee.
        text, paragraph by paragraph; the recommendation; the points, numbered
    Nơi nhận:                                     AUTHORITY LINES
    - Như trên;                                   SIGNER TITLE
    - Lưu: VT, TVPB.                              (signature, seal)
                                                  Signer Name
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date as Date
from typing import Annotated

from pydantic import Field, field_validator

from domain.models import Model, ShortText, Text
from domain.policy import Line, UnionIdentity


class OfficialDocument(Model):
    """What every document the Union issues prints around its own content: the letterhead,
    the number and the date line above it; the signature block and Nơi nhận below."""

    # The letterhead: the Union's full name (printed in capitals) and the line above it.
    issuer: ShortText
    issuer_parent: Line | None = None
    # Số và ký hiệu: "12/LHH-TVPB"; "/BC-LHH" leaves the number for the register to write in.
    number: Annotated[str, Field(min_length=3, max_length=60, pattern=r"^\d*/\S+$")]
    place: Line
    date: Date
    # The signature block: authority lines, the title as printed, the registered name.
    signing_authority: list[Line] = []
    signer_title: Line
    signer_name: ShortText
    # Nơi nhận, in order ("Như trên" for the addressee, "Lưu: VT, ...").
    recipients: list[Line] = Field(min_length=1)

    @staticmethod
    def union_fields(union: UnionIdentity, signer_registered_title: str) -> dict[str, object]:
        """The Union's part of any page: its name, place and recipients, and the signature
        block its policy gives the signer's registered title."""
        signature = union.signature(signer_registered_title)
        return {
            "issuer": union.name,
            "issuer_parent": union.parent,
            "place": union.place,
            "recipients": union.recipients,
            "signing_authority": signature.authority,
            "signer_title": signature.title,
        }


class ConclusionDocument(OfficialDocument):
    """One approved conclusion as printed. Filled from the Union's identity (see `for_union`),
    the request, the approved draft and the approving coordinator's registry entry."""

    # Số và ký hiệu, given once on approval: "12/LHH-TVPB".
    number: Annotated[str, Field(min_length=3, max_length=60, pattern=r"^\d+/\S+$")]
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
        return cls.model_validate(
            {
                **cls.union_fields(union, signer_registered_title),
                "number": union.document_number(number),
                **page,
            }
        )


class ReportDocument(OfficialDocument):
    """A report the Union sends (báo cáo, a document with a type name): the type and the
    subject stand centred in bold under the letterhead, and the addressees, when it names any,
    under them. Its number is left for the Union's register: a report is printed for signing."""

    # Trích yếu: "Kết quả hoạt động tư vấn, phản biện và giám định xã hội năm 2026".
    subject: ShortText
    # Kính gửi: whom it is sent to, if it names anyone.
    addressees: list[Line] = []

    @classmethod
    def for_union(
        cls,
        union: UnionIdentity,
        *,
        signer_registered_title: str,
        addressees: Iterable[str] = (),
        **page: object,
    ) -> ReportDocument:
        """The report in the Union's letterhead, numbered "/BC-LHH" (the number to be written
        in when it is registered). "Như trên" in Nơi nhận stands for the addressees: a report
        that names none lists only the Union's other recipients."""
        fields = cls.union_fields(union, signer_registered_title)
        addressees = list(addressees)
        if not addressees:
            others = [r for r in union.recipients if not _as_above(r)]
            fields["recipients"] = others or ["Lưu: VT"]
        return cls.model_validate(
            {**fields, "number": report_number(union), "addressees": addressees, **page}
        )


REPORT_TYPE = "BÁO CÁO"


def report_number(union: UnionIdentity) -> str:
    """Số và ký hiệu of a report, without its number: the type's abbreviation and the Union's
    (the first part of its document symbol, LHH of LHH-TVPB) — "/BC-LHH" (Decree
    30/2020/NĐ-CP, Appendix III: BC is báo cáo)."""
    issuer = re.split(r"[-.&]", union.document_symbol)[0]
    return f"/BC-{issuer}"


def _as_above(recipient: str) -> bool:
    return recipient.strip(" ;.").casefold() == "như trên"


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
