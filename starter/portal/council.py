"""The coordinator's council pages: the council the engine proposes for a request, with why
each expert was seated, kept as an alternate or left out, confirmed as it is or edited; and the
review's follow-up: each expert's state and dates, who is overdue and by how much, and per
expert an extension or a replacement, or another expert added.

    GET  /portal/cases/{id}/council                        the proposal and its explanation
    POST /portal/cases/{id}/council                        confirm it as proposed
    GET  /portal/cases/{id}/council/edit         + POST    choose the members and the chair
    GET  /portal/cases/{id}/review                         the review's follow-up
    GET  /portal/cases/{id}/review/{code}/extend  + POST   extend one expert's date
    GET  /portal/cases/{id}/review/{code}/replace + POST   replace one expert
    GET  /portal/cases/{id}/review/add            + POST   add an expert

Coordinators act; operators read the same pages without their forms. The explanation is the
engine's own (domain/matching.py, kept in the request's state: each seat's reason, the
`excluded` list, the shortfall), put into the reader's words here and never recomputed. Every
action is the catalogue's (`acting.act`); the engine's refusals come back beside the field,
or beside the member, they are about."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import RedirectResponse, Response

from db import queries as q
from domain.calendar import working_calendar
from domain.messages import RequestState
from domain.models import AssignmentState, AssignmentView, CouncilCandidate, Stage
from domain.policy import KindPolicy
from infra.links import PREFIX
from starter import access, service
from starter.portal import acting
from starter.portal.agency import kind_name
from starter.portal.forms import Form
from starter.portal.i18n import N_, deadline_text, format_date
from starter.portal.pages import render
from starter.portal.people import SignedIn, Visitor, only

router = APIRouter(include_in_schema=False)
reader = Depends(only("coordinator", "operator"))
coordinator = Depends(only("coordinator"))

# Ids are not checked by pattern here: a malformed one is answered as a missing one, a page.
RequestId = Annotated[str, Path(max_length=40)]
ExpertCode = Annotated[str, Path(max_length=40)]
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
OTHER = "other"  # the choice "another expert", whose code is typed in OTHER_CODE
OTHER_CODE = "other_code"


def now() -> datetime:
    """The pages' clock: what is overdue, and by how many working days, is counted from it (a
    test whose time-skipping server has moved on sets it to the server's time)."""
    return datetime.now(UTC)


# --- the engine's words, in the reader's -----------------------------------------------------

ROLES = {"chair": N_("chair of the council"), "member": N_("member of the council")}
# Why matching left an expert out (domain/matching.py `exclusion`, and the two ranks below).
EXCLUSIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^inactive$"), N_("inactive in the expert registry")),
    (re.compile(r"^already has a role on this request$"), N_("already has a role on this request")),
    (
        re.compile(r"^same organisation as the requester$"),
        N_("works for the requesting agency's own organisation"),
    ),
    (
        re.compile(r"^declared a conflict with (?P<name>.+)$"),
        N_("conflict of interest: declared a conflict with %(name)s"),
    ),
    (
        re.compile(r"^unavailable (?P<start>[\d-]+) to (?P<end>[\d-]+), in the review window$"),
        N_("unavailable from %(start)s to %(end)s, during the review"),
    ),
    (
        re.compile(r"^at load limit \((?P<load>\d+)/(?P<limit>\d+)\)$"),
        N_("at their load limit (%(load)s of %(limit)s tasks)"),
    ),
    (
        re.compile(r"^eligible, ranked below the alternates \(score (?P<score>\d+)\)$"),
        N_("eligible, ranked below the alternates (score %(score)s)"),
    ),
    (
        re.compile(
            r"^eligible, ranked below the council; no load left after this batch "
            r"\(score (?P<score>\d+)\)$"
        ),
        N_("eligible, but no room left once this round's councils are seated (score %(score)s)"),
    ),
]
# The shortfall's count of experts left out, by matching's label (domain/matching.py).
SHORTFALL_LABELS = {
    "inactive": N_("inactive"),
    "already on this request": N_("already on this request"),
    "from the requester's own organisation": N_("from the requester's own organisation"),
    "declared a conflict": N_("with a conflict of interest"),
    "unavailable in the review window": N_("unavailable during the review"),
    "at their load limit": N_("at their load limit"),
}
_SHORTFALL = re.compile(
    r"^not enough experts: needs (?P<size>\d+) in (?P<fields>.+?); (?P<matched>\d+) match the "
    r"fields(?:; excluded: (?P<excluded>.+?))?; (?P<seated>\d+) could be seated$"
)


