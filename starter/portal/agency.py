"""The requesting agency's pages: its requests, a new submission with its files, one request
(stage, deadline, who acts next, documents, timeline, the signed conclusion), and the three
things an agency does to a request — supplement it, withdraw it, answer on adoption — each a
form over the catalogue's action (starter/portal/acting.py). A document's download is here
too, for anyone `access.document` lets read it (the expert pages link to it).

Reads go through `starter.access` as the person who signed in: another agency's request is
answered exactly as a missing one (`access.NotVisible`, a 404 page)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from db import queries as q
from domain.models import (
    WITHDRAWABLE,
    AdoptionStatus,
    Document,
    Recommendation,
    RequestSubmission,
    Stage,
    request_id_for,
)
from infra.links import PREFIX
from starter import access, documents, service
from starter.portal import acting
from starter.portal.acting import kind_name
from starter.portal.forms import Form
from starter.portal.i18n import N_
from starter.portal.pages import render
from starter.portal.people import SignedIn, Visitor, only, signed_in

router = APIRouter()
agency = Depends(only("agency"))
anyone = Depends(signed_in)

# Ids are not checked by pattern here: a malformed one is answered as a missing one, a page.
RequestId = Annotated[str, Path(max_length=40)]
DocumentId = Annotated[str, Path(max_length=40)]
FILES = "files"
PAGE_SIZE = 100

# --- in the person's language ------------------------------------------------------------------

RECOMMENDATIONS = {
    Recommendation.endorse: N_("The council endorses the draft."),
    Recommendation.endorse_with_changes: N_("The council endorses the draft with changes."),
    Recommendation.do_not_endorse: N_("The council does not endorse the draft."),
}
ADOPTION = {
    AdoptionStatus.adopted: N_("Adopted in full"),
    AdoptionStatus.partially_adopted: N_("Adopted in part"),
    AdoptionStatus.not_adopted: N_("Not adopted (with an explanation)"),
}
# Who must act next, as the agency reads it.
WAITING = {
    Stage.intake: N_("The Union's office: receiving your request"),
    Stage.screening: N_("The Union's office: screening your request"),
    Stage.supplement: N_("You: the supplement asked for"),
    Stage.council: N_("The Union's office: forming the expert council"),
    Stage.review: N_("The expert council: its review"),
    Stage.synthesis: N_("The council's chair: drafting the conclusion"),
    Stage.approval: N_("The Union's office: approving the conclusion"),
    Stage.delivered: N_("You: your answer on adoption"),
    Stage.adoption: N_("You: your answer on adoption"),
}
# The refusals of documents.upload, recognised by their words.
_UPLOAD_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^file: (?P<name>.+) is empty$"), N_("%(name)s is empty.")),
    (
        re.compile(
            r"^file: (?P<name>.+) is (?P<size>[\d.]+) MiB; a file may be at most (?P<max>\d+)"
        ),
        N_("%(name)s is %(size)s MiB; a file may be at most %(max)s MiB."),
    ),
    (
        re.compile(r"^file: (?P<name>.+) is not an? .* file \(judged by its content\)$"),
        N_(
            "%(name)s is not a PDF, DOCX, XLSX, ODT, ODS, PNG or JPEG file (judged by its content)."
        ),
    ),
]


def waiting_for(me: Visitor, stage: str) -> str:
    found = WAITING.get(Stage(stage))
    return me.gettext(found) if found else me.gettext("Nothing: the request has ended")


def upload_refusal(me: Visitor, text: str, name: str) -> str:
    for pattern, message in _UPLOAD_REFUSALS:
        found = pattern.search(text)
        if found:
            return me.gettext(message, **found.groupdict())
    return me.gettext("%(name)s cannot be accepted: %(reason)s", name=name, reason=text)


def _words(me: Visitor) -> dict[str, Any]:
    """What every agency template uses to put the engine's names in words."""
    return {
        "stage_name": lambda s: acting.stage_name(me, s),
        "kind_name": lambda k: kind_name(me, k),
        "waiting_for": lambda s: waiting_for(me, s),
    }


# --- files ---------------------------------------------------------------------------------------


def chosen_files(form: Form, name: str = FILES) -> list[UploadFile]:
    """The files chosen in a file field; a browser sends an empty part when none was."""
    return [f for f in form.files.get(name, []) if f.filename]


