"""Message catalogues and the formats people read: dates as dd/mm/yyyy in Vietnam's time, and
a deadline with the working days left (or past).

The catalogues are `locale/{vi,en}/LC_MESSAGES/messages.po`; message ids are English sentences.
They are compiled in memory once per process (no `.mo` file is kept in the repository: a
compiled copy that drifts from its source is a bug waiting to be shipped)."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from importlib.resources import files
from io import BytesIO
from typing import Literal

from babel.messages import mofile, pofile
from babel.numbers import format_decimal
from babel.numbers import format_percent as babel_percent
from babel.support import Translations

from domain.calendar import VN_TZ, WorkingCalendar

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = ("vi", "en")
DEFAULT_LANGUAGE: Language = "vi"
DOMAIN = "messages"


def language(value: str | None) -> Language | None:
    """A language the portal speaks, or None: "en-GB" reads as "en", "fr" as nothing."""
    short = (value or "").strip().lower()[:2]
    return short if short in LANGUAGES else None  # type: ignore[return-value]


def catalogue_path(lang: Language):
    return files("starter.portal") / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=len(LANGUAGES))
def translations(lang: Language) -> Translations:
    """The language's catalogue, compiled from its .po file in memory (once per process)."""
    with catalogue_path(lang).open("rb") as f:
        catalog = pofile.read_po(f, locale=lang, domain=DOMAIN)
    compiled = BytesIO()
    mofile.write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def N_(message: str) -> str:  # noqa: N802 (gettext's name for it)
    """Marks a message id for the catalogues without translating it yet (it is translated
    where it is shown, in the reader's language)."""
    return message


def format_date(value: date | datetime) -> str:
    """dd/mm/yyyy, an instant as its date in Vietnam (the administrative way, in both
    languages: the portal's English readers work with Vietnamese documents)."""
    if isinstance(value, datetime):
        value = value.astimezone(VN_TZ).date()
    return value.strftime("%d/%m/%Y")


def format_number(value: float, lang: Language) -> str:
    """A count or a number of days as its reader writes it: 1.234 in Vietnamese, 1,234 in
    English."""
    return format_decimal(value, locale=lang)


def format_percent(share: float, lang: Language) -> str:
    """A share (0.857) as a percentage to one decimal where it has one: 85,7% in
    Vietnamese, 85.7% in English; 50%, not 50,0%."""
    return babel_percent(share, "#,##0.#%", locale=lang)


def deadline_text(due: datetime, now: datetime, calendar: WorkingCalendar, lang: Language) -> str:
    """A deadline as its date and how far it is, in working days: "04/05/2026 (còn 3 ngày
    làm việc)", "(hết hạn hôm nay)", "(quá hạn 2 ngày làm việc)". Days count as the
    engine's deadlines do: the current day does not count, the deadline's day does."""
    t = translations(lang)
    today, due_day = calendar.local_date(now), calendar.local_date(due)
    if now > due:
        n = calendar.working_days_between(due_day, today)
        how = (
            t.ngettext("overdue by %(n)d working day", "overdue by %(n)d working days", n)
            % {"n": n}
            if n
            else t.gettext("overdue")
        )
    elif due_day == today:
        how = t.gettext("due today")
    else:
        n = calendar.working_days_between(today, due_day)
        how = t.ngettext("%(n)d working day left", "%(n)d working days left", n) % {"n": n}
    return f"{format_date(due)} ({how})"