def _iso_dates(names: dict[str, str]) -> dict[str, str]:
    """ISO dates among a message's values, as people read dates (dd/mm/yyyy)."""
    out = {}
    for k, v in names.items():
        try:
            out[k] = format_date(date.fromisoformat(v))
        except ValueError:
            out[k] = v
    return out


def exclusion_text(me: Visitor, why: str) -> str:
    """Why matching left an expert out, in the reader's words (the engine's own if unknown)."""
    for pattern, message in EXCLUSIONS:
        found = pattern.match(why)
        if found:
            return me.gettext(message, **_iso_dates(found.groupdict()))
    return why


def shortfall_text(me: Visitor, text: str) -> str:
    found = _SHORTFALL.match(text)
    if not found:
        return me.gettext("Not enough experts: %(reason)s", reason=text)
    sentence = me.gettext(
        "Not enough experts: the council needs %(size)s in %(fields)s; %(matched)s match these "
        "fields and %(seated)s could be seated.",
        **found.groupdict(),
    )
    if found["excluded"]:
        parts = []
        for part in found["excluded"].split(", "):
            n, _, label = part.partition(" ")
            parts.append(f"{n} {me.gettext(SHORTFALL_LABELS.get(label, label))}")
        sentence += " " + me.gettext("Left out: %(list)s.", list=", ".join(parts))
    return sentence


@dataclass
class Seat:
    """One expert of the proposal (a member or an alternate), with the engine's reasons."""

    code: str
    name: str
    role: str  # chair, member
    fields: list[str]  # "field (level 4, main field)", in the reader's words
    score: int
    load: str  # "1/3"
    association: str
    chair_why: str = ""
    chosen: bool = False  # by the coordinator, not by matching


_LEVEL = re.compile(
    r"(?P<field>[A-Za-z0-9][A-Za-z0-9_.-]*) \(level (?P<level>\d+)(?P<main>, main)?"
)
_CHAIR = re.compile(r"^chair: level (?P<level>\d+) in (?P<field>\S+); ")


def seat_of(me: Visitor, c: CouncilCandidate, names: dict[str, str]) -> Seat:
    """A seat with its reasons as matching gave them (domain/matching.py `seat`)."""
    levels = {m["field"]: (m["level"], bool(m["main"])) for m in _LEVEL.finditer(c.reason)}
    fields = []
    for f in c.matched_fields:
        if f in levels:
            level, main = levels[f]
            message = (
                N_("%(field)s (level %(level)s, main field)")
                if main
                else N_("%(field)s (level %(level)s)")
            )
            fields.append(me.gettext(message, field=f, level=level))
        else:
            fields.append(f)
    chair = _CHAIR.match(c.reason)
    return Seat(
        code=c.expert_code,
        name=names.get(c.expert_code, c.expert_code),
        role=c.role.value,
        fields=fields,
        score=c.score,
        load=f"{c.active_load}/{c.load_limit}",
        association=c.member_association,
        chair_why=(
            me.gettext(
                "the highest level in the main field: %(level)s in %(field)s", **chair.groupdict()
            )
            if chair
            else ""
        ),
        chosen=c.reason.startswith("chosen by the coordinator"),
    )


@dataclass
class LeftOut:
    code: str
    name: str
    why: str  # in the reader's words
    eligible: bool  # ranked below, not excluded by a rule