async def store_files(
    me: SignedIn, files: list[UploadFile], form: Form, reuse_for: str | None
) -> list[Document] | None:
    """Every file stored as the agency's upload, or none (None): each refused file is named
    beside the file field, and the ones already stored are discarded."""
    state = me.request.app.state
    limits = documents.Limits.of(state.settings)
    if len(files) > limits.files:
        form.error(FILES, me.gettext("Choose at most %(n)s files at once.", n=limits.files))
        return None
    if sum(f.size or 0 for f in files) > limits.request:
        form.error(
            FILES,
            me.gettext("The files may be at most %(n)s MiB in all.", n=limits.request >> 20),
        )
        return None
    stored: list[Document] = []
    refused: list[str] = []
    for f in files:
        try:
            async with state.storing:
                doc = await documents.upload(
                    state.pool,
                    state.store,
                    f.file,
                    f.filename or "",
                    me.person.actor.ref,
                    limits=limits,
                    reuse_for=reuse_for,
                )
        except service.ActionError as err:
            refused.append(upload_refusal(me, str(err), f.filename or ""))
            continue
        stored.append(doc)
    if refused:
        await discard(me, stored)
        form.error(FILES, " ".join(refused))
        return None
    return stored


async def discard(me: SignedIn, stored: list[Document] | None) -> None:
    """Uploads of a form that was refused. One that `reuse_for` found already part of the
    request stays: discard removes only uploads that belong to no request."""
    await documents.discard(me.request.app.state.pool, [d.id for d in stored or []])


async def _visible(me: SignedIn, request_id: str) -> None:
    """Another agency's request, or none: a 404 page before anything is stored or done."""
    async with me.request.app.state.pool.acquire() as conn:
        await access.visible_request(conn, request_id, acting.principal(me))


def _field(loc: tuple[Any, ...]) -> str:
    """A validation error's place as the form's field: list positions dropped
    (expertise_fields.0 is the expertise_fields field), documents are the file field."""
    names = [str(p) for p in loc if not isinstance(p, int)]
    if names[:1] == ["documents"]:
        return FILES
    return ".".join(names) or acting.WHOLE_FORM


# --- my requests ---------------------------------------------------------------------------------


@router.get("/requests")
async def my_requests(me: SignedIn = agency) -> Response:
    async with me.request.app.state.pool.acquire() as conn:
        rows = await q.requests_page(
            conn,
            agency=me.person.code,
            expert=None,
            stage=None,
            kind=None,
            overdue=None,
            after=None,
            limit=PAGE_SIZE,
        )
    return render(me, "agency/requests.html", {"rows": rows, **_words(me)})


# --- a new request -------------------------------------------------------------------------------


async def _new_page(me: SignedIn, form: Form, status: int = 200) -> Response:
    async with me.request.app.state.pool.acquire() as conn:
        fields = await q.expertise_fields_in_registry(conn)
    kinds = [(k.value, me.gettext(label)) for k, label in acting.KINDS.items()]
    context = {"kinds": kinds, "fields": fields, "chosen": set(form.all("expertise_fields"))}
    return render(me, "agency/new.html", context, form=form, status=status)


async def _contact(me: SignedIn) -> dict[str, str]:
    """The agency's registered contact who signed in (name, e-mail), to fill in ahead."""
    async with me.request.app.state.pool.acquire() as conn:
        row = await q.get_agency(conn, me.person.code)
    for c in (row["contacts"] if row else None) or []:
        if str(c.get("email", "")).lower() == me.person.email.lower():
            return {"name": c.get("name", ""), "email": c.get("email", "")}
    return {"name": "", "email": me.person.email}


@router.get("/requests/new")
async def new_request_form(me: SignedIn = agency) -> Response:
    contact = await _contact(me)
    form = Form.of(
        once=acting.new_once(),
        **{"requested_by.name": contact["name"], "requested_by.email": contact["email"]},
    )
    return await _new_page(me, form)


