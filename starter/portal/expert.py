"""The expert's pages: their tasks, one task (the request, its documents, their deadlines and
what to do next), answering an invitation, the opinion, and the chair's conclusion.

    GET  /portal/tasks                          my tasks, the earliest deadline first
    GET  /portal/tasks/{id}                     the task
    GET  /portal/tasks/{id}/accept      + POST  accept the invitation
    GET  /portal/tasks/{id}/decline     + POST  decline it, with a reason (a conflict declared)
    GET  /portal/tasks/{id}/opinion     + POST  the opinion: save a draft, or send it
    GET  /portal/tasks/{id}/conclusion  + POST  the chair: the council's opinions, the draft

The e-mails link to these paths (domain/notifications.py TASK_LINKS). Reads go through
`starter.access` as the signed-in expert, so another expert's request is the same 404 as a
missing one; actions go through `acting.act`, the catalogue's actions as the API takes them.
A draft typed into the opinion or conclusion form is kept in PostgreSQL (`portal_drafts`) when
the person saves it or the engine refuses it, so a closed tab or a refusal loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from db import queries as q
from domain.calendar import VN_TZ
from infra.links import PREFIX
from starter import access
from starter.actions import ACTIONS
from starter.api.views import ExpertRequest
from starter.portal import acting
from starter.portal.forms import Form
from starter.portal.i18n import N_, format_date
from starter.portal.pages import NAVIGATION, render
from starter.portal.people import SignedIn, Visitor, only

router = APIRouter()
expert_only = only("expert")

NAVIGATION_ENTRIES = [(f"{PREFIX}/tasks", N_("My tasks"))]

KINDS = {
    "advisory": N_("Advisory"),
    "critique": N_("Critique"),
    "social_assessment": N_("Social assessment"),
}
ROLES = {"chair": N_("chair of the council"), "member": N_("member of the council")}
RECOMMENDATIONS = {
    "endorse": N_("Endorse"),
    "endorse_with_changes": N_("Endorse with changes"),
    "do_not_endorse": N_("Do not endorse"),
}
# What a task asks of the expert now, by `next_step`.
STEPS = {
    "answer": N_("Answer the invitation"),
    "opinion": N_("Write your opinion"),
    "conclusion": N_("Draft the conclusion"),
}
OPINION_FIELDS = ("recommendation", "summary", "comments_for_agency", "confidential_note")
DRAFT_FIELDS = ("recommendation", "text")
# Starts the reason of a decline that declares a conflict of interest, so the coordinator
# reading the audit trail sees it first.
CONFLICT_MARKER = N_("Conflict of interest: ")


def add_navigation() -> None:
    """The expert's menu entries (install calls it; once, however many apps are made)."""
    for entry in NAVIGATION_ENTRIES:
        if entry not in NAVIGATION["expert"]:
            NAVIGATION["expert"].append(entry)


# --- reads ---------------------------------------------------------------------------------------


def next_step(view: ExpertRequest) -> str | None:
    """What the expert does next on this request: answer, opinion, conclusion, or nothing."""
    seat = view.assignment
    if seat is None:
        return None
    if seat.state == "invited":
        return "answer"
    if seat.state == "accepted":
        return "opinion"
    if seat.state == "submitted" and seat.role == "chair" and view.stage == "synthesis":
        return "conclusion"
    return None


async def _task(me: SignedIn, request_id: str) -> dict[str, Any]:
    """The request as this expert may see it (access.NotVisible: not theirs, or missing), with
    what its pages show about it."""
    state = me.request.app.state
    view = await access.request_view(state.pool, request_id, acting.principal(me))
    assert isinstance(view, ExpertRequest)
    async with state.pool.acquire() as conn:
        agency = await q.get_agency(conn, view.agency_code)
    seat = view.assignment
    return {
        "request_id": view.request_id,
        "task": view,
        "seat": seat,
        "agency_name": agency["name"] if agency else view.agency_code,
        "kind_name": me.gettext(KINDS.get(view.kind, view.kind)),
        "stage_name": acting.stage_name(me, view.stage),
        "state_name": acting.state_name(me, seat.state) if seat else "",
        "role_in_council": me.gettext(ROLES.get(seat.role, seat.role)) if seat else "",
        "step": next_step(view),
        "steps": STEPS,
        "recommendation_name": lambda value: me.gettext(RECOMMENDATIONS.get(value, value)),
    }