def left_out(me: Visitor, excluded: list[str], names: dict[str, str]) -> list[LeftOut]:
    out = []
    for line in excluded:
        code, _, why = line.partition(": ")
        out.append(
            LeftOut(
                code, names.get(code, code), exclusion_text(me, why), why.startswith("eligible")
            )
        )
    return out


# The engine's refusals of these pages' actions, recognised by their words: (pattern, where the
# message goes — "code" is the expert the refusal names —, message).
_REFUSALS: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"^members: the proposal has no members"),
        "members",
        N_("The proposal has no members: choose the council's members."),
    ),
    (
        re.compile(r"^cannot confirm: this council is not waiting for confirmation"),
        acting.WHOLE_FORM,
        N_("This council is not waiting for confirmation: it was confirmed already."),
    ),
    (
        re.compile(r"^cannot add an expert: the proposed council awaits confirmation"),
        acting.WHOLE_FORM,
        N_(
            "The proposed council awaits confirmation: name the expert among its members "
            "when you confirm it."
        ),
    ),
    (
        re.compile(r"^cannot add an expert: the request is in (?P<stage>\w+)"),
        acting.WHOLE_FORM,
        N_("No expert can be added now: the request is at the stage “%(stage)s”."),
    ),
    (
        re.compile(
            r"^cannot replace an expert: the request is in (?P<stage>\w+) "
            r"and its council is complete"
        ),
        acting.WHOLE_FORM,
        N_("No expert can be replaced now: the council's opinions are complete."),
    ),
    (
        re.compile(r"^cannot replace an expert: the request is in (?P<stage>\w+)"),
        acting.WHOLE_FORM,
        N_("No expert can be replaced now: the request is at the stage “%(stage)s”."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) cannot be replaced: it is being replaced"),
        acting.WHOLE_FORM,
        N_("%(code)s is already being replaced."),
    ),
    (
        re.compile(
            r"^expert_code: (?P<code>\S+) cannot be replaced: the assignment is (?P<state>\w+)"
        ),
        acting.WHOLE_FORM,
        N_("%(code)s cannot be replaced: their assignment is “%(state)s”."),
    ),
    (
        re.compile(
            r"^expert_code: (?P<code>\S+) was not replaced: .*the assignment is (?P<state>\w+)"
        ),
        acting.WHOLE_FORM,
        N_("%(code)s was not replaced: they answered first (their assignment is “%(state)s”)."),
    ),
    (
        re.compile(r"^replacement: no (eligible )?alternates? left"),
        "replacement",
        N_("No eligible alternate is left: choose the expert to invite."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) is not on this request"),
        acting.WHOLE_FORM,
        N_("%(code)s is not on this request."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) already has a role on this request"),
        "code",
        N_("%(code)s already has a role on this request."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) is already on the proposed council"),
        "code",
        N_("%(code)s is already on the proposed council."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) is already being added"),
        "code",
        N_("%(code)s is already being added; look again in a moment."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>\S+) is not in the expert registry"),
        "code",
        N_("There is no expert %(code)s in the registry."),
    ),
    (
        re.compile(r"^expert_code: (?P<code>[^:\s]+): (?P<why>.+)$"),
        "code",
        N_("%(code)s cannot sit on this council: %(why)s."),
    ),
    (
        re.compile(r"^cannot extend: the assignment is (?P<state>\w+)"),
        acting.WHOLE_FORM,
        N_("Nothing of this expert's is due: their assignment is “%(state)s”."),
    ),
]


@dataclass
class Refusal:
    field: str  # a form field, "code" (the expert it names: see `code`), or the whole form
    message: str
    code: str | None = None