@router.post("/requests/new")
async def new_request(me: SignedIn = agency) -> Response:
    form = await Form.read(me.request)
    state = me.request.app.state
    code = me.person.code
    data: dict[str, Any] = {
        "kind": form.value("kind"),
        "title": form.value("title"),
        "summary": form.value("summary"),
        # The signed-in agency's code, never typed; its name the registry's.
        "agency": {"code": code},
        "agency_reference": form.value("agency_reference"),
        "expertise_fields": form.all("expertise_fields"),
        "requested_by": {
            "name": form.value("requested_by.name"),
            "email": form.value("requested_by.email"),
            "language": me.language,
        },
    }
    files = chosen_files(form)
    # Checked before any file is stored, the uploads' place held.
    placeholder = [{"id": "D-000000000000"}]
    try:
        RequestSubmission.model_validate({**data, "documents": placeholder})
    except ValidationError as err:
        for e in err.errors():
            form.error(_field(e["loc"]), acting.invalid(me, e))
    if not files:
        form.error(FILES, me.gettext("Choose at least one file."))
    reference = form.value("agency_reference").strip()
    request_id = request_id_for(code, reference) if reference else None
    stored = await store_files(me, files, form, reuse_for=request_id) if files else None
    if not form.ok:
        await discard(me, stored)
        return await _new_page(me, form, status=422)
    data["documents"] = [{"id": d.id} for d in stored or []]
    try:
        submission = RequestSubmission.model_validate(data)
        done = await service.submit(
            state.client,
            state.pool,
            submission,
            state.policy,
            task_queue=state.task_queue,
            submit_id=_submit_id(me, form),
        )
    except service.ActionError as err:
        await discard(me, stored)
        field, message = acting.refusal(me, str(err))
        if field == "agency_reference":
            message = me.gettext(
                "This reference already names another request of yours, submitted with "
                "different content: use a new reference."
            )
        form.error(field if field in form.values else acting.WHOLE_FORM, message)
        return await _new_page(me, form, status=422)
    return RedirectResponse(f"{PREFIX}/requests/{done.request_id}", status_code=303)


def _submit_id(me: SignedIn, form: Form) -> str | None:
    """The form's `once` as the submission's id: posted twice, it is one submission."""
    once = form.value(acting.ONCE_FIELD)
    if not once:
        return None
    encoded = json.dumps([me.person.actor.ref, "submit", once], ensure_ascii=False)
    return "portal-" + hashlib.sha256(encoded.encode()).hexdigest()


# --- one request ---------------------------------------------------------------------------------


async def _request(me: SignedIn, request_id: str) -> dict[str, Any]:
    """What the request's page and its forms show, as this agency may see it."""
    pool = me.request.app.state.pool
    who = acting.principal(me)
    view = await access.request_view(pool, request_id, who)
    timeline = await access.timeline(pool, request_id, who)
    note, number = None, None
    async with pool.acquire() as conn:
        if view.stage == Stage.supplement:
            # The note that asked for it: the agency was sent it, it is the agency's to read.
            for row in reversed(await q.audit_trail(conn, request_id)):
                if row["action"] == "supplement_requested":
                    note = (row["details"] or {}).get("note")
                    break
        if view.conclusion is not None:
            number = await q.conclusion_number(conn, request_id)
    submitted = [d for d in view.documents if d.kind == "submitted"]
    conclusion_doc = next((d for d in view.documents if d.kind == "conclusion"), None)
    return {
        "view": view,
        "stage": view.stage.value,
        "documents": submitted,
        "conclusion_doc": conclusion_doc if view.conclusion is not None else None,
        "number": number,
        "screening_note": note,
        "events": [
            (e.at, acting.event_sentence(me, e.action, e.stage.value)) for e in reversed(timeline)
        ],
        "recommendation": (
            me.gettext(RECOMMENDATIONS[view.conclusion.recommendation]) if view.conclusion else ""
        ),
        "adoption_status": me.gettext(ADOPTION[view.adoption.status]) if view.adoption else "",
        "can_supplement": view.stage == Stage.supplement,
        "can_answer": view.stage in (Stage.delivered, Stage.adoption) and view.adoption is None,
        "can_withdraw": view.stage in WITHDRAWABLE,
        **_words(me),
    }


@router.get("/requests/{request_id}")
async def request_page(request_id: RequestId, me: SignedIn = agency) -> Response:
    return render(me, "agency/request.html", await _request(me, request_id))


