"""A report as the Union sends it: a báo cáo in Vietnamese on the Union's page (the
letterhead, number and date line, signature block and Nơi nhận of activities/letterhead.py,
as its conclusions have them), its figures told in sentences, then shown in tables and in the
charts of starter/reports/charts.py.

    LIÊN HIỆP CÁC HỘI ...                 CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
    Số:      /BC-LHH                      Bắc Giang, ngày 03 tháng 12 năm 2026
                              BÁO CÁO
     Kết quả hoạt động tư vấn, phản biện và giám định xã hội năm 2026
    the period, the filter
    I.   requests received and handled      sentences, Bảng 1 (per month), Hình 1
    II.  time taken                         sentences, Bảng 2 (time in stage), Hình 2
    III. deadlines kept                     sentences, Bảng 3 (per party), Hình 3
    IV.  experts' participation             sentences, Bảng 4 (per expert)
    V.   adoption                           sentences, Bảng 5 (per agency), Hình 4
    Trên đây là báo cáo ... ./.
    Nơi nhận: ...                                      signature block

A period with nothing in it says so in a sentence, and has no table or chart. Pure, like the
conclusion's page: the same report gives the same bytes (the date is the report's `as_of`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos

from activities.letterhead import (
    BODY,
    BOTTOM,
    FAMILY,
    INDENT,
    LEFT,
    TOP,
    WIDTH,
    centred,
    letterhead,
    line_height,
    new_document,
    nfc,
    paragraphs,
    rule,
    signature_and_recipients,
    signature_height,
)
from domain.calendar import VN_TZ
from domain.documents import REPORT_TYPE, ReportDocument
from domain.policy import UnionIdentity
from domain.reports import ON_TIME_ROWS, PARTIES, STAGES, Report
from starter.reports import charts
from starter.reports.charts import ChartText
from starter.reports.words import ADOPTION, VOLUMES, Names, Words

TITLE = 14  # the type and the subject (Appendix I: 13-14, bold)
TABLE = 10.5
CAPTION = 12
ROMAN = ("I", "II", "III", "IV", "V", "VI")
GREY = (235, 235, 235)
UNNAMED = re.compile(r"<(title|desc)\b[^>]*>.*?</\1>", re.S)
# Room a table's title, header and first rows need at the bottom of a page, millimetres.
KEEP_TABLE = 38


def to_pdf(
    report: Report,
    *,
    union: UnionIdentity,
    signer_name: str,
    signer_title: str,
    names: Names | None = None,
    addressees: Sequence[str] = (),
) -> bytes:
    """The report in Vietnamese in the Union's letterhead, signed by `signer_name` under the
    block the Union's policy gives `signer_title` (their registered title); `addressees`,
    if any, printed after "Kính gửi"."""
    w = Words("vi")
    doc = ReportDocument.for_union(
        union,
        signer_registered_title=signer_title,
        signer_name=signer_name,
        subject=w._(
            "Results of advice, critique and social assessment in %(period)s",
            period=w.period(report.period),
        ),
        date=report.as_of.astimezone(VN_TZ).date(),
        addressees=addressees,
    )
    return bytes(_Report(report, doc, union, w, names or Names()).draw().output())


@dataclass
class _Report:
    report: Report
    doc: ReportDocument
    union: UnionIdentity
    w: Words
    names: Names
    pdf: FPDF = field(init=False)
    tables: int = 0
    figures: int = 0

    def draw(self) -> FPDF:
        self.pdf = new_document(self.doc, f"{REPORT_TYPE} {self.doc.subject}")
        letterhead(self.pdf, self.doc)
        self.title()
        self.addressees()
        r, w = self.report, self.w
        paragraphs(self.pdf, self.opening())
        if r.empty:
            paragraphs(
                self.pdf,
                [
                    w._(
                        "In %(period)s %(union)s received and handled no request for advice, "
                        "critique or social assessment.",
                        period=w.period(r.period),
                        union=self.union.short_name,
                    )
                ],
            )
        else:
            for n, part in enumerate(
                (self.requests, self.time_taken, self.deadlines, self.experts, self.adoption)
            ):
                part(ROMAN[n])
        closing = w._(
            "This is the report of %(union)s on its advice, critique and social assessment "
            "in %(period)s.",
            union=self.doc.issuer,
            period=w.period(r.period),
        )
        # The closing and the signature are kept together, whole: if both do not fit under
        # the last table, they start the next page (a signature never stands alone there).
        self.pdf.set_font(FAMILY, "", BODY)
        closing_height = self.pdf.multi_cell(
            WIDTH - INDENT, line_height(BODY), nfc(closing), dry_run=True, output="HEIGHT"
        )
        self.room(closing_height + line_height(BODY) + signature_height(self.pdf, self.doc))
        paragraphs(self.pdf, [closing])
        signature_and_recipients(self.pdf, self.doc)
        return self.pdf

    # --- the parts of the page ---

    def title(self) -> None:
        """The type and the subject, centred in bold, a short rule under them."""
        pdf = self.pdf
        centred(pdf, LEFT, WIDTH, REPORT_TYPE, "B", TITLE)
        centred(pdf, LEFT, WIDTH, self.doc.subject, "B", TITLE)
        y = pdf.get_y() + 2
        rule(pdf, LEFT + WIDTH / 2, 40, y)
        pdf.set_y(y + 6)

    def addressees(self) -> None:
        to = self.doc.addressees
        if not to:
            return
        if len(to) == 1:
            addressee = to[0] if to[0][-1:] in ".;:" else f"{to[0]}."
            centred(self.pdf, LEFT, WIDTH, f"Kính gửi: {addressee}", "", BODY + 0.5)
        else:
            self.pdf.set_font(FAMILY, "", BODY + 0.5)
            label = "Kính gửi:"
            x = LEFT + INDENT * 2
            self.pdf.set_x(x)
            self.pdf.cell(self.pdf.get_string_width(label) + 2, line_height(BODY), label)
            indent = self.pdf.get_x()
            for i, name in enumerate(to):
                end = "." if i == len(to) - 1 else ";"
                self.pdf.set_x(indent)
                self.pdf.multi_cell(
                    LEFT + WIDTH - indent,
                    line_height(BODY),
                    nfc(f"- {name.rstrip(' ;.')}{end}"),
                    new_x=XPos.LMARGIN,
                    new_y=YPos.NEXT,
                )
        self.pdf.set_y(self.pdf.get_y() + 4)

    def opening(self) -> list[str]:
        r, w = self.report, self.w
        texts = [
            w._(
                "%(union)s reports on its advice, critique and social assessment from "
                "%(start)s to %(end)s (figures as of %(as_of)s) as follows.",
                union=self.doc.issuer,
                start=w.date(r.period.start),
                end=w.date(r.period.end),
                as_of=w.date(self.doc.date),
            )
        ]
        which = []
        if r.filter.agencies:
            agencies = ", ".join(self.agency(a) for a in sorted(r.filter.agencies))
            which.append(w._("from %(agencies)s", agencies=agencies))
        if r.filter.kinds:
            kinds = ", ".join(_lower(w.kind(k)) for k in sorted(r.filter.kinds))
            which.append(w._("of the kinds %(kinds)s", kinds=kinds))
        if r.filter.fields:
            fields = ", ".join(sorted(r.filter.fields))
            which.append(w._("in the fields of expertise %(fields)s", fields=fields))
        if which:
            which_text = "; ".join(which)
            texts.append(w._("The figures count only the requests %(which)s.", which=which_text))
        return texts

    def requests(self, numeral: str) -> None:
        r, w = self.report, self.w
        v = r.volumes
        self.heading(numeral, w._("Requests received and handled"))
        texts = [
            w.ngettext(
                "In %(period)s %(union)s received %(n)s request for advice, critique or social "
                "assessment and delivered its conclusion on %(completed)s.",
                "In %(period)s %(union)s received %(n)s requests for advice, critique or social "
                "assessment and delivered its conclusion on %(completed)s.",
                v.received,
                period=w.period(r.period),
                union=self.union.short_name,
                completed=v.completed,
            )
        ]
        if v.withdrawn or v.declined or v.lapsed:
            texts.append(
                w._(
                    "Besides, withdrawn by the agency: %(withdrawn)s; declined at screening: "
                    "%(declined)s; closed without the supplement: %(lapsed)s.",
                    withdrawn=v.withdrawn,
                    declined=v.declined,
                    lapsed=v.lapsed,
                )
            )
        kinds = [f"{_lower(w.kind(k))} {n.received}" for k, n in r.by_kind.items() if n.received]
        if kinds:
            texts.append(w._("Requests received by kind: %(list)s.", list=", ".join(kinds)))
        busiest = sorted(
            ((n.received, code) for code, n in r.by_agency.items() if n.received),
            key=lambda x: (-x[0], x[1]),
        )[:3]
        if busiest:
            listed = ", ".join(f"{self.agency(code)} ({n})" for n, code in busiest)
            texts.append(w._("The agencies that sent the most: %(list)s.", list=listed))
        paragraphs(self.pdf, texts)

        fields = list(VOLUMES)
        rows = [[w.month(m), *(getattr(n, f) for f in fields)] for m, n in r.per_month.items()]
        rows.append([w._("Total"), *(getattr(v, f) for f in fields)])
        self.table(
            w._("Requests by month"),
            [w._("Month"), *(w._(VOLUMES[f]) for f in fields)],
            rows,
            widths=(25, 28, 28, 28, 28, 28),
            totals=1,
        )
        text = ChartText(
            title=w._("Requests received and completed by month"),
            description=w._(
                "Columns: the requests received and the requests completed in each month "
                "of the period."
            ),
            series=[w._(VOLUMES["received"]), w._(VOLUMES["completed"])],
            axis=w._("requests"),
            empty=w._("Nothing to show for the period."),
        )
        self.chart(
            charts.requests_per_month(r.per_month, text, number=w.number, font_family=FAMILY),
            text,
        )

    def time_taken(self, numeral: str) -> None:
        r, w = self.report, self.w
        self.heading(numeral, w._("Time taken"))
        t = r.turnaround
        if t.count:
            texts = [
                w.ngettext(
                    "Of the %(n)s conclusion delivered, half took at most %(median)s working days "
                    "from receipt to delivery, and nine in ten at most %(p90)s.",
                    "Of the %(n)s conclusions delivered, half took at most %(median)s working "
                    "days from receipt to delivery, and nine in ten at most %(p90)s.",
                    t.count,
                    median=t.median,
                    p90=t.p90,
                )
            ]
        else:
            texts = [w._("No conclusion was delivered in the period.")]
        measured = [(s.value, r.time_in_stage[s.value]) for s in STAGES]
        measured = [(k, s) for k, s in measured if s.median is not None]
        if measured:
            key, longest = max(measured, key=lambda x: (x[1].median, x[1].p90))
            texts.append(
                w._(
                    "The stage that took longest, by its median, was %(stage)s: %(median)s "
                    "working days (90th percentile: %(p90)s).",
                    stage=_lower(w.stage(key)),
                    median=longest.median,
                    p90=longest.p90,
                )
            )
        paragraphs(self.pdf, texts)
        if not measured:
            return
        rows = [
            [
                w.stage(s.value),
                (st := r.time_in_stage[s.value]).count,
                w.number(st.median),
                w.number(st.p90),
                st.left_by_withdrawal,
            ]
            for s in STAGES
        ]
        self.table(
            w._("Time in each stage, in working days"),
            [
                w._("Stage"),
                w._("Visits"),
                w._("Median"),
                w._("90th percentile"),
                w._("Ended by withdrawal"),
            ],
            rows,
            widths=(61, 24, 24, 26, 30),
        )
        text = ChartText(
            title=w._("Working days in each stage: median and 90th percentile"),
            description=w._(
                "Bars: for each stage, the median and the 90th percentile of the working days "
                "it took."
            ),
            series=[w._("Median"), w._("90th percentile")],
            names={s.value: w.stage(s.value) for s in STAGES},
            axis=w._("working days"),
            empty=w._("Nothing to show for the period."),
        )
        stages = {s.value: r.time_in_stage[s.value] for s in STAGES}
        self.chart(
            charts.time_in_stage(stages, text, number=w.number, font_family=FAMILY),
            text,
        )

    def deadlines(self, numeral: str) -> None:
        r, w = self.report, self.w
        self.heading(numeral, w._("Deadlines kept"))
        kept = [
            w._(
                "%(party)s %(rate)s (%(on_time)s of %(settled)s)",
                party=_lower(w.party(p)),
                rate=w.percent(o.rate),
                on_time=o.on_time,
                settled=o.on_time + o.late,
            )
            for p, o in r.on_time_by_party.items()
            if o.on_time + o.late
        ]
        if kept:
            texts = [w._("Deadlines kept, by party: %(list)s.", list="; ".join(kept))]
        else:
            texts = [w._("No deadline fell due or was met in the period.")]
        extensions = sum(o.extensions for o in r.on_time)
        if extensions:
            texts.append(
                w.ngettext(
                    "Deadlines were extended %(n)s time, by %(days)s working days in all.",
                    "Deadlines were extended %(n)s times, by %(days)s working days in all.",
                    extensions,
                    days=sum(o.extension_days for o in r.on_time),
                )
            )
        else:
            texts.append(w._("No deadline was extended."))
        paragraphs(self.pdf, texts)
        if not kept and not extensions:
            return
        rows = [
            [
                w.party(o.party),
                w.deadline(o.party, o.deadline),
                o.on_time,
                o.late,
                w.percent(o.rate),
                o.extensions,
                o.extension_days,
            ]
            for o in (r.on_time_for(*key) for key in ON_TIME_ROWS)
        ]
        self.table(
            w._("Deadlines kept, by party and deadline"),
            [
                w._("Party"),
                w._("Deadline"),
                w._("On time"),
                w._("Late"),
                w._("On-time rate"),
                w._("Extensions"),
                w._("Working days added"),
            ],
            rows,
            widths=(31, 37, 17, 17, 20, 21, 22),
            left=2,
        )
        text = ChartText(
            title=w._("On-time rate by party"),
            description=w._(
                "Bars: for each party, the share of its deadlines that were kept; a dash where "
                "none fell due."
            ),
            series=[w._("On-time rate")],
            names={p: w.party(p) for p in PARTIES},
            axis=w._("deadlines kept"),
            empty=w._("Nothing to show for the period."),
        )
        self.chart(
            charts.on_time_by_party(
                r.on_time_by_party, text, percent=w.percent, font_family=FAMILY
            ),
            text,
        )

    def experts(self, numeral: str) -> None:
        r, w = self.report, self.w
        self.heading(numeral, w._("Experts' participation"))
        total = r.experts_total
        if total.invited:
            texts = [
                w.ngettext(
                    "%(n)s invitation was sent to %(experts)s experts: %(accepted)s accepted "
                    "(%(rate)s of those answered or expired), %(declined)s declined and "
                    "%(expired)s expired unanswered.",
                    "%(n)s invitations were sent to %(experts)s experts: %(accepted)s accepted "
                    "(%(rate)s of those answered or expired), %(declined)s declined and "
                    "%(expired)s expired unanswered.",
                    total.invited,
                    experts=sum(1 for e in r.experts if e.invited),
                    accepted=total.accepted,
                    rate=w.percent(total.acceptance_rate),
                    declined=total.declined,
                    expired=total.expired,
                )
            ]
        else:
            texts = [w._("No expert was invited in the period.")]
        opinions = total.opinions_on_time + total.opinions_late
        if opinions:
            texts.append(
                w._(
                    "%(on_time)s of %(total)s opinions were sent by their due date.",
                    on_time=total.opinions_on_time,
                    total=opinions,
                )
            )
        paragraphs(self.pdf, texts)
        if not r.experts:
            return
        rows = [
            [
                self.expert(e.expert_code),
                e.invited,
                e.accepted,
                e.declined,
                e.expired,
                e.opinions_on_time,
                e.opinions_late,
                max(e.load.values(), default=0),
            ]
            for e in r.experts
        ]
        rows.append(
            [
                w._("Total"),
                total.invited,
                total.accepted,
                total.declined,
                total.expired,
                total.opinions_on_time,
                total.opinions_late,
                "",
            ]
        )
        self.table(
            w._("Participation of each expert"),
            [
                w._("Expert"),
                w._("Invitations"),
                w._("Accepted"),
                w._("Declined"),
                w._("Expired unanswered"),
                w._("Opinions on time"),
                w._("Opinions late"),
                w._("Most assignments at once"),
            ],
            rows,
            widths=(46, 17, 17, 17, 17, 17, 17, 17),
            totals=1,
        )

    def adoption(self, numeral: str) -> None:
        r, w = self.report, self.w
        self.heading(numeral, w._("Adoption of the opinions"))
        a = r.adoption
        if not a.delivered:
            paragraphs(
                self.pdf,
                [
                    w._(
                        "No conclusion was delivered in the period, so there is no answer on "
                        "adoption to report."
                    )
                ],
            )
            return
        texts = [
            w.ngettext(
                "Of the %(n)s conclusion delivered, %(adopted)s were adopted in full, "
                "%(partially)s in part and %(not_adopted)s not adopted; %(no_answer)s have no "
                "answer past the deadline and %(awaiting)s await an answer within it.",
                "Of the %(n)s conclusions delivered, %(adopted)s were adopted in full, "
                "%(partially)s in part and %(not_adopted)s not adopted; %(no_answer)s have no "
                "answer past the deadline and %(awaiting)s await an answer within it.",
                a.delivered,
                adopted=a.adopted,
                partially=a.partially_adopted,
                not_adopted=a.not_adopted,
                no_answer=a.no_answer,
                awaiting=a.awaiting,
            )
        ]
        if a.answered_late:
            texts.append(w._("%(n)s of the answers came after their deadline.", n=a.answered_late))
        paragraphs(self.pdf, texts)
        fields = [f for f in ADOPTION if f != "answered_late"]
        rows = [
            [self.agency(code), *(getattr(row, f) for f in fields)]
            for code, row in r.adoption_by_agency.items()
        ]
        rows.append([w._("Total"), *(getattr(a, f) for f in fields)])
        self.table(
            w._("Answers on adoption, by agency"),
            [w._("Agency"), *(w._(ADOPTION[f]) for f in fields)],
            rows,
            widths=(47, 20, 20, 20, 20, 19, 19),
            totals=1,
        )
        parts = ("adopted", "partially_adopted", "not_adopted", "no_answer", "awaiting")
        text = ChartText(
            title=w._("Conclusions delivered to each agency, by its answer on adoption"),
            description=w._(
                "Stacked bars: for each agency, its conclusions delivered in the period, in "
                "parts by its answer on adoption."
            ),
            series=[w._(ADOPTION[p]) for p in parts],
            names={code: self.agency(code) for code in r.adoption_by_agency},
            axis=w._("conclusions"),
            empty=w._("Nothing to show for the period."),
        )
        self.chart(
            charts.adoption_by_agency(
                r.adoption_by_agency, text, number=w.number, font_family=FAMILY
            ),
            text,
        )

    # --- what the parts are made of ---

    def agency(self, code: str) -> str:
        return self.names.agencies.get(code, code)

    def expert(self, code: str) -> str:
        name = self.names.experts.get(code)
        return f"{name} ({code})" if name else code

    def room(self, height: float) -> None:
        """A new page unless `height` millimetres fit under what was printed last."""
        if self.pdf.get_y() + height > self.pdf.h - BOTTOM:
            self.pdf.add_page()

    def heading(self, numeral: str, text: str) -> None:
        """A part's heading: its numeral and name in bold capitals, kept with what follows."""
        self.room(line_height(BODY) * 4)
        pdf = self.pdf
        pdf.set_y(pdf.get_y() + 1)
        pdf.set_font(FAMILY, "B", BODY)
        pdf.set_x(LEFT + INDENT)
        pdf.multi_cell(
            WIDTH - INDENT,
            line_height(BODY),
            nfc(f"{numeral}. {text.upper()}"),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        pdf.set_y(pdf.get_y() + 2)

    def table(
        self,
        title: str,
        header: list[str],
        rows: list[list[object]],
        *,
        widths: Sequence[float],
        totals: int = 0,
        left: int = 1,
    ) -> None:
        """A numbered table: its title centred in bold above it, the header row shaded and
        repeated on each page it runs over, the first `left` columns (names) aligned left and
        the figures right, the last `totals` rows in bold."""
        self.tables += 1
        self.room(KEEP_TABLE)
        pdf = self.pdf
        centred(
            pdf,
            LEFT,
            WIDTH,
            self.w._("Table %(n)s. %(title)s", n=self.tables, title=title),
            "B",
            CAPTION,
        )
        pdf.set_y(pdf.get_y() + 1.5)
        pdf.set_font(FAMILY, "", TABLE)
        align = ["LEFT"] * left + ["RIGHT"] * (len(header) - left)
        bold = FontFace(emphasis="BOLD")
        with pdf.table(
            width=WIDTH,
            col_widths=widths,
            text_align=align,
            line_height=line_height(TABLE) * 0.95,
            padding=(0.8, 1.2),
            headings_style=FontFace(emphasis="BOLD", fill_color=GREY),
            v_align="MIDDLE",
        ) as table:
            heading = table.row()
            for text in header:
                heading.cell(nfc(text), align="CENTER")
            for i, values in enumerate(rows):
                row = table.row()
                style = bold if i >= len(rows) - totals else None
                for value in values:
                    if isinstance(value, int) and not isinstance(value, bool):
                        value = self.w.number(value)  # 43.970, as the reader writes it
                    row.cell(nfc(str(value)), style=style)
        pdf.set_y(pdf.get_y() + 5)

    def chart(self, svg: str, text: ChartText) -> None:
        """A numbered figure: the chart across the text's width (narrower, centred, when it
        would be taller than a page: many agencies), its caption under it, both on one
        page."""
        self.figures += 1
        pdf = self.pdf
        view = ElementTree.fromstring(svg).get("viewBox", "0 0 1 1").split()
        tall = float(view[3]) / float(view[2])
        caption_height = line_height(CAPTION) * 2 + 2
        width = min(WIDTH, (pdf.h - TOP - BOTTOM - caption_height) / tall)
        self.room(width * tall + caption_height)
        # The caption prints the title and the description is the image's alternative text:
        # fpdf2 has no use for <title> and <desc>, and would log a warning for each.
        drawn = UNNAMED.sub("", svg)
        x = LEFT + (WIDTH - width) / 2
        pdf.image(io.BytesIO(drawn.encode()), x=x, w=width, alt_text=text.description)
        pdf.set_y(pdf.get_y() + 1)
        caption = self.w._("Figure %(n)s. %(title)s", n=self.figures, title=text.title)
        centred(pdf, LEFT, WIDTH, caption, "I", CAPTION)
        pdf.set_y(pdf.get_y() + 5)


def _lower(label: str) -> str:
    """A name as it reads inside a sentence: "Tư vấn" → "tư vấn" (a name that starts with a
    capital of its own, an agency's, is never passed here)."""
    return label[:1].lower() + label[1:]