def refusals(me: Visitor, text: str) -> list[Refusal]:
    """The engine's refusal as messages for the reader: an edited council's, one per member it
    names (the field `member-<code>`); others one message, for the field they are about."""
    if text.startswith("members: ") and not text.startswith("members: the proposal"):
        out = []
        for item in text.removeprefix("members: ").split("; "):
            found = re.match(r"^(?P<code>\S+) is not in the expert registry$", item)
            if found:
                code = found["code"]
                message = me.gettext("There is no expert %(code)s in the registry.", code=code)
            else:
                code, _, why = item.partition(": ")
                message = exclusion_text(me, why)
            out.append(Refusal(f"member-{code}", message, code))
        return out
    for pattern, where, message in _REFUSALS:
        found = pattern.search(text)
        if found:
            names = {k: v for k, v in found.groupdict().items() if v is not None}
            if "stage" in names:
                names["stage"] = acting.stage_name(me, names["stage"])
            if "state" in names:
                names["state"] = acting.state_name(me, names["state"])
            if "why" in names:
                names["why"] = exclusion_text(me, names["why"])
            return [Refusal(where, me.gettext(message, **names), names.get("code"))]
    field_, message = acting.refusal(me, text)
    return [Refusal(field_, message)]


async def act(
    me: SignedIn,
    name: str,
    request_id: str,
    given: dict[str, Any],
    form: Form,
    place: Callable[[Refusal], str] = lambda r: r.field,
) -> bool:
    """The catalogue's action `name` as `me`; False when refused, each reason put on the form
    where `place` says (by default the field it names)."""

    def explain(text: str) -> list[tuple[str, str]]:
        out = []
        for r in refusals(me, text):
            where = place(r)
            known = where in form.values or where.startswith("member-")
            out.append((where if known else acting.WHOLE_FORM, r.message))
        return out

    return await acting.act(me, name, request_id, given, form, explain=explain) is not None


# --- reads -----------------------------------------------------------------------------------


@dataclass
class Case:
    """What these pages show of a request: its live state, its policy, and who is who."""

    state: RequestState
    policy: KindPolicy  # the one the request runs under (opened with), not today's file
    names: dict[str, str] = field(default_factory=dict)  # expert code → registered name

    @property
    def request_id(self) -> str:
        return self.state.request_id


async def _case(me: SignedIn, request_id: str, more: list[str] = ()) -> Case:
    """The request, if this person may read it (another's, or none: a 404 page), its live
    state, and the names of every expert it mentions (and `more`)."""
    app = me.request.app.state
    async with app.pool.acquire() as conn:
        await access.visible_request(conn, request_id, acting.principal(me))
    try:
        state = await service.request_state(app.client, request_id)
    except service.ActionError:
        raise access.NotVisible(f"no request {request_id}") from None
    codes = set(more) | {a.expert_code for a in state.assignments}
    if state.council is not None:
        council = state.council
        codes |= {c.expert_code for c in [*council.members, *council.alternates]}
        codes |= {line.partition(": ")[0] for line in council.excluded}
    names = {}
    async with app.pool.acquire() as conn:
        for code in sorted(codes):
            if CODE.match(code) and (expert := await q.get_expert(conn, code)) is not None:
                names[code] = expert["name"]
    policy = await service.request_policy(app.client, request_id)
    return Case(state=state, policy=policy, names=names)


def _path(request_id: str, page: str = "") -> str:
    return f"{PREFIX}/cases/{request_id}" + (f"/{page}" if page else "")


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _words(me: SignedIn, case: Case) -> dict[str, Any]:
    """What every page of a case shows and uses."""
    state = case.state
    return {
        "case": case,
        "rid": case.request_id,
        "title": state.title,
        "stage": state.stage.value,
        "stage_name": acting.stage_name(me, state.stage.value),
        "kind_name": kind_name(me, state.kind.value),
        "name_of": lambda code: case.names.get(code, code),
        "can_act": me.person.role == "coordinator",
        "case_path": _path(case.request_id),
    }


# --- the council -----------------------------------------------------------------------------


