"""A portal form taking one action of the catalogue (starter/actions.py).

What the person typed becomes the action's input, run by `actions.take` as the person who
signed in, exactly as the API and the CLI run it. A refusal comes back as a message beside
the field it is about (or above the form), in the person's language, and the form keeps what
they typed. A form posted twice (a double click, a reload) is one action: its hidden `once`
value makes the workflow update's id, which Temporal applies once. A refused form comes back
with a new `once`, so that sending it corrected is a new action.

    form = Form.of(once=new_once())                 # the page, first shown
    ...
    done = await act(me, "decline", request_id, {"reason": form.value("reason")}, form)
    if done is None:                                 # refused: show the form again
        return render(me, "expert/decline.html", ctx, form=form, status=422)
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from domain.messages import RequestState
from domain.models import AssignmentView, RequestKind
from starter import actions, service
from starter.access import Principal
from starter.portal.forms import Form
from starter.portal.i18n import N_
from starter.portal.people import SignedIn, Visitor

# The key of a message about the whole form, not one field (shown above it).
WHOLE_FORM = "_"
ONCE_FIELD = "once"


def principal(me: SignedIn) -> Principal:
    """The signed-in person as the read rules (starter/access.py) know them."""
    p = me.person
    return Principal(role=p.role, subject=p.code, person=p.actor)  # type: ignore[arg-type]


def new_once() -> str:
    return secrets.token_urlsafe(12)


def _update_id(me: SignedIn, name: str, request_id: str, once: str) -> str | None:
    if not once:
        return None
    encoded = json.dumps([me.person.actor.ref, name, request_id, once], ensure_ascii=False)
    return "portal-" + hashlib.sha256(encoded.encode()).hexdigest()


async def act(
    me: SignedIn,
    name: str,
    request_id: str,
    given: dict[str, Any] | None,
    form: Form,
    explain: Callable[[str], list[tuple[str, str]]] | None = None,
) -> RequestState | AssignmentView | None:
    """Takes the action `name` as `me` on the request; None when it was refused, with the
    reasons put on `form`. `explain`: the page's own reading of the engine's refusal, as
    (field, message) pairs (one refusal may name several fields: an edited council names
    each member it refuses); when it gives none, `refusal` reads it."""
    action = actions.ACTIONS[name]
    state = me.request.app.state
    try:
        model = action.given.model_validate(given or {}) if action.given is not None else None
    except ValidationError as err:
        for e in err.errors():
            form.error(".".join(str(p) for p in e["loc"]) or WHOLE_FORM, invalid(me, e))
        return None
    try:
        inp = action.input(me.person.actor, model)
        return await actions.take(
            state.client,
            state.pool,
            action,
            me.person.actor,
            request_id,
            inp,
            update_id=_update_id(me, name, request_id, form.value(ONCE_FIELD)),
        )
    except service.ActionError as err:
        # The form comes back with a fresh `once`: the engine keeps a refused update's answer
        # under its id, so the corrected form sent with the old one would get the refusal again.
        if ONCE_FIELD in form.values:
            form.values[ONCE_FIELD] = [new_once()]
        if explain is not None and (explained := explain(str(err))):
            for field, message in explained:  # the page's own places (a member's row, ...)
                form.error(field, message)
        else:
            field, message = refusal(me, str(err))
            form.error(field if field in form.values else WHOLE_FORM, message)
        return None


# --- in the person's language ----------------------------------------------------------------

STAGES = {
    "intake": N_("intake"),
    "screening": N_("screening"),
    "supplement": N_("waiting for a supplement"),
    "council": N_("forming the council"),
    "review": N_("review by the council"),
    "synthesis": N_("drafting the conclusion"),
    "approval": N_("approval of the conclusion"),
    "delivered": N_("conclusion delivered"),
    "adoption": N_("waiting for the answer on adoption"),
    "closed": N_("closed"),
    "declined": N_("declined"),
    "withdrawn": N_("withdrawn"),
}
ASSIGNMENT_STATES = {
    "invited": N_("invited"),
    "accepted": N_("accepted"),
    "declined": N_("declined"),
    "expired": N_("expired"),
    "submitted": N_("opinion sent"),
    "cancelled": N_("cancelled"),
}


KINDS = {
    RequestKind.advisory: N_("Advisory"),
    RequestKind.critique: N_("Critique"),
    RequestKind.social_assessment: N_("Social assessment"),
}
# Each audit event of the timeline (access.timeline), as a sentence anyone may read: the
# agency's page shows these, the office's adds its own (starter/portal/office.py).
EVENTS = {
    "submitted": N_("The request was received"),
    "screening_accepted": N_("The Union's office accepted the request for review"),
    "screening_declined": N_("The Union's office declined the request"),
    "supplement_requested": N_("The Union's office asked for a supplement"),
    "supplemented": N_("The supplement was sent"),
    "supplement_lapsed": N_("The time for the supplement ran out"),
    "council_proposed": N_("An expert council was proposed"),
    "council_confirmed": N_("The expert council was confirmed"),
    "experts_needed": N_("More experts are being sought for the council"),
    "expert_replaced": N_("An expert of the council was replaced"),
    "review_opened": N_("The council's review began"),
    "quorum_reached": N_("The council's opinions are all in"),
    "synthesis_opened": N_("The chair began drafting the conclusion"),
    "conclusion_drafted": N_("The conclusion was drafted"),
    "conclusion_returned": N_("The draft conclusion was returned for changes"),
    "conclusion_approved": N_("The conclusion was approved and signed"),
    "conclusion_delivered": N_("The conclusion was delivered"),
    "adoption_answer_requested": N_("Your answer on adoption was asked for"),
    "adoption_answered": N_("The answer on adoption was received; the request is closed"),
    "deadline_extended": N_("The deadline was extended"),
    "deadline_escalated": N_("The deadline passed and was reported to the Union's office"),
    "withdrawn": N_("The request was withdrawn"),
}


def stage_name(me: Visitor, stage: str) -> str:
    return me.gettext(STAGES.get(stage, stage))


def state_name(me: Visitor, state: str) -> str:
    return me.gettext(ASSIGNMENT_STATES.get(state, state))


def kind_name(me: Visitor, kind: str) -> str:
    return me.gettext(KINDS.get(RequestKind(kind), kind))


def event_sentence(
    me: Visitor, action: str, stage: str | None, events: Mapping[str, str] = EVENTS
) -> str:
    """An audit event as a sentence; one no sentence knows, by the stage it moved to."""
    if action in events:
        return me.gettext(events[action])
    if stage is None:
        return me.gettext("Something was recorded: %(action)s", action=action)
    return me.gettext("The request moved to the stage “%(stage)s”", stage=stage_name(me, stage))


def invalid(me: Visitor, error: dict[str, Any]) -> str:
    """A field's validation error (pydantic's) as a person reads it."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return me.gettext("Please fill this in.")
    if kind == "string_too_short":
        # Left blank (or spaces only) is a field not filled in, whatever its minimum length.
        if ctx.get("min_length", 1) <= 1 or not str(error.get("input") or "").strip():
            return me.gettext("Please fill this in.")
        return me.gettext("Write at least %(n)s characters.", n=ctx.get("min_length"))
    if kind == "string_too_long":
        return me.gettext("Write at most %(n)s characters.", n=ctx.get("max_length"))
    if kind in ("literal_error", "enum"):
        return me.gettext("Choose one of the options.")
    if kind == "too_short":
        return me.gettext("Add at least %(n)s.", n=ctx.get("min_length"))
    if kind in ("int_parsing", "int_type", "greater_than_equal", "less_than_equal"):
        return me.gettext("Enter a whole number in the range allowed.")
    if "email" in str(error.get("msg", "")).lower():
        return me.gettext("Enter an e-mail address, like name@example.vn.")
    return me.gettext("This value is not valid.")


