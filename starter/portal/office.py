"""The Union's office at work: the coordinator's pages.

    GET  /portal/board                          open requests by stage, the urgent first
    GET  /portal/cases/{id}                     one request: all the office knows, what now
    POST /portal/cases/{id}/extend              extend the current stage's deadline
    GET  /portal/cases/{id}/screening   + POST  accept, ask for a supplement, or decline
    GET  /portal/cases/{id}/approval    + POST  approve and sign the draft, or return it
    GET  /portal/inbox                          the office's notifications, newest first
    POST /portal/inbox/{n}/read                 one notification read, for this coordinator

Forming the council and following the review (/portal/cases/{id}/council, .../review) are
starter/portal/council.py's; the case page links to them. Operators read the board and the
case pages; only coordinators act, and every action is the catalogue's, through
`acting.act`. Reads go through `starter.access` as the signed-in person."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import RedirectResponse, Response

from db import queries as q
from domain.calendar import working_calendar
from domain.models import RequestKind, Stage
from domain.policy import KindPolicy
from infra.links import PREFIX
from infra.temporal import temporal_ui_url
from starter import access, service
from starter.api.views import StaffRequest
from starter.portal import acting
from starter.portal.expert import RECOMMENDATIONS, ROLES
from starter.portal.forms import Form
from starter.portal.i18n import N_, format_date
from starter.portal.pages import NAVIGATION, render
from starter.portal.people import SignedIn, Visitor, only
from workflows.review.actions import DEADLINES

router = APIRouter(include_in_schema=False)
# Operators read what the office reads; an operator never acts.
staff = Depends(only("coordinator", "operator"))
office = Depends(only("coordinator"))

# Ids are not checked by pattern here: a malformed one is answered as a missing one, a page.
RequestId = Annotated[str, Path(max_length=40)]
BOARD_LIMIT = 500
INBOX_LIMIT = 100

NAVIGATION_ENTRIES = {
    "coordinator": [(f"{PREFIX}/board", N_("Board")), (f"{PREFIX}/inbox", N_("Inbox"))],
    "operator": [(f"{PREFIX}/board", N_("Board"))],
}


def add_navigation() -> None:
    """The office's menu entries (install calls it; once, however many apps are made): right
    after Home, the board being where the office's day starts."""
    for role, entries in NAVIGATION_ENTRIES.items():
        for i, entry in enumerate(entries):
            if entry not in NAVIGATION[role]:
                NAVIGATION[role].insert(1 + i, entry)


# --- in the person's language ------------------------------------------------------------------