async def _confirmation(me: SignedIn, case: Case) -> dict[str, Any]:
    """Whether the council waits for the coordinator, and what the policy says about it."""
    state = case.state
    confirmed_by = confirmed_at = None
    if state.council_status == "confirmed":
        async with me.request.app.state.pool.acquire() as conn:
            for event in await q.audit_trail(conn, case.request_id):
                if event["action"] == "council_confirmed":
                    confirmed_by = event["actor_name"] or event["actor"]
                    confirmed_at = event["at"]
    return {
        "waits": state.council_status == "proposed" and state.stage == Stage.council,
        "confirmed_by": confirmed_by,
        "confirmed_at": confirmed_at,
        "policy_confirms": case.policy.council_confirmation == "coordinator",
    }


async def _council_context(me: SignedIn, case: Case) -> dict[str, Any]:
    council = case.state.council
    context = {**_words(me, case), **await _confirmation(me, case)}
    if council is None:
        return {**context, "council": None}
    return {
        **context,
        "council": council,
        "members": [seat_of(me, c, case.names) for c in council.members],
        "alternates": [seat_of(me, c, case.names) for c in council.alternates],
        "left_out": left_out(me, council.excluded, case.names),
        "shortfall": shortfall_text(me, council.shortfall) if council.shortfall else "",
    }


@router.get("/cases/{request_id}/council")
async def council_page(request_id: RequestId, me: SignedIn = reader) -> Response:
    case = await _case(me, request_id)
    context = await _council_context(me, case)
    return render(me, "council/council.html", context, form=Form.of(once=acting.new_once()))


@router.post("/cases/{request_id}/council")
async def confirm(request_id: RequestId, me: SignedIn = coordinator) -> Response:
    """Confirms the council as the engine proposed it."""
    case = await _case(me, request_id)
    form = await Form.read(me.request)
    if not await act(me, "confirm-council", request_id, {}, form):
        context = await _council_context(me, case)
        return render(me, "council/council.html", context, form=form, status=422)
    return _see_other(_path(request_id, "review"))


@dataclass
class Choice:
    """An expert the coordinator may seat, on the edit form."""

    code: str
    name: str
    note: str  # why the engine proposed, kept or left them out


async def _edit_page(me: SignedIn, case: Case, form: Form, status: int = 200) -> Response:
    context = await _council_context(me, case)
    groups: list[tuple[str, list[Choice]]] = []
    if case.state.council is not None:

        def note(s: Seat) -> str:
            return "; ".join(
                [me.gettext(ROLES[s.role]), *s.fields, me.gettext("load %(load)s", load=s.load)]
            )

        groups = [
            (
                N_("Proposed members"),
                [Choice(s.code, s.name, note(s)) for s in context["members"]],
            ),
            (
                N_("Alternates, in order"),
                [Choice(s.code, s.name, note(s)) for s in context["alternates"]],
            ),
            (
                N_("Other eligible experts"),
                [Choice(x.code, x.name, x.why) for x in context["left_out"] if x.eligible],
            ),
            (
                N_("Left out by the rules (the engine checks them again)"),
                [Choice(x.code, x.name, x.why) for x in context["left_out"] if not x.eligible],
            ),
        ]
    listed = {c.code for _, choices in groups for c in choices}
    context.update(
        groups=[(label, choices) for label, choices in groups if choices],
        chosen=set(form.all("members")),
        # An expert named in the refusal but not listed (typed in): their reason by the field.
        unlisted=[
            (k, v)
            for k, v in form.errors.items()
            if k.startswith("member-") and k[7:] not in listed
        ],
    )
    return render(me, "council/edit.html", context, form=form, status=status)


def _typed_codes(text: str) -> list[str]:
    return [c.strip() for c in re.split(r"[,;\s]+", text) if c.strip()]


@router.get("/cases/{request_id}/council/edit")
async def edit_form(request_id: RequestId, me: SignedIn = coordinator) -> Response:
    case = await _case(me, request_id)
    members = case.state.council.members if case.state.council else []
    chair = next((m.expert_code for m in members if m.role == "chair"), "")
    form = Form(
        values={
            "members": [m.expert_code for m in members],
            "chair": [chair],
            acting.ONCE_FIELD: [acting.new_once()],
        }
    )
    return await _edit_page(me, case, form)