# The policy's deadlines (workflows/deadlines.py names them), as a refusal names them.
DEADLINES = {
    "screening": N_("screening deadline"),
    "supplement": N_("supplement deadline"),
    "respond": N_("answer-by date"),
    "review": N_("opinion due date"),
    "synthesis": N_("deadline for the conclusion's draft"),
    "approval": N_("approval deadline"),
    "adoption": N_("deadline for the answer on adoption"),
}

NEWER_DRAFT = N_(
    "A newer draft (version %(n)s) came in after this page was opened: read it, then decide."
)

# The engine's refusals (workflow validators, the service layer), recognised by their words.
_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"the request is in (?P<stage>\w+), not"),
        N_("This cannot be done now: the request is at the stage “%(stage)s”."),
    ),
    (
        re.compile(r"the request is (?P<stage>\w+): nothing more"),
        N_("The request is %(stage)s: nothing more can be done on it."),
    ),
    (
        re.compile(r"has ended|is closed|is not running"),
        N_("This task has ended: nothing more can be done on it."),
    ),
    (
        re.compile(r"the invitation is already (?P<state>\w+)"),
        N_("This invitation is already %(state)s."),
    ),
    (re.compile(r"accept the invitation first"), N_("Accept the invitation first.")),
    (
        re.compile(r"the assignment is (?P<state>\w+)"),
        N_("Your assignment is %(state)s: this cannot be done."),
    ),
    (
        re.compile(r"already being recorded|is being withdrawn"),
        N_("Another action on this request is being recorded; try again in a moment."),
    ),
    (re.compile(r"is not the chair"), N_("Only the council's chair drafts the conclusion.")),
    (
        re.compile(r"is no longer the one to decide on: draft (?P<n>\d+) came in"),
        NEWER_DRAFT,
    ),
    (re.compile(r"no upload"), N_("A document is not one of your uploads.")),
    (
        re.compile(r"required \(at least (?P<n>\d+) characters\)"),
        N_("Write at least %(n)s characters."),
    ),
    (
        re.compile(r"the request is in (?P<stage>\w+), which has no deadline"),
        N_("The stage “%(stage)s” has no deadline of its own to extend."),
    ),
    (
        re.compile(r"the (?P<deadline>\w+) deadline has been extended (?P<n>\d+) time"),
        N_("The %(deadline)s has been extended %(n)s times already, the most the policy allows."),
    ),
    (
        re.compile(
            r"at most (?P<left>[1-9]\d*) more day\(s\) may be added to the (?P<deadline>\w+) "
            r"deadline \(the policy allows (?P<max>\d+) in all\)"
        ),
        N_(
            "At most %(left)s more days may be added to the %(deadline)s: "
            "the policy allows %(max)s in all."
        ),
    ),
    (
        re.compile(
            r"at most -?\d+ more day\(s\) may be added to the (?P<deadline>\w+) "
            r"deadline \(the policy allows (?P<max>\d+) in all\)"
        ),
        N_(
            "No more days may be added to the %(deadline)s: the policy allows "
            "%(max)s in all, and they are used."
        ),
    ),
    (
        re.compile(r"the review is closing on its quorum"),
        N_("The review is closing on its quorum: its deadline cannot be extended."),
    ),
    (re.compile(r"^no "), N_("Not found.")),
]


def refusal(me: Visitor, text: str) -> tuple[str, str]:
    """(field, message) for a refusal: the field its text names ("note: …"), else the whole
    form; the message in the person's language, with the engine's own words after it when
    no translation knows them."""
    field, sep, rest = text.partition(": ")
    field = field if sep and re.fullmatch(r"[a-z_.0-9]+", field) else WHOLE_FORM
    for pattern, message in _REFUSALS:
        found = pattern.search(text)
        if found:
            names = found.groupdict()
            if "stage" in names:
                names["stage"] = stage_name(me, names["stage"])
            if "state" in names:
                names["state"] = state_name(me, names["state"])
            if "deadline" in names:
                names["deadline"] = me.gettext(DEADLINES.get(names["deadline"], names["deadline"]))
            return field, me.gettext(message, **names)
    return field, me.gettext("The engine refused this: %(reason)s", reason=rest or text)