# The board's groups, in the order a request goes through them.
BOARD_STAGES = (
    Stage.intake,
    Stage.screening,
    Stage.supplement,
    Stage.council,
    Stage.review,
    Stage.synthesis,
    Stage.approval,
    Stage.delivered,
    Stage.adoption,
)
# The office's own page for each stage that waits on it (council and review: council.py's).
NEXT_STEP = {
    Stage.screening: ("screening", N_("Screen the request")),
    Stage.council: ("council", N_("Confirm the council or add experts")),
    Stage.review: ("review", N_("Follow the review: extend, replace or add an expert")),
    Stage.approval: ("approval", N_("Approve or return the conclusion")),
}
# The timeline as the office reads it: every event, not only the stage changes.
EVENTS = {
    **acting.EVENTS,
    "adoption_answer_requested": N_("The agency's answer on adoption was asked for"),
    "expert_invited": N_("An expert was invited"),
    "invitation_accepted": N_("An expert accepted the invitation"),
    "invitation_declined": N_("An expert declined the invitation"),
    "invitation_expired": N_("An invitation went unanswered and expired"),
    "opinion_submitted": N_("An expert sent their opinion"),
    "assignment_cancelled": N_("An expert's assignment was cancelled"),
    "review_overdue": N_("An expert's opinion is overdue"),
    "reminder_sent": N_("A reminder was sent"),
    "document_downloaded": N_("A document was downloaded"),
}
# What the office is told (the outbox rows addressed to the coordinator), as a sentence.
NOTICES = {
    "request_submitted": N_("A new request is waiting for screening"),
    "supplement_received": N_("The agency sent the supplement asked for"),
    "request_lapsed": N_("The supplement never came: the request was closed"),
    "council_awaiting_confirmation": N_("A proposed council is waiting for confirmation"),
    "council_proposed": N_("An expert council was proposed"),
    "council_shortfall": N_("Not enough experts could be found for the council"),
    "experts_needed": N_("The council needs more experts: add one"),
    "expert_accepted": N_("An expert accepted the invitation"),
    "expert_declined": N_("An expert declined the invitation"),
    "expert_silent": N_("An expert has not answered the invitation"),
    "expert_overdue": N_("An expert's opinion is overdue"),
    "expert_replaced": N_("An expert of the council was replaced"),
    "opinion_submitted": N_("An expert sent their opinion"),
    "quorum_reached": N_("The council's opinions are all in"),
    "conclusion_ready": N_("A draft conclusion is waiting for approval"),
    "adoption_answered": N_("The agency answered on adoption"),
    "request_withdrawn": N_("The agency withdrew the request"),
    "stage_overdue": N_("A deadline has passed"),
    "screening_reminder": N_("Reminder: a request is waiting for screening"),
    "approval_reminder": N_("Reminder: a draft conclusion is waiting for approval"),
}
# An event of the catalogue no sentence above knows yet.
SOME_NOTICE = N_("A notification about this request")


@dataclass(frozen=True)
class Standing:
    """What tells what a request waits for, from its row (the board's) or its record."""

    stage: str
    # PostgreSQL keeps a council "proposed" until a coordinator confirms it, which happens
    # only where the policy has them confirm; elsewhere the engine goes on by itself.
    council_status: str | None
    confirming: bool  # the kind's policy has the coordinator confirm the council
    opinions: int
    invited: int
    council_size: int | None


def waiting_for(me: Visitor, s: Standing) -> str:
    """Who the request waits for and what for, as the office reads it (the engine's own
    `waiting_for`, from PostgreSQL: a board does not query every workflow)."""
    stage = Stage(s.stage)
    if stage.is_final:
        return me.gettext("Nothing: the request has ended")
    if stage == Stage.council:
        if s.council_status is None:
            return me.gettext("The engine: proposing a council")
        if s.council_status == "proposed" and s.confirming:
            return me.gettext("The office: confirming the proposed council")
        return me.gettext("The office: adding experts to the council")
    if stage == Stage.review:
        text = me.gettext(
            "The council: %(done)s of %(size)s opinions in",
            done=s.opinions,
            size=s.council_size or "?",
        )
        if s.invited:
            text += "; " + me.ngettext(
                "%(n)d invitation unanswered", "%(n)d invitations unanswered", s.invited
            )
        return text
    return me.gettext(
        {
            Stage.intake: N_("The engine: recording the request"),
            Stage.screening: N_("The office: screening the request"),
            Stage.supplement: N_("The agency: the supplement asked for"),
            Stage.synthesis: N_("The council's chair: drafting the conclusion"),
            Stage.approval: N_("The office: approving or returning the conclusion"),
            Stage.delivered: N_("The engine: delivering the conclusion"),
            Stage.adoption: N_("The agency: its answer on adoption"),
        }[stage]
    )


def _words(me: Visitor) -> dict[str, Any]:
    """What every office template uses to put the engine's names in words."""
    return {
        "stage_name": lambda s: acting.stage_name(me, s),
        "kind_name": lambda k: acting.kind_name(me, k),
        "state_name": lambda s: acting.state_name(me, s),
        "role_name_in_council": lambda r: me.gettext(ROLES.get(r, r)),
        "recommendation_name": lambda r: me.gettext(RECOMMENDATIONS.get(r, r)),
        "can_act": me.person is not None and me.person.role == "coordinator",
    }