@router.post("/cases/{request_id}/council/edit")
async def edit(request_id: RequestId, me: SignedIn = coordinator) -> Response:
    """Confirms the council with the members and chair the coordinator chose; the engine
    checks every member again (conflicts, availability, load) and refuses naming each."""
    await _case(me, request_id)
    form = await Form.read(me.request)
    typed = _typed_codes(form.value(OTHER))
    members = list(dict.fromkeys(form.all("members") + typed))
    chair = form.value("chair")
    if bad := [c for c in typed if not CODE.match(c)]:
        form.error(
            OTHER,
            me.gettext(
                "%(codes)s: not an expert's code. Type codes like E-012, separated by commas.",
                codes=", ".join(bad),
            ),
        )
    if not members:
        form.error("members", me.gettext("Choose at least one member."))
    elif chair and chair not in members:
        form.error(
            "chair",
            me.gettext(
                "The chair must be one of the members: tick them too, or choose another chair."
            ),
        )
    if form.ok:
        given = {"members": members, "chair": chair or None}
        if await act(me, "confirm-council", request_id, given, form):
            return _see_other(_path(request_id, "review"))
    case = await _case(me, request_id, [c for c in typed if CODE.match(c)])
    # Each member's refusal names them, in the summary at the top as beside their row.
    for key, message in form.errors.items():
        if key.startswith("member-"):
            code = key.removeprefix("member-")
            form.errors[key] = f"{case.names.get(code, code)} ({code}): {message}"
    return await _edit_page(me, case, form, status=422)


# --- the review ------------------------------------------------------------------------------


@dataclass
class Follow:
    """One expert of the council as the review's follow-up shows them."""

    code: str
    name: str
    role: str
    state: str
    state_name: str
    respond_by: str  # as text, with the working days left or past
    due_at: str
    late: int | None  # working days past their current date; None: not late
    flagged: bool  # the engine reported them overdue to the office
    extensions: int
    extension_days: int
    decline_reason: str | None
    opinion_at: datetime | None
    open: bool  # invited or accepted: something is due from them
    replaced_by: str | None = None  # who took their place, and why
    replace_reason: str | None = None


def _due_of(a: AssignmentView) -> datetime | None:
    """The date the expert is held to now: answering, or their opinion."""
    if a.state == AssignmentState.invited:
        return a.respond_by
    if a.state == AssignmentState.accepted:
        return a.due_at
    return None


def _follow(
    me: SignedIn, case: Case, opinions: dict[str, datetime], replaced: dict[str, dict]
) -> list[Follow]:
    calendar = working_calendar(me.request.app.state.policy.calendar)
    at = now()

    def text(due: datetime | None, current: bool) -> str:
        if due is None:
            return ""
        return deadline_text(due, at, calendar, me.language) if current else format_date(due)

    rows = []
    for a in case.state.assignments:
        due = _due_of(a)
        late = (
            calendar.working_days_between(calendar.local_date(due), calendar.local_date(at))
            if due is not None and at > due
            else None
        )
        rows.append(
            Follow(
                code=a.expert_code,
                name=case.names.get(a.expert_code, a.expert_code),
                role=me.gettext(ROLES[a.role.value]),
                state=a.state.value,
                state_name=acting.state_name(me, a.state.value),
                respond_by=text(a.respond_by, a.state == AssignmentState.invited),
                due_at=text(a.due_at, a.state == AssignmentState.accepted),
                late=late,
                flagged=a.overdue and a.state.is_open,
                extensions=a.extensions,
                extension_days=a.extension_days,
                decline_reason=a.decline_reason,
                opinion_at=opinions.get(a.expert_code),
                open=a.state.is_open,
                replaced_by=(
                    f"{case.names.get(by, by)} ({by})"
                    if (by := replaced.get(a.expert_code, {}).get("replacement"))
                    else None
                ),
                replace_reason=replaced.get(a.expert_code, {}).get("reason"),
            )
        )
    return rows


