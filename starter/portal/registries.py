"""The registries in the portal, for the Union's office and its operators: experts and
agencies listed and searched, one entry shown, a CSV or JSON file imported with its report
line by line (good rows applied, bad rows named with the field and the rule), an entry
deactivated or made active again. The same import and the same rules as `advisory experts
import` (starter/registry.py): entries are never deleted."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse, Response

from db import queries as q
from infra.links import PREFIX
from starter.portal import acting
from starter.portal.forms import Form
from starter.portal.i18n import N_
from starter.portal.pages import NAVIGATION, PageError, render
from starter.portal.people import SignedIn, Visitor, only
from starter.registry import AGENCIES, EXPERTS, Registry, RegistryFileError, import_file

router = APIRouter()
office = only("coordinator", "operator")

REGISTRIES: dict[str, Registry] = {r.name: r for r in (EXPERTS, AGENCIES)}
TITLES = {"experts": N_("Experts"), "agencies": N_("Agencies")}
NAVIGATION_ENTRIES = [
    (f"{PREFIX}/registry/experts", N_("Experts")),
    (f"{PREFIX}/registry/agencies", N_("Agencies")),
]
MAX_FILE = 2 << 20  # a registry of thousands of rows is well under this
SHOWN = 200  # rows a list shows at most; a search narrows it
FILE = "file"

FILE_REFUSALS = {
    "json": N_("This file is not valid JSON."),
    "not_list": N_("The JSON file must hold a list of entries."),
    "header": N_("The first line of the CSV file must name its columns, starting with code."),
}


def add_navigation() -> None:
    """The office's menu entries for the registries (install calls it)."""
    for role in ("coordinator", "operator"):
        for entry in NAVIGATION_ENTRIES:
            if entry not in NAVIGATION[role]:
                NAVIGATION[role].append(entry)


def _registry(me: Visitor, name: str) -> Registry:
    if name not in REGISTRIES:
        raise PageError(me, 404, "not_found.html")
    return REGISTRIES[name]


def _path(name: str, code: str = "") -> str:
    return f"{PREFIX}/registry/{name}" + (f"/{code}" if code else "")


@router.get("/registry/{name}")
async def entries(
    name: str,
    text: str = Query("", alias="q"),
    inactive: str = "",
    me: SignedIn = Depends(office),
) -> Response:
    registry = _registry(me, name)
    async with me.request.app.state.pool.acquire() as conn:
        rows = await q.search_registry(conn, registry.name, text.strip(), bool(inactive), SHOWN + 1)
    context = {
        "name": name,
        "title": TITLES[name],
        "rows": rows[:SHOWN],
        "more": len(rows) > SHOWN,
        "shown": SHOWN,
    }
    return render(me, "registries/list.html", context, form=Form.of(q=text, inactive=inactive))


@router.get("/registry/{name}/import")
async def import_form(name: str, me: SignedIn = Depends(office)) -> Response:
    _registry(me, name)
    return render(me, "registries/import.html", {"name": name, "title": TITLES[name]})


@router.post("/registry/{name}/import")
async def import_entries(name: str, me: SignedIn = Depends(office)) -> Response:
    registry = _registry(me, name)
    form = await Form.read(me.request)
    files = [f for f in form.files.get(FILE, []) if f.filename]
    suffix = Path(files[0].filename).suffix.lower() if files else ""
    if not files:
        form.error(FILE, me.gettext("Choose the file to import."))
    elif suffix not in (".csv", ".json"):
        form.error(FILE, me.gettext("Choose a .csv or .json file."))
    elif (files[0].size or 0) > MAX_FILE:
        form.error(FILE, me.gettext("The file may be at most %(n)s MiB.", n=MAX_FILE >> 20))
    report = None
    if form.ok:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"import{suffix}"
            path.write_bytes(await files[0].read())
            try:
                report = await import_file(me.request.app.state.pool, registry, path)
            except (RegistryFileError, UnicodeDecodeError) as err:
                reason = getattr(err, "reason", "encoding")
                form.error(FILE, _file_refusal(me, reason))
    context = {"name": name, "title": TITLES[name], "report": report}
    if report is None:
        return render(me, "registries/import.html", context, form=form, status=422)
    context["rejected"] = [
        {
            "where": me.gettext("line %(n)s", n=r.n)
            if r.label == "line"
            else me.gettext("entry %(n)s", n=r.n),
            "field": r.field,
            "why": _rule(me, r),
        }
        for r in report.rejected
    ]
    return render(me, "registries/report.html", context)


def _file_refusal(me: Visitor, reason: str) -> str:
    if reason == "encoding":
        return me.gettext("The file must be saved as UTF-8 text.")
    return me.gettext(FILE_REFUSALS.get(reason, N_("This file cannot be read as a registry.")))


def _rule(me: Visitor, rejected) -> str:
    if rejected.error is None:
        return me.gettext("This code was already given on row %(n)s.", n=rejected.first)
    return acting.invalid(me, rejected.error)


@router.get("/registry/{name}/{code}")
async def entry(name: str, code: str, me: SignedIn = Depends(office)) -> Response:
    return await _entry_page(me, name, code)


async def _entry_page(me: SignedIn, name: str, code: str, **extra: Any) -> Response:
    registry = _registry(me, name)
    async with me.request.app.state.pool.acquire() as conn:
        rows = await q.registry_rows(conn, registry.name, code)
    if not rows:
        raise PageError(me, 404, "not_found.html")
    context = {"name": name, "title": TITLES[name], "e": rows[0], **extra}
    return render(me, f"registries/{registry.one}.html", context)


@router.post("/registry/{name}/{code}/active")
async def set_active(name: str, code: str, me: SignedIn = Depends(office)) -> Response:
    """Deactivates an entry, or makes it active again (the form's `active`: no / yes). An
    inactive expert is left out of councils; an inactive agency cannot submit; either's
    sessions in the portal end."""
    registry = _registry(me, name)
    form = await Form.read(me.request)
    active = form.value("active") == "yes"
    async with me.request.app.state.pool.acquire() as conn:
        changed = await q.set_active(conn, registry.name, code, active)
    if changed is None:
        raise PageError(me, 404, "not_found.html")
    return RedirectResponse(_path(name, code), status_code=303)