def _confirming(me: Visitor, kind: str) -> bool:
    """Whether the policy has a coordinator confirm this kind's councils: the policy file's
    rule, for the board, which does not read every request's own (a request opened under
    another policy keeps its rule: `_policy` reads it, for one request's pages)."""
    policy = me.request.app.state.policy
    return policy.for_kind(RequestKind(kind)).council_confirmation == "coordinator"


async def _policy(me: Visitor, request_id: str, kind: str) -> KindPolicy:
    """The policy the request runs under, as the engine applies it; the policy file's for
    its kind when its workflow cannot be read (its history gone)."""
    state = me.request.app.state
    try:
        return await service.request_policy(state.client, request_id)
    except service.ActionError:
        return state.policy.for_kind(RequestKind(kind))


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def case_path(request_id: str, page: str = "") -> str:
    return f"{PREFIX}/cases/{request_id}" + (f"/{page}" if page else "")


# --- the board -----------------------------------------------------------------------------------

FILTERS = ("agency", "kind", "field", "coordinator")


@dataclass
class Row:
    """One request on the board."""

    id: str
    title: str
    agency: str
    kind: str
    stage: str
    due: datetime | None
    overdue: bool  # its stage deadline has passed (escalated or not)
    this_week: bool  # due within the next five working days
    expert_overdue: bool
    waiting: str
    screened_by: str | None


async def _filter_options(me: Visitor, conn) -> dict[str, list[tuple[str, str]]]:
    everyone = [("", me.gettext("All"))]
    agencies = await q.registry_rows(conn, "agencies")
    coordinators = await q.registry_rows(conn, "coordinators")
    fields = await q.expertise_fields_in_registry(conn)
    return {
        "agency": everyone + [(r["code"], r["name"]) for r in agencies],
        "kind": everyone + [(k.value, me.gettext(label)) for k, label in acting.KINDS.items()],
        "field": everyone + [(f, f) for f in fields],
        "coordinator": everyone + [(r["code"], r["name"]) for r in coordinators],
    }


FILTER_REFUSALS = {
    "agency": N_("No agency is registered with the code “%(value)s”."),
    "kind": N_("There is no kind of request “%(value)s”."),
    "field": N_("No expert works in the field “%(value)s”."),
    "coordinator": N_("No coordinator is registered with the code “%(value)s”."),
}


def check_filters(me: Visitor, form: Form, options: Mapping[str, list[tuple[str, str]]]) -> None:
    """A value no option offers (a link typed by hand, a code since removed) is refused beside
    its filter, rather than ignored: ignored, the board (or a report) would show everything
    as if it had matched. `options`: each filter's (value, label) pairs."""
    for name, offered in options.items():
        value = form.value(name)
        if value and value not in {v for v, _ in offered}:
            form.error(name, me.gettext(FILTER_REFUSALS[name], value=value))


@router.get("/board")
async def board(me: SignedIn = staff) -> Response:
    params = me.request.query_params
    form = Form(values={n: [params.get(n, "").strip()] for n in FILTERS})
    state = me.request.app.state
    async with state.pool.acquire() as conn:
        options = await _filter_options(me, conn)
        check_filters(me, form, options)
        rows = (
            await q.open_requests(
                conn,
                agency=form.value("agency") or None,
                kind=form.value("kind") or None,
                field=form.value("field") or None,
                screened_by=form.value("coordinator") or None,
                limit=BOARD_LIMIT,
            )
            if form.ok
            else []
        )
    calendar = working_calendar(state.policy.calendar)
    now = datetime.now(UTC)
    week_end = calendar.add_working_days(now, 5)
    groups: dict[str, list[Row]] = {s.value: [] for s in BOARD_STAGES}
    for r in rows:
        due = r["next_deadline"]
        standing = Standing(
            stage=r["stage"],
            council_status=r["council_status"],
            confirming=_confirming(me, r["kind"]),
            opinions=r["opinions"],
            invited=r["invited"],
            council_size=r["council_size"],
        )
        groups.setdefault(r["stage"], []).append(
            Row(
                id=r["id"],
                title=r["title"],
                agency=r["agency_name"],
                kind=r["kind"],
                stage=r["stage"],
                due=due,
                overdue=r["overdue"] or (due is not None and due < now),
                this_week=due is not None and now <= due <= week_end,
                expert_overdue=r["expert_overdue"],
                waiting=waiting_for(me, standing),
                screened_by=r["screened_by_name"],
            )
        )
    for items in groups.values():
        # The overdue first, then what falls due this week, then by deadline; none last.
        items.sort(
            key=lambda row: (
                not row.overdue,
                not row.this_week,
                row.due is None,
                row.due or datetime.max.replace(tzinfo=UTC),
            )
        )
    context = {
        "groups": [(stage, items) for stage, items in groups.items() if items],
        "count": len(rows),
        "full": len(rows) >= BOARD_LIMIT,
        "filtered": any(form.value(n) for n in FILTERS),
        "options": options,
        **_words(me),
    }
    return render(me, "office/board.html", context, form=form, status=200 if form.ok else 422)