async def _review_context(me: SignedIn, case: Case) -> dict[str, Any]:
    state = case.state
    async with me.request.app.state.pool.acquire() as conn:
        opinions = {
            o["expert_code"]: o["submitted_at"] for o in await q.opinions_of(conn, case.request_id)
        }
        replaced = {
            e["details"]["expert_code"]: e["details"]
            for e in await q.audit_trail(conn, case.request_id)
            if e["action"] == "expert_replaced"
        }
    experts = _follow(me, case, opinions, replaced)
    seated = sum(
        1 for a in state.assignments if a.state.is_open or a.state == AssignmentState.submitted
    )
    short = max(0, case.policy.council_size - seated)
    calendar = working_calendar(me.request.app.state.policy.calendar)
    return {
        **_words(me, case),
        "experts": experts,
        "submitted": sum(1 for a in state.assignments if a.state == AssignmentState.submitted),
        "council_size": case.policy.council_size,
        "quorum": case.policy.quorum,
        "stage_due": (
            deadline_text(state.stage_deadline, now(), calendar, me.language)
            if state.stage_deadline and not state.stage.is_final
            else ""
        ),
        "alternates_left": state.alternates_left,
        "short": short,
        "in_review": state.stage == Stage.review,
        "can_add": state.stage in (Stage.council, Stage.review)
        and state.council_status == "confirmed",
        "needs_expert": (
            state.stage in (Stage.council, Stage.review)
            and state.council_status == "confirmed"
            and not state.alternates_left
            and short > 0
        ),
        "working_days": case.policy.calendar == "working",
        "max_extensions": case.policy.max_extensions,
        "max_extension_days": case.policy.max_extension_days,
    }


@router.get("/cases/{request_id}/review")
async def review_page(request_id: RequestId, me: SignedIn = reader) -> Response:
    case = await _case(me, request_id)
    return render(me, "council/review.html", await _review_context(me, case))


async def _expert_page(
    me: SignedIn, request_id: str, code: str, template: str, form: Form, status: int = 200, more=()
) -> Response:
    case = await _case(me, request_id, list(more))
    context = await _review_context(me, case)
    expert = next((e for e in context["experts"] if e.code == code), None)
    if expert is None:
        raise access.NotVisible(f"no expert {code} on request {request_id}")
    context.update(expert=expert, options=_options(me, case, code))
    return render(me, template, context, form=form, status=status)


def _options(me: SignedIn, case: Case, replacing: str | None) -> list[tuple[str, str]]:
    """Whom to invite, in the engine's order: the alternates left, then the other experts
    the proposal found eligible; and another expert, by code. Replacing, the first choice
    is "the next alternate", whoever that is when the engine acts."""
    state = case.state
    on_request = {a.expert_code for a in state.assignments}
    eligible = [
        line.partition(": ")[0]
        for line in (state.council.excluded if state.council else [])
        if line.partition(": ")[2].startswith("eligible")
    ]
    codes = [c for c in dict.fromkeys([*state.alternates_left, *eligible]) if c not in on_request]

    def label(code: str) -> str:
        name = case.names.get(code, code)
        if code in state.alternates_left:
            n = state.alternates_left.index(code) + 1
            return me.gettext("%(name)s (%(code)s), alternate no. %(n)s", name=name, code=code, n=n)
        return me.gettext("%(name)s (%(code)s), eligible", name=name, code=code)

    options = []
    if replacing is not None and state.alternates_left:
        first = state.alternates_left[0]
        name = case.names.get(first, first)
        options.append(
            ("", me.gettext("Next alternate: %(name)s (%(code)s)", name=name, code=first))
        )
    elif replacing is not None:
        options.append(("", me.gettext("Next alternate: none is left")))
    options += [(code, label(code)) for code in codes]
    options.append((OTHER, me.gettext("Another expert: type their code below")))
    return options


