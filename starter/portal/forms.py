"""A posted form as a page sees it: the values a person typed (kept to show again) and one
message per field that was refused (shown beside it, and in the summary at the top)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.requests import Request

# The hidden field every POST form carries (starter/portal/people.py checks it).
CSRF_FIELD = "csrf_token"


@dataclass
class Form:
    values: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[UploadFile]] = field(default_factory=dict)

    @classmethod
    def of(cls, **values: str) -> Form:
        """A form filled in ahead (an edit page's current values)."""
        return cls(values={k: [v] for k, v in values.items()})

    @classmethod
    async def read(cls, request: Request) -> Form:
        """The posted form (urlencoded or multipart). Starlette keeps what it parsed, so
        reading it here after the CSRF check costs nothing."""
        data = await request.form()
        form = cls()
        for name, value in data.multi_items():
            if name == CSRF_FIELD:
                continue
            if isinstance(value, UploadFile):
                form.files.setdefault(name, []).append(value)
            else:
                form.values.setdefault(name, []).append(value)
        return form

    def value(self, name: str, default: str = "") -> str:
        """The field's value as typed (the first, for a repeated field)."""
        return (self.values.get(name) or [default])[0]

    def all(self, name: str) -> list[str]:
        """Every value of a repeated field (checkboxes, a multiple select)."""
        return list(self.values.get(name, []))

    def error(self, name: str, message: str) -> None:
        """Refuses a field with a message already in the person's language (me.gettext)."""
        self.errors.setdefault(name, message)

    @property
    def ok(self) -> bool:
        return not self.errors