# --- one request ---------------------------------------------------------------------------------


@dataclass
class Event:
    at: datetime
    sentence: str
    by: str | None
    detail: str


def _detail(
    me: Visitor,
    action: str,
    details: Mapping[str, Any],
    names: dict[str, str],
    by: str | None,
) -> str:
    """What an event says beyond its sentence and who acted (`by`): the note, reason or
    comments a person wrote, the new date of a deadline, the expert or document it is
    about."""
    parts = []
    if (code := details.get("expert_code")) and names.get(code, code) != by:
        parts.append(names.get(code, code))
    if action == "document_downloaded" and details.get("name"):
        parts.append(str(details["name"]))
    if action == "deadline_extended" and details.get("to"):
        to = datetime.fromisoformat(str(details["to"]))
        parts.append(me.gettext("now due %(date)s", date=format_date(to)))
    for key in ("note", "reason", "comments"):
        if details.get(key):
            parts.append(f"“{details[key]}”")
    return " — ".join(parts)


async def _case(me: SignedIn, request_id: str) -> dict[str, Any]:
    """What the case page and the office's forms show of one request."""
    state = me.request.app.state
    who = acting.principal(me)
    view = await access.request_view(state.pool, request_id, who)
    assert isinstance(view, StaffRequest)
    timeline = await access.timeline(state.pool, request_id, who)
    async with state.pool.acquire() as conn:
        row = await q.get_request(conn, request_id)
        agency = await q.get_agency(conn, view.agency_code)
        council = await q.get_council(conn, request_id)
        codes = [a.expert_code for a in view.assignments]
        if council is not None:
            codes += [m["expert_code"] for m in council["proposal"].get("members", [])]
        codes += [e.details.get("expert_code") for e in timeline if e.details.get("expert_code")]
        if view.conclusion is not None:
            codes.append(view.conclusion.drafted_by)
        names = await q.expert_names(conn, codes)
    policy = await _policy(me, request_id, view.kind)
    standing = Standing(
        stage=view.stage.value,
        council_status=council["status"] if council else None,
        confirming=policy.council_confirmation == "coordinator",
        opinions=sum(1 for a in view.assignments if a.state == "submitted"),
        invited=sum(1 for a in view.assignments if a.state == "invited"),
        council_size=row["council_size"],
    )
    events = [
        Event(
            at=e.at,
            sentence=acting.event_sentence(
                me, e.action, e.stage.value if e.stage else None, EVENTS
            ),
            by=e.actor_name,
            detail=_detail(me, e.action, e.details, names, e.actor_name),
        )
        for e in reversed(timeline)
    ]
    # What the office last asked the agency to supplement, or why it declined.
    screening_note = next(
        (
            e.details.get("note") or e.details.get("reason")
            for e in reversed(timeline)
            if e.action in ("supplement_requested", "screening_declined")
        ),
        None,
    )
    step = NEXT_STEP.get(view.stage)
    proposed = (
        council["proposal"].get("members", [])
        if council is not None and not view.assignments
        else []
    )
    extendable = view.stage in DEADLINES and view.next_deadline is not None
    return {
        "view": view,
        "request_id": view.request_id,
        "stage": view.stage.value,
        "agency_name": agency["name"] if agency else view.agency_code,
        "requested_by": row["requested_by"] or {},
        "waiting": waiting_for(me, standing),
        "step": (case_path(view.request_id, step[0]), me.gettext(step[1])) if step else None,
        "proposed": proposed,
        "expert_name": lambda code: names.get(code, code),
        "events": events,
        "screening_note": screening_note,
        "extendable": extendable,
        "policy": policy,
        "temporal_ui": temporal_ui_url(me.request.app.state.settings, view.request_id),
        **_words(me),
    }


