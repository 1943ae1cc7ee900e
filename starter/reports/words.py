"""The words of the reports' exports in a reader's language: the names of kinds, stages,
parties, deadlines and measures, and numbers written the way that language writes them.

Every word is a message of the portal's catalogues (`starter/portal/locale/*/messages.po`,
under "Reports: exports", or the portal's own where it already names the thing); the ids are
marked with `N_` and translated where they are shown. Codes (an agency's, an expert's, a field
of expertise, a month "2026-07") are data, never translated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from domain.models import RequestKind
from domain.reports import ReportPeriod
from starter.portal.i18n import (
    N_,
    Language,
    format_date,
    format_number,
    format_percent,
    translations,
)

# Kinds and stages as the portal's pages name them (starter/portal/acting.py), by the same ids
# so each has one translation. Not imported from there: acting brings the whole HTTP app with
# it, which a CLI writing a CSV has no use for.
KINDS = {
    "advisory": N_("Advisory"),
    "critique": N_("Critique"),
    "social_assessment": N_("Social assessment"),
}
STAGES = {
    "screening": N_("screening"),
    "supplement": N_("waiting for a supplement"),
    "council": N_("forming the council"),
    "review": N_("review by the council"),
    "synthesis": N_("drafting the conclusion"),
    "approval": N_("approval of the conclusion"),
    "adoption": N_("waiting for the answer on adoption"),
}
# Parties and deadlines, as the reports page and the files both name them.
PARTY_NAMES = {
    "coordinator": N_("The Union's office"),
    "agency": N_("Requesting agencies"),
    "expert": N_("Experts"),
    "council": N_("Councils"),
    "chair": N_("Council chairs"),
}
DEADLINE_NAMES = {
    ("coordinator", "screening"): N_("Screening a request"),
    ("agency", "supplement"): N_("Sending the supplement asked for"),
    ("expert", "respond"): N_("Answering an invitation"),
    ("expert", "review"): N_("Sending an opinion"),
    ("council", "review"): N_("The council's review"),
    ("chair", "synthesis"): N_("Drafting the conclusion"),
    ("coordinator", "approval"): N_("Approving the conclusion"),
    ("agency", "adoption"): N_("Answering on adoption"),
}
ALL_DEADLINES = N_("All deadlines")

# Each measure's fields, in the order they are shown, with their names.
VOLUMES = {
    "received": N_("Received"),
    "completed": N_("Completed"),
    "withdrawn": N_("Withdrawn by the agency"),
    "declined": N_("Declined at screening"),
    "lapsed": N_("Closed without the supplement"),
}
TURNAROUND = {
    "count": N_("Conclusions delivered"),
    "median": N_("Median, working days"),
    "p90": N_("90th percentile, working days"),
}
STAGE_TIME = {
    "count": N_("Visits"),
    "median": N_("Median, working days"),
    "p90": N_("90th percentile, working days"),
    "left_by_withdrawal": N_("Ended by withdrawal"),
}
ON_TIME = {
    "on_time": N_("On time"),
    "late": N_("Late"),
    "rate": N_("On-time rate"),
    "extensions": N_("Extensions"),
    "extension_days": N_("Working days added"),
}
EXPERTS = {
    "invited": N_("Invitations"),
    "accepted": N_("Accepted"),
    "declined": N_("Declined"),
    "expired": N_("Expired unanswered"),
    "cancelled": N_("Cancelled before an answer"),
    "unanswered": N_("Not yet answered"),
    "acceptance_rate": N_("Acceptance rate"),
    "decline_rate": N_("Decline rate"),
    "expiry_rate": N_("Expiry rate"),
    "opinions_on_time": N_("Opinions on time"),
    "opinions_late": N_("Opinions late"),
}
LOAD = N_("Most assignments at once")
ADOPTION = {
    "delivered": N_("Conclusions delivered"),
    "adopted": N_("Adopted"),
    "partially_adopted": N_("Partially adopted"),
    "not_adopted": N_("Not adopted"),
    "no_answer": N_("No answer by the deadline"),
    "awaiting": N_("Awaiting the answer"),
    "answered_late": N_("Answered after the deadline"),
}
# Fields that are shares (0 to 1), written as percentages.
RATES = frozenset({"rate", "acceptance_rate", "decline_rate", "expiry_rate"})

QUARTERS = ("I", "II", "III", "IV")


@dataclass(frozen=True)
class Names:
    """Display names the registries give: agency code → name, expert code → name. A code
    without one is shown as itself."""

    agencies: dict[str, str] = field(default_factory=dict)
    experts: dict[str, str] = field(default_factory=dict)


class Words:
    """The reports' words in one language."""

    def __init__(self, lang: Language) -> None:
        self.lang = lang
        self._t = translations(lang)

    def _(self, message: str, **values: object) -> str:
        text = self._t.gettext(message)
        return text % self._counts(values) if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: object) -> str:
        return self._t.ngettext(singular, plural, n) % self._counts({"n": n, **values})

    def _counts(self, values: dict[str, object]) -> dict[str, object]:
        """Counts in a sentence as the reader writes them (43.970 in Vietnamese); a year or
        a quarter is passed as text, and stays as it is."""
        return {
            k: self.number(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in values.items()
        }

    # --- names ---

    def kind(self, kind: str) -> str:
        return self._(KINDS[RequestKind(kind).value])

    def stage(self, stage: str) -> str:
        """A stage as the portal names it, as a label: "Sơ loại hồ sơ"."""
        name = self._(STAGES.get(stage, stage))
        return name[:1].upper() + name[1:]

    def party(self, party: str) -> str:
        return self._(PARTY_NAMES[party]) if party in PARTY_NAMES else party

    def deadline(self, party: str, deadline: str) -> str:
        if deadline == "all":
            return self._(ALL_DEADLINES)
        return self._(DEADLINE_NAMES.get((party, deadline), deadline))

    @staticmethod
    def month(month: str) -> str:
        """ "2026-07" → "07/2026", as the portal writes dates in both languages."""
        return f"{month[5:7]}/{month[:4]}"

    def period(self, period: ReportPeriod) -> str:
        """The period as a report's title says it: "năm 2026", "quý III năm 2026" (a
        quarter in Roman numerals, as administrative documents write it), "tháng 7/2026",
        "giai đoạn từ ngày 01/01/2026 đến ngày 30/06/2026" (the reports page's "từ ... đến
        ..." would not follow "Trong")."""
        start, end, label = period.start, period.end, period.label
        if len(label) == 4:
            return self._("the year %(year)s", year=str(start.year))
        if "-Q" in label:
            quarter = QUARTERS[(start.month - 1) // 3]
            return self._("quarter %(q)s of %(year)s", q=str(quarter), year=str(start.year))
        if ".." not in label:
            month = f"{start.month}/{start.year}"
            return self._("month %(month)s", month=month)
        return self._(
            "the period from %(start)s to %(end)s",
            start=format_date(start),
            end=format_date(end),
        )

    # --- numbers ---

    def number(self, value: float | None) -> str:
        """A figure as the language writes it: "1.234" in Vietnamese; "–" for none."""
        return "–" if value is None else format_number(value, self.lang)

    def percent(self, rate: float | None) -> str:
        """A share as a percentage to one decimal: "85,7%", "100%"; "–" for none."""
        return "–" if rate is None else format_percent(rate, self.lang)

    @staticmethod
    def date(day: date) -> str:
        return format_date(day)