def _options(me: Visitor) -> list[tuple[str, str]]:
    return [("", me.gettext("Choose…"))] + [
        (value, me.gettext(label)) for value, label in RECOMMENDATIONS.items()
    ]


def saved_text(me: Visitor, saved_at: datetime) -> str:
    local = saved_at.astimezone(VN_TZ)
    time, day = local.strftime("%H:%M"), format_date(local)
    return me.gettext("Draft saved at %(time)s on %(date)s.", time=time, date=day)


async def _draft(me: SignedIn, request_id: str, action: str) -> tuple[dict[str, str], str]:
    """The fields of the person's saved draft, and when it was saved (as text), if any."""
    async with me.request.app.state.pool.acquire() as conn:
        row = await q.draft(conn, me.person.actor.ref, request_id, action)
    if row is None:
        return {}, ""
    return {k: str(v) for k, v in row["fields"].items()}, saved_text(me, row["saved_at"])


async def _save(me: SignedIn, request_id: str, action: str, fields: dict[str, str]) -> None:
    async with me.request.app.state.pool.acquire() as conn:
        await q.save_draft(conn, me.person.actor.ref, request_id, action, fields)


async def _drop(me: SignedIn, request_id: str, action: str) -> None:
    async with me.request.app.state.pool.acquire() as conn:
        await q.drop_draft(conn, me.person.actor.ref, request_id, action)


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _task_path(request_id: str, page: str = "") -> str:
    return f"{PREFIX}/tasks/{request_id}" + (f"/{page}" if page else "")


# --- my tasks ------------------------------------------------------------------------------------


@router.get("/tasks")
async def tasks(me: SignedIn = Depends(expert_only)) -> Response:
    async with me.request.app.state.pool.acquire() as conn:
        rows = await q.expert_tasks(conn, me.person.code)
    items = []
    for r in rows:
        if r["state"] == "invited":
            step, due = "answer", r["respond_by"]
        elif r["state"] == "accepted":
            step, due = "opinion", r["due_at"]
        else:  # the chair, in synthesis
            step, due = "conclusion", r["next_deadline"]
        items.append(
            {
                "request_id": r["request_id"],
                "title": r["title"],
                "step": me.gettext(STEPS[step]),
                "due": due,
                "overdue": due is not None and due < datetime.now(UTC),
            }
        )
    # The overdue first (their deadlines are the earliest), then by deadline; none last.
    items.sort(key=lambda t: (t["due"] is None, t["due"] or datetime.max.replace(tzinfo=UTC)))
    return render(me, "expert/tasks.html", {"tasks": items})


