"""The registries from CSV or JSON: experts, agencies and the Union's coordinators. Every row
is validated, bad rows are reported by line with the reason, good rows applied, and importing
the same file again changes nothing. Entries are deactivated, never deleted.

Experts, CSV columns (header row required; the order is free):

    code,name,email,organisation,member_association,expertise,languages,load_limit,active,
    conflicts,unavailable

    expertise     "moi-truong:5; quy-hoach:3"   field:level (1-5), or a field alone (level 3)
    languages     "vi; en"
    active        true/false, yes/no, 1/0 (default true)
    conflicts     "STNMT; Sở Tài nguyên và Môi trường"   agency codes or organisation names
    unavailable   "2027-01-04..2027-01-15; 2027-03-01..2027-03-05"

Agencies:  code,name,aliases,language,contacts,active

    aliases       "Sở Xây dựng Bắc Giang; SXD Bắc Giang"   names its staff appear under as experts
    contacts      "Trần Văn Khánh <khanh@sxd.example.gov.vn>; ..."

Coordinators:  code,name,title,email,language,active

JSON: a list of objects with the same names (lists as lists; an expert's expertise as an
object, unavailable as [{"start": ..., "end": ...}], `fields` read as level-3 expertise;
contacts as [{"name": ..., "email": ...}]).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from db import queries as q
from domain.models import Coordinator, Expert, Model, Operator, RegisteredAgency


class RegistryFileError(RuntimeError):
    """The file as a whole cannot be read: `reason` says why in one word (missing, format,
    json, not_list, header), for a page to say it in the reader's language."""

    def __init__(self, message: str, reason: str = "format") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Rejected:
    """One row refused: where ("line" 7 of a CSV, "entry" 3 of a JSON list), the field and
    the rule it breaks; `error` is pydantic's, for a page to say it in the reader's language
    (None: the code was already given on row `first`)."""

    label: str
    n: int
    field: str
    rule: str
    error: dict[str, Any] | None = None
    first: int | None = None

    def __str__(self) -> str:  # "line 7: email: not a valid address"
        return f"{self.label} {self.n}: {self.field}: {self.rule}"


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [str(r) for r in self.rejected]

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }

    @property
    def total(self) -> int:
        return len(self.added) + len(self.changed) + len(self.unchanged)

    def summary(self) -> str:
        text = (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.unchanged)} unchanged"
        )
        if self.errors:
            text += f"; {len(self.errors)} rejected:\n  " + "\n  ".join(self.errors)
        return text


def _split(value: str, commas: bool = True) -> list[str]:
    """A list cell: items separated by ";" (or "," where names hold no commas)."""
    if commas:
        value = value.replace(",", ";")
    return [x.strip() for x in value.split(";") if x.strip()]


def _cells(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: (v or "").strip() for k, v in row.items() if k}
    active = data.pop("active", "").lower()
    if active:
        data["active"] = {
            "true": True,
            "yes": True,
            "1": True,
            "false": False,
            "no": False,
            "0": False,
        }.get(active, active)
    return data


def _agency_row(row: dict[str, str]) -> dict[str, Any]:
    data = _cells(row)
    data["aliases"] = _split(data.pop("aliases", ""), commas=False)
    contacts = []
    for item in _split(data.pop("contacts", ""), commas=False):
        name, sep, email = item.partition("<")
        contacts.append({"name": name.strip(), "email": email.rstrip(">").strip()} if sep else item)
    data["contacts"] = contacts
    return data


def _expert_row(row: dict[str, str]) -> dict[str, Any]:
    data = _cells(row)
    expertise: dict[str, Any] = {}
    for item in _split(data.pop("expertise", "")):
        name, _, level = item.partition(":")
        expertise[name.strip()] = level.strip() or 3
    data["expertise"] = expertise
    if langs := data.pop("languages", ""):
        data["languages"] = _split(langs)
    data["conflicts"] = _split(data.pop("conflicts", ""))
    periods = []
    for item in _split(data.pop("unavailable", "")):
        start, sep, end = item.partition("..")
        periods.append({"start": start.strip(), "end": end.strip()} if sep else item)
    data["unavailable"] = periods
    if data.get("load_limit", None) == "":
        data.pop("load_limit")
    return data


def _rejected(label: str, n: int, err: ValidationError) -> Rejected:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "row"
    return Rejected(label, n, loc, first["msg"].removeprefix("Value error, "), dict(first))


@dataclass(frozen=True)
class Registry:
    name: str  # the table, and the command: "experts"
    one: str  # one entry: "expert"
    entry: type[Model]
    csv_row: Callable[[dict[str, str]], dict[str, Any]]
    upsert: Callable[[Any, Any], Awaitable[str]]


EXPERTS = Registry("experts", "expert", Expert, _expert_row, q.upsert_expert)
AGENCIES = Registry("agencies", "agency", RegisteredAgency, _agency_row, q.upsert_agency)
COORDINATORS = Registry("coordinators", "coordinator", Coordinator, _cells, q.upsert_coordinator)
OPERATORS = Registry("operators", "operator", Operator, _cells, q.upsert_operator)
REGISTRIES = {r.name: r for r in (EXPERTS, AGENCIES, COORDINATORS, OPERATORS)}


def read_entries(registry: Registry, path: Path) -> tuple[list[tuple[int, Any]], list[Rejected]]:
    """(line or entry number, entry) for the good rows, and one message per bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise RegistryFileError(f"{path}: no such file", "missing") from err
    rows: list[tuple[int, Any]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RegistryFileError(
                f"{path}: not valid JSON (line {err.lineno}: {err.msg})", "json"
            ) from err
        if not isinstance(data, list):
            raise RegistryFileError(f"{path}: must hold a JSON list of {registry.name}", "not_list")
        rows = list(enumerate(data, start=1))
        label = "entry"
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "code" not in reader.fieldnames:
            raise RegistryFileError(
                f"{path}: the first line must be a header naming 'code', ...", "header"
            )
        rows = [(reader.line_num, registry.csv_row(r)) for r in reader]
        label = "line"
    else:
        raise RegistryFileError(f"{path}: import reads .csv or .json files")
    entries, errors, seen = [], [], {}
    for n, raw in rows:
        try:
            e = registry.entry.model_validate(raw)
        except ValidationError as err:
            errors.append(_rejected(label, n, err))
            continue
        if e.code in seen:
            first = seen[e.code]
            rule = f"{e.code} already given on {label} {first}"
            errors.append(Rejected(label, n, "code", rule, first=first))
            continue
        seen[e.code] = n
        entries.append((n, e))
    return entries, errors


async def import_file(pool: asyncpg.Pool, registry: Registry, path: Path) -> ImportReport:
    entries, errors = read_entries(registry, path)
    report = ImportReport(rejected=errors)
    async with pool.acquire() as conn, conn.transaction():
        for _, e in entries:
            outcome = await registry.upsert(conn, e)
            getattr(report, outcome).append(e.code)
    return report


async def seed(pool: asyncpg.Pool, registry: Registry, path: Path) -> tuple[int, int]:
    """The dev stack's seeding: (added or changed, total)."""
    report = await import_file(pool, registry, path)
    if report.errors:
        raise RegistryFileError(f"{path}: " + report.summary())
    return len(report.added) + len(report.changed), report.total