def _chosen(me: Visitor, form: Form, name: str) -> str | None:
    """The expert chosen in the select `name`, or typed when "another expert" is chosen."""
    value = form.value(name)
    if value != OTHER:
        return value or None
    typed = form.value(OTHER_CODE).strip()
    if not CODE.match(typed):
        form.error(OTHER_CODE, me.gettext("Type the code of the expert to invite, like E-012."))
    return typed


def _where(select: str, form: Form, code: str | None) -> Callable[[Refusal], str]:
    """A refusal about the chosen expert goes beside where they were chosen."""
    used = OTHER_CODE if form.value(select) == OTHER else select

    def place(r: Refusal) -> str:
        if r.field == "code" or r.field == select:
            return used if r.code in (None, code) else acting.WHOLE_FORM
        return r.field

    return place


@router.get("/cases/{request_id}/review/{code}/extend")
async def extend_form(
    request_id: RequestId, code: ExpertCode, me: SignedIn = coordinator
) -> Response:
    form = Form.of(once=acting.new_once())
    return await _expert_page(me, request_id, code, "council/extend.html", form)


@router.post("/cases/{request_id}/review/{code}/extend")
async def extend(request_id: RequestId, code: ExpertCode, me: SignedIn = coordinator) -> Response:
    """Extends the expert's current date (answering, or their opinion) by working days."""
    await _case(me, request_id)
    form = await Form.read(me.request)
    given = {"expert_code": code, "days": form.value("days"), "reason": form.value("reason")}
    if not await act(me, "extend-expert", request_id, given, form):
        return await _expert_page(me, request_id, code, "council/extend.html", form, status=422)
    return _see_other(_path(request_id, "review"))


@router.get("/cases/{request_id}/review/{code}/replace")
async def replace_form(
    request_id: RequestId, code: ExpertCode, me: SignedIn = coordinator
) -> Response:
    form = Form.of(once=acting.new_once())
    return await _expert_page(me, request_id, code, "council/replace.html", form)


@router.post("/cases/{request_id}/review/{code}/replace")
async def replace(request_id: RequestId, code: ExpertCode, me: SignedIn = coordinator) -> Response:
    """Replaces the expert: by the next alternate, or by the expert chosen; with a reason."""
    await _case(me, request_id)
    form = await Form.read(me.request)
    replacement = _chosen(me, form, "replacement")
    page = "council/replace.html"
    if not form.ok:
        return await _expert_page(me, request_id, code, page, form, status=422)
    given = {"expert_code": code, "replacement": replacement, "reason": form.value("reason")}
    if not await act(
        me, "replace", request_id, given, form, _where("replacement", form, replacement)
    ):
        more = [replacement] if replacement else []
        return await _expert_page(me, request_id, code, page, form, 422, more)
    return _see_other(_path(request_id, "review"))


async def _add_page(
    me: SignedIn, request_id: str, form: Form, status: int = 200, more=()
) -> Response:
    case = await _case(me, request_id, list(more))
    context = await _review_context(me, case)
    context["options"] = _options(me, case, None)
    return render(me, "council/add.html", context, form=form, status=status)


@router.get("/cases/{request_id}/review/add")
async def add_form(request_id: RequestId, me: SignedIn = coordinator) -> Response:
    return await _add_page(me, request_id, Form.of(once=acting.new_once()))


@router.post("/cases/{request_id}/review/add")
async def add(request_id: RequestId, me: SignedIn = coordinator) -> Response:
    """Invites one more expert (when declines have used up the alternates)."""
    await _case(me, request_id)
    form = await Form.read(me.request)
    chosen = _chosen(me, form, "expert_code")
    if not form.ok:
        return await _add_page(me, request_id, form, status=422)
    if not chosen:
        form.error("expert_code", me.gettext("Choose the expert to invite."))
        return await _add_page(me, request_id, form, status=422)
    if not await act(
        me,
        "add-expert",
        request_id,
        {"expert_code": chosen},
        form,
        _where("expert_code", form, chosen),
    ):
        return await _add_page(me, request_id, form, status=422, more=[chosen])
    return _see_other(_path(request_id, "review"))