@router.get("/tasks/{request_id}")
async def task(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    # What was just done shows from the state itself (an opinion sent, a draft with the
    # office), so the page says it however the person arrives at it.
    return render(me, "expert/task.html", await _task(me, request_id))


# --- the invitation ------------------------------------------------------------------------------


@router.get("/tasks/{request_id}/accept")
async def accept_form(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    context = await _task(me, request_id)
    return render(me, "expert/accept.html", context, form=Form.of(once=acting.new_once()))


@router.post("/tasks/{request_id}/accept")
async def accept(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    context = await _task(me, request_id)
    form = await Form.read(me.request)
    if await acting.act(me, "accept", request_id, None, form) is None:
        return render(me, "expert/accept.html", context, form=form, status=422)
    return _see_other(_task_path(request_id, "opinion"))


@router.get("/tasks/{request_id}/decline")
async def decline_form(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    context = await _task(me, request_id)
    return render(me, "expert/decline.html", context, form=Form.of(once=acting.new_once()))


@router.post("/tasks/{request_id}/decline")
async def decline(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    context = await _task(me, request_id)
    form = await Form.read(me.request)
    reason = form.value("reason").strip()
    if form.value("conflict") and _valid(me, "decline", {"reason": reason}, form):
        reason = me.gettext(CONFLICT_MARKER) + reason
    if not form.ok or await acting.act(me, "decline", request_id, {"reason": reason}, form) is None:
        return render(me, "expert/decline.html", context, form=form, status=422)
    return _see_other(_task_path(request_id))


def _valid(me: SignedIn, action: str, given: dict[str, Any], form: Form) -> bool:
    """What the person typed, checked against the action's own model before anything is added
    to it (a declared conflict's marker would make any reason long enough)."""
    model = ACTIONS[action].given
    assert model is not None
    try:
        model.model_validate(given)
    except ValidationError as err:
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or acting.WHOLE_FORM
            form.error(field, acting.invalid(me, e))
        return False
    return True


# --- the opinion ---------------------------------------------------------------------------------


async def _opinion_page(
    me: SignedIn, request_id: str, form: Form | None, status: int = 200, saved: str = ""
) -> Response:
    context = await _task(me, request_id)
    if form is None:
        fields, saved = await _draft(me, request_id, "opinion")
        form = Form.of(**fields, once=acting.new_once())
    mine = []
    if context["seat"] is not None and context["seat"].state == "submitted":
        policy = me.request.app.state.policy
        opinions = await access.opinions(
            me.request.app.state.pool, request_id, acting.principal(me), policy
        )
        mine = [o for o in opinions if o.expert_code == me.person.code]
    context.update(saved=saved, options=_options(me), mine=mine)
    return render(me, "expert/opinion.html", context, form=form, status=status)


@router.get("/tasks/{request_id}/opinion")
async def opinion_form(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    return await _opinion_page(me, request_id, None)


@router.post("/tasks/{request_id}/opinion")
async def opinion(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    await _task(me, request_id)  # not theirs: 404, and nothing saved
    form = await Form.read(me.request)
    fields = {name: form.value(name) for name in OPINION_FIELDS}
    if form.value("do") != "send":
        await _save(me, request_id, "opinion", fields)
        return _see_other(_task_path(request_id, "opinion"))
    if await acting.act(me, "opinion", request_id, fields, form) is None:
        await _save(me, request_id, "opinion", fields)
        _, saved = await _draft(me, request_id, "opinion")
        return await _opinion_page(me, request_id, form, status=422, saved=saved)
    await _drop(me, request_id, "opinion")
    return _see_other(_task_path(request_id))


# --- the conclusion (the chair) ------------------------------------------------------------------


async def _conclusion_page(
    me: SignedIn, request_id: str, form: Form | None, status: int = 200, saved: str = ""
) -> Response:
    context = await _task(me, request_id)
    view: ExpertRequest = context["task"]
    state = me.request.app.state
    opinions = await access.opinions(state.pool, request_id, acting.principal(me), state.policy)
    async with state.pool.acquire() as conn:
        names = {o.expert_code: await q.get_expert(conn, o.expert_code) for o in opinions}
    # The latest draft the office returned, while the chair works on the next one.
    returned = (
        view.conclusion
        if view.conclusion is not None
        and view.conclusion.returned_comments
        and view.stage == "synthesis"
        else None
    )
    if form is None:
        fields, saved = await _draft(me, request_id, "draft")
        if not fields and returned is not None:
            fields = {"recommendation": returned.recommendation, "text": returned.text}
        form = Form.of(**fields, once=acting.new_once())
    context.update(
        opinions=opinions,
        expert_name=lambda code: names[code]["name"] if names.get(code) else code,
        returned=returned,
        saved=saved,
        options=_options(me),
    )
    return render(me, "expert/conclusion.html", context, form=form, status=status)


@router.get("/tasks/{request_id}/conclusion")
async def conclusion_form(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    return await _conclusion_page(me, request_id, None)


@router.post("/tasks/{request_id}/conclusion")
async def conclusion(request_id: str, me: SignedIn = Depends(expert_only)) -> Response:
    await _task(me, request_id)
    form = await Form.read(me.request)
    fields = {name: form.value(name) for name in DRAFT_FIELDS}
    if form.value("do") != "send":
        await _save(me, request_id, "draft", fields)
        return _see_other(_task_path(request_id, "conclusion"))
    if await acting.act(me, "draft", request_id, fields, form) is None:
        await _save(me, request_id, "draft", fields)
        _, saved = await _draft(me, request_id, "draft")
        return await _conclusion_page(me, request_id, form, status=422, saved=saved)
    await _drop(me, request_id, "draft")
    return _see_other(_task_path(request_id))
