"""The expert registry from CSV or JSON: every row validated, bad rows reported by line with
the reason, good rows applied, and importing the same file again changes nothing.

CSV columns (header row required; the order is free):

    code,name,email,organisation,member_association,expertise,languages,load_limit,active,
    conflicts,unavailable

    expertise     "moi-truong:5; quy-hoach:3"   field:level (1-5), or a field alone (level 3)
    languages     "vi; en"
    active        true/false, yes/no, 1/0 (default true)
    conflicts     "STNMT; Sở Tài nguyên và Môi trường"   agency codes or organisation names
    unavailable   "2027-01-04..2027-01-15; 2027-03-01..2027-03-05"

JSON: a list of objects with the same names (expertise as an object, the others as lists;
unavailable as [{"start": ..., "end": ...}]); `fields` (a list) is read as level-3 expertise.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from db import queries as q
from domain.models import Expert


class RegistryFileError(RuntimeError):
    """The file as a whole cannot be read (missing, not CSV/JSON, no header)."""


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "line 7: email: not a valid address"

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


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.replace(",", ";").split(";") if x.strip()]


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: (v or "").strip() for k, v in row.items() if k}
    expertise: dict[str, Any] = {}
    for item in _split(data.pop("expertise", "")):
        name, _, level = item.partition(":")
        expertise[name.strip()] = level.strip() or 3
    data["expertise"] = expertise
    if langs := data.pop("languages", ""):
        data["languages"] = _split(langs)
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
    data["conflicts"] = _split(data.pop("conflicts", ""))
    periods = []
    for item in _split(data.pop("unavailable", "")):
        start, sep, end = item.partition("..")
        periods.append({"start": start.strip(), "end": end.strip()} if sep else item)
    data["unavailable"] = periods
    if data.get("load_limit", None) == "":
        data.pop("load_limit")
    return data


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "row"
    return f"{loc}: {first['msg'].removeprefix('Value error, ')}"


def read_experts(path: Path) -> tuple[list[tuple[int, Expert]], list[str]]:
    """(line or entry number, expert) for the good rows, and one message per bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise RegistryFileError(f"{path}: no such file") from err
    rows: list[tuple[int, Any]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RegistryFileError(
                f"{path}: not valid JSON (line {err.lineno}: {err.msg})"
            ) from err
        if not isinstance(data, list):
            raise RegistryFileError(f"{path}: must hold a JSON list of experts")
        rows = list(enumerate(data, start=1))
        label = "entry"
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "code" not in reader.fieldnames:
            raise RegistryFileError(f"{path}: the first line must be a header naming 'code', ...")
        rows = [(reader.line_num, _csv_row(r)) for r in reader]
        label = "line"
    else:
        raise RegistryFileError(f"{path}: import reads .csv or .json files")
    experts, errors, seen = [], [], {}
    for n, entry in rows:
        try:
            e = Expert.model_validate(entry)
        except ValidationError as err:
            errors.append(f"{label} {n}: {_describe(err)}")
            continue
        if e.code in seen:
            errors.append(f"{label} {n}: code: {e.code} already given on {label} {seen[e.code]}")
            continue
        seen[e.code] = n
        experts.append((n, e))
    return experts, errors


async def import_experts(pool: asyncpg.Pool, path: Path) -> ImportReport:
    experts, errors = read_experts(path)
    report = ImportReport(errors=errors)
    async with pool.acquire() as conn, conn.transaction():
        for _, e in experts:
            outcome = await q.upsert_expert(conn, e)
            getattr(report, outcome).append(e.code)
    return report


async def seed_experts(pool: asyncpg.Pool, path: Path) -> tuple[int, int]:
    """The dev stack's seeding: (added or changed, total)."""
    report = await import_experts(pool, path)
    if report.errors:
        raise RegistryFileError(f"{path}: " + report.summary())
    return len(report.added) + len(report.changed), report.total


async def list_experts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            """
            SELECT e.code, e.organisation, e.member_association, e.fields, e.expertise,
                e.load_limit, e.active,
                (SELECT count(*) FROM assignments a WHERE a.expert_code = e.code
                   AND a.state IN ('invited', 'accepted')) AS load
            FROM experts e ORDER BY e.code
            """
        )