async def _visible(me: SignedIn, request_id: str) -> None:
    """Not there: a 404 page before anything is done."""
    async with me.request.app.state.pool.acquire() as conn:
        await access.visible_request(conn, request_id, acting.principal(me))


async def _case_page(
    me: SignedIn, request_id: str, form: Form | None = None, status: int = 200
) -> Response:
    context = await _case(me, request_id)
    form = form or Form.of(once=acting.new_once())
    return render(me, "office/case.html", context, form=form, status=status)


@router.get("/cases/{request_id}")
async def case(request_id: RequestId, me: SignedIn = staff) -> Response:
    return await _case_page(me, request_id)


@router.post("/cases/{request_id}/extend")
async def extend(request_id: RequestId, me: SignedIn = office) -> Response:
    form = await Form.read(me.request)
    await _visible(me, request_id)
    given = {"days": form.value("days"), "reason": form.value("reason")}
    if await acting.act(me, "extend", request_id, given, form) is None:
        return await _case_page(me, request_id, form, status=422)
    return _see_other(case_path(request_id))


# --- screening -----------------------------------------------------------------------------------

# Each refusal's text field: what the agency is asked to supplement, or why it is declined.
SCREENING_TEXT = {"supplement": "note", "decline": "reason"}


def _beside(me: Visitor, field: str) -> Callable[[str], list[tuple[str, str]]]:
    """The engine's refusal of a screening names its "note": shown beside the field the
    person typed it in (a decline's reason)."""

    def explain(refused: str) -> list[tuple[str, str]]:
        named, message = acting.refusal(me, refused)
        return [(field, message)] if named == "note" else []

    return explain


async def _screening_page(me: SignedIn, request_id: str, form: Form, status: int = 200) -> Response:
    context = await _case(me, request_id)
    state = me.request.app.state
    days = context["policy"].supplement_days
    calendar = working_calendar(state.policy.calendar)
    context.update(
        supplement_days=days,
        supplement_due=calendar.add_working_days(datetime.now(UTC), days),
    )
    return render(me, "office/screening.html", context, form=form, status=status)


@router.get("/cases/{request_id}/screening")
async def screening_form(request_id: RequestId, me: SignedIn = staff) -> Response:
    return await _screening_page(me, request_id, Form.of(once=acting.new_once()))


@router.post("/cases/{request_id}/screening")
async def screen(request_id: RequestId, me: SignedIn = office) -> Response:
    form = await Form.read(me.request)
    await _visible(me, request_id)
    decision = form.value("decision")
    field = SCREENING_TEXT.get(decision, "note")
    text = form.value(field) if decision in SCREENING_TEXT else ""
    if decision in SCREENING_TEXT and not text.strip():
        # The engine asks for a few characters; left blank, the field was not filled in.
        form.error(field, me.gettext("Please fill this in."))
    else:
        given = {"decision": decision, "note": text}
        explain = _beside(me, field)
        if await acting.act(me, "screen", request_id, given, form, explain) is not None:
            return _see_other(case_path(request_id))
        # A rule of the input's own model (a note too long) names "note" too.
        if "note" in form.errors and field != "note":
            form.errors[field] = form.errors.pop("note")
    return await _screening_page(me, request_id, form, status=422)


# --- approval ------------------------------------------------------------------------------------