@router.get("/requests/{request_id}/documents/{document_id}")
async def download(
    request_id: RequestId,
    document_id: DocumentId,
    me: SignedIn = anyone,
    range_: Annotated[str | None, Header(alias="Range", max_length=100)] = None,
) -> Response:
    """A document, streamed as the API streams it, for anyone who may read it; the download
    is in the audit log as the person's."""
    state = me.request.app.state
    async with state.pool.acquire() as conn:
        doc = await access.document(conn, request_id, document_id, acting.principal(me))
        span = documents.byte_range(range_, doc["size"])
        if span == "unsatisfiable":
            return Response(status_code=416, headers={"Content-Range": f"bytes */{doc['size']}"})
        await documents.log_download(conn, request_id, doc, me.person.actor.ref, span)
    response = documents.streamed(state.store, doc, span)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- what the agency does ------------------------------------------------------------------------


def _done(request_id: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/requests/{request_id}", status_code=303)


async def _action_page(
    me: SignedIn, template: str, request_id: str, form: Form, status: int = 200
) -> Response:
    return render(me, template, await _request(me, request_id), form=form, status=status)


@router.get("/requests/{request_id}/supplement")
async def supplement_form(request_id: RequestId, me: SignedIn = agency) -> Response:
    form = Form.of(once=acting.new_once())
    return await _action_page(me, "agency/supplement.html", request_id, form)


@router.post("/requests/{request_id}/supplement")
async def supplement(request_id: RequestId, me: SignedIn = agency) -> Response:
    form = await Form.read(me.request)
    page = "agency/supplement.html"
    await _visible(me, request_id)
    files = chosen_files(form)
    if not files:
        form.error(FILES, me.gettext("Choose at least one file."))
        return await _action_page(me, page, request_id, form, status=422)
    stored = await store_files(me, files, form, reuse_for=request_id)
    if stored is None:
        return await _action_page(me, page, request_id, form, status=422)
    given = {"documents": [{"id": d.id} for d in stored], "note": form.value("note")}
    if await acting.act(me, "supplement", request_id, given, form) is None:
        await discard(me, stored)
        form.errors = {
            (FILES if k.startswith("documents") else k): v for k, v in form.errors.items()
        }
        return await _action_page(me, page, request_id, form, status=422)
    return _done(request_id)


@router.get("/requests/{request_id}/withdraw")
async def withdraw_form(request_id: RequestId, me: SignedIn = agency) -> Response:
    form = Form.of(once=acting.new_once())
    return await _action_page(me, "agency/withdraw.html", request_id, form)


@router.post("/requests/{request_id}/withdraw")
async def withdraw(request_id: RequestId, me: SignedIn = agency) -> Response:
    form = await Form.read(me.request)
    await _visible(me, request_id)
    given = {"reason": form.value("reason")}
    if await acting.act(me, "withdraw", request_id, given, form) is None:
        return await _action_page(me, "agency/withdraw.html", request_id, form, status=422)
    return _done(request_id)


ANSWER_FIELDS = (
    "answer.status",
    "answer.explanation",
    "answer.answered_by.name",
    "answer.answered_by.email",
)


def _statuses(me: Visitor) -> list[tuple[str, str]]:
    return [(s.value, me.gettext(label)) for s, label in ADOPTION.items()]


@router.get("/requests/{request_id}/adoption")
async def adoption_form(request_id: RequestId, me: SignedIn = agency) -> Response:
    contact = await _contact(me)
    form = Form.of(
        once=acting.new_once(),
        **{
            "answer.answered_by.name": contact["name"],
            "answer.answered_by.email": contact["email"],
        },
    )
    page = await _request(me, request_id)
    return render(me, "agency/adoption.html", {**page, "statuses": _statuses(me)}, form=form)


@router.post("/requests/{request_id}/adoption")
async def adoption(request_id: RequestId, me: SignedIn = agency) -> Response:
    form = await Form.read(me.request)
    await _visible(me, request_id)
    given = {
        "answer": {
            "status": form.value("answer.status"),
            "explanation": form.value("answer.explanation"),
            "answered_by": {
                "name": form.value("answer.answered_by.name"),
                "email": form.value("answer.answered_by.email"),
            },
        }
    }
    if await acting.act(me, "answer", request_id, given, form) is None:
        page = await _request(me, request_id)
        context = {**page, "statuses": _statuses(me)}
        return render(me, "agency/adoption.html", context, form=form, status=422)
    return _done(request_id)