async def _approval_page(me: SignedIn, request_id: str, form: Form, status: int = 200) -> Response:
    context = await _case(me, request_id)
    state = me.request.app.state
    opinions = await access.opinions(state.pool, request_id, acting.principal(me), state.policy)
    async with state.pool.acquire() as conn:
        more = await q.expert_names(conn, [o.expert_code for o in opinions])
    known = context["expert_name"]
    view: StaffRequest = context["view"]
    conclusion = view.conclusion
    if not form.value("version") and conclusion is not None:
        form.values["version"] = [str(conclusion.version)]
    context.update(
        opinions=opinions,
        opinion_by=lambda code: more.get(code) or known(code),
        conclusion=conclusion,
        deciding=view.stage == Stage.approval and conclusion is not None,
    )
    return render(me, "office/approval.html", context, form=form, status=status)


@router.get("/cases/{request_id}/approval")
async def approval_form(request_id: RequestId, me: SignedIn = staff) -> Response:
    return await _approval_page(me, request_id, Form.of(once=acting.new_once()))


@router.post("/cases/{request_id}/approval")
async def approval(request_id: RequestId, me: SignedIn = office) -> Response:
    form = await Form.read(me.request)
    await _visible(me, request_id)
    do = form.value("do")
    async with me.request.app.state.pool.acquire() as conn:
        current = await q.conclusion_of(conn, request_id)
    # The form names the draft it was read beside: a decision is about that draft only.
    if current is not None and form.value("version") != str(current["version"]):
        form.error(
            acting.WHOLE_FORM,
            me.gettext(acting.NEWER_DRAFT, n=current["version"]),
        )
    elif do == "approve" and current is not None and current["returned_comments"]:
        form.error(
            acting.WHOLE_FORM,
            me.gettext(
                "This draft was returned to the chair: it can no longer be approved. The "
                "chair's next draft will come here for approval."
            ),
        )
    elif do == "approve":
        given = {"version": current["version"] if current is not None else None}
        if await acting.act(me, "approve", request_id, given, form) is not None:
            return _see_other(case_path(request_id))
    elif do == "return":
        given = {"comments": form.value("comments"), "version": form.value("version") or None}
        if await acting.act(me, "return", request_id, given, form) is not None:
            return _see_other(case_path(request_id))
    else:
        form.error(acting.WHOLE_FORM, me.gettext("Choose one of the options."))
    return await _approval_page(me, request_id, form, status=422)


# --- the inbox -----------------------------------------------------------------------------------


@router.get("/inbox")
async def inbox(me: SignedIn = office) -> Response:
    unread = me.request.query_params.get("unread") == "1"
    async with me.request.app.state.pool.acquire() as conn:
        rows = await q.inbox(
            conn, "coordinator", None, me.person.actor.ref, unread_only=unread, limit=INBOX_LIMIT
        )
    items = [
        {
            "id": r["id"],
            "request_id": r["request_id"],
            "title": (r["payload"] or {}).get("title") or r["request_id"],
            "sentence": me.gettext(NOTICES.get(r["event"], SOME_NOTICE)),
            "at": r["created_at"],
            "read": r["read_at"] is not None,
        }
        for r in rows
    ]
    context = {"items": items, "unread_only": unread}
    return render(me, "office/inbox.html", context)


@router.post("/inbox/{notification_id}/read")
async def mark_read(
    notification_id: Annotated[int, Path(ge=1, le=2**63 - 1)], me: SignedIn = office
) -> Response:
    """Read for this coordinator only: each of the office reads its notifications on their
    own. Marking twice changes nothing."""
    async with me.request.app.state.pool.acquire() as conn:
        marked = await q.mark_read(
            conn, "coordinator", None, me.person.actor.ref, [notification_id]
        )
    if not marked:
        raise access.NotVisible(f"no notification {notification_id}")
    form = await Form.read(me.request)
    back = f"{PREFIX}/inbox" + ("?unread=1" if form.value("unread") == "1" else "")
    return _see_other(back)
