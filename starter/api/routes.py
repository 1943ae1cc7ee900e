"""Every action of the lifecycle as a workflow update, answering with the new state as the
caller may see it; reads from PostgreSQL. Objects of other parties answer 404, exactly as
objects that do not exist."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from db import queries as q
from db import reports as db_reports
from domain.models import RequestKind, RequestSubmission, Stage
from domain.reports import Report, ReportFilter, ReportInputError, parse_period
from starter import access, actions, documents, service
from starter.api import uploads
from starter.api.auth import Principal, principal, role
from starter.api.errors import MEDIA, Problem, problems
from starter.api.uploads import MULTIPART_BODY, DocumentId, UploadsWithJSON
from starter.api.views import (
    Assignment,
    InboxItem,
    Marked,
    Opinion,
    OpinionWithNote,
    Page,
    RequestStateView,
    RequestSummary,
    RequestView,
    StaffTimelineEvent,
    Task,
    TimelineEvent,
    assignment_view,
    from_row,
    state_view,
)

router = APIRouter()
# Routes whose JSON body may come as multipart/form-data with its files.
with_files = APIRouter(route_class=UploadsWithJSON)

RequestId = Annotated[str, Path(pattern=r"^R-[0-9A-F]{10}$", examples=["R-1A2B3C4D5E"])]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat a request with the same key: the first answer comes back, "
        "and nothing changes.",
    ),
]
Agency = Depends(role("agency"))
Expert = Depends(role("expert"))
Anyone = Depends(principal)
# Marking one's own notifications read: everyone but operators, who change nothing.
Reader = Depends(role("agency", "expert", "coordinator"))
# Reports: the Union's office and its operators.
Staff = Depends(role("coordinator", "operator"))


# --- helpers -------------------------------------------------------------------------------


async def visible_request(request: Request, request_id: str, who: Principal):
    """The request's row if this party may see it; 404 otherwise, whether it exists or not."""
    async with request.app.state.pool.acquire() as conn:
        try:
            return await access.visible_request(conn, request_id, who)
        except access.NotVisible as err:
            # Raised as a Problem: inside an action it is the answer its key keeps.
            raise Problem(404, "Not found", str(err), kind="not-found") from None


def _refused(err: service.ActionError, request_id: str) -> Problem:
    text = str(err)
    if text.startswith("no "):
        return Problem(404, "Not found", text, kind="not-found")
    return Problem(409, "Refused", text, kind="refused")


async def act(
    request: Request,
    who: Principal,
    key: str | None,
    body: BaseModel | None,
    run: Callable[[], Awaitable[Any]],
    status_code: int | Callable[[Any], int] = 200,
) -> JSONResponse:
    """Runs an action once per Idempotency-Key: a repeat with the same key and the same body
    gets the first answer (refusals included) and changes nothing; a different body under a
    used key is refused.

    While the first is running in a live API process a repeat is refused as in progress. If
    that process died, the repeat takes the key over and runs the action again, so `run` must
    be safe to repeat under the key: every action here is a workflow update whose id comes
    from the key (`_update_id`; Temporal applies an id once in a run and answers a repeat
    with the first result), and a submission is one by its workflow id and the key kept in
    its memo, so the taken-over answer is the one the first would have given."""
    pool = request.app.state.pool
    holder = request.app.state.process_lock
    if key is not None:
        digest = hashlib.sha256(
            f"{request.method} {request.url.path}\n".encode()
            + (body.model_dump_json().encode() if body is not None else b"")
        ).hexdigest()
        async with pool.acquire() as conn:
            prior = await q.claim_idempotency_key(conn, who.role, who.subject, key, digest, holder)
        if prior is not None:
            if prior["request_hash"] != digest:
                raise Problem(
                    422,
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used for a different request",
                    kind="idempotency-key-reused",
                )
            if prior["status_code"] is None:
                raise Problem(
                    409,
                    "In progress",
                    "a request with this key is still running",
                    kind="in-progress",
                )
            return JSONResponse(
                prior["response"],
                status_code=prior["status_code"],
                media_type=MEDIA if prior["status_code"] >= 400 else None,
                headers={"Idempotency-Replayed": "true"},
            )
    try:
        result = await run()
        payload = jsonable_encoder(result)
        code = status_code(result) if callable(status_code) else status_code
    except service.ActionError as err:
        problem = _refused(err, request.url.path)
        payload, code = problem.body(request.url.path), problem.status
    except Problem as problem:
        payload, code = problem.body(request.url.path), problem.status
    except BaseException:
        if key is not None:
            async with pool.acquire() as conn:
                await q.release_idempotency_key(conn, who.role, who.subject, key, holder)
        raise
    if key is not None:
        async with pool.acquire() as conn:
            await q.complete_idempotency_key(
                conn, who.role, who.subject, key, holder, code, payload
            )
    return JSONResponse(payload, status_code=code, media_type=MEDIA if code >= 400 else None)


def _client(request: Request):
    return request.app.state.client


def _signed(action: actions.Action, body: BaseModel | None, who: Principal) -> Any:
    """The update's input with its actor: the signed-in person, never someone a body names."""
    try:
        return action.input(who.person, body)
    except service.InvalidInput as err:
        raise Problem(
            422,
            "Invalid input",
            str(err),
            kind="validation",
            errors=[{"field": err.field, "message": err.rule}],
        ) from err


def _update_id(request: Request, who: Principal) -> str | None:
    """With an Idempotency-Key, the workflow update carries an id made of it: if our answer
    was lost on the way (a timeout), the retry is the same update and Temporal applies it
    once."""
    key = request.headers.get("idempotency-key")
    if not key:
        return None
    # A hash of an unambiguous encoding: a subject or key containing ':' cannot make two
    # callers' ids collide.
    encoded = json.dumps([who.role, who.subject, key], ensure_ascii=False)
    return "api-" + hashlib.sha256(encoded.encode()).hexdigest()


# An action: its caller may be refused (401, 403), the request be missing or not theirs (404),
# the workflow refuse it in its state or its key still run (409), its input be invalid (422).
ACTION_ERRORS = problems(401, 403, 404, 409, 422)
READ_ERRORS = problems(401, 403, 404, 422)


# --- agencies ------------------------------------------------------------------------------


class Submitted(BaseModel):
    request_id: str
    created: bool


@with_files.post(
    "/requests",
    openapi_extra=MULTIPART_BODY,
    status_code=201,
    tags=["agency"],
    response_model=Submitted,
    responses={
        200: {"model": Submitted, "description": "The same reference and content: that request"},
        **problems(401, 403, 422),
        409: {
            **problems(409)[409],
            "description": "The same reference with different content, or the same "
            "Idempotency-Key still running",
        },
    },
)
async def submit(
    request: Request,
    body: RequestSubmission,
    who: Principal = Agency,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Submit a request (201). Documents are referenced by URI and SHA-256, never uploaded.
    The same agency reference with the same content returns that request (200, created: false);
    with different content it is refused (409), naming the request the reference opened."""

    async def run() -> Submitted:
        if body.agency.code != who.subject:
            raise Problem(
                422,
                "Invalid input",
                f"agency.code: must be your agency's code ({who.subject})",
                kind="validation",
                errors=[{"field": "agency.code", "message": f"must be {who.subject}"}],
            )
        s = await service.submit(
            _client(request),
            request.app.state.pool,
            body,
            request.app.state.policy,
            task_queue=request.app.state.task_queue,
            submit_id=_update_id(request, who),
        )
        return Submitted(request_id=s.request_id, created=s.created)

    return await act(request, who, key, body, run, status_code=lambda s: 201 if s.created else 200)


def _route(action: actions.Action) -> None:
    """`POST /requests/{id}/<path>` for one action of the catalogue, run once per
    Idempotency-Key; its caller must have the action's role."""

    async def run(request: Request, request_id: str, body: Any, who: Principal, key: str | None):
        inp = _signed(action, body, who)

        async def taken() -> Any:
            await visible_request(request, request_id, who)
            result = await actions.take(
                _client(request),
                request.app.state.pool,
                action,
                who.person,
                request_id,
                inp,
                update_id=_update_id(request, who),
            )
            if action.on_assignment:
                return assignment_view(result)
            return state_view(result, who)

        return await act(request, who, key, body, taken)

    guard = Depends(role(action.role))
    if action.given is None:

        async def endpoint(
            request: Request,
            request_id: RequestId,
            who: Principal = guard,
            key: IdempotencyKey = None,
        ) -> JSONResponse:
            return await run(request, request_id, None, who, key)

    else:

        async def endpoint(
            request: Request,
            request_id: RequestId,
            body: BaseModel,
            who: Principal = guard,
            key: IdempotencyKey = None,
        ) -> JSONResponse:
            return await run(request, request_id, body, who, key)

        # Annotations are strings here (postponed evaluation); this one names a local.
        endpoint.__annotations__["body"] = action.given

    endpoint.__doc__ = action.summary
    router.add_api_route(
        f"/requests/{{request_id}}/{action.path}",
        endpoint,
        methods=["POST"],
        # A supplement may bring its files along (multipart/form-data).
        route_class_override=UploadsWithJSON if action.takes_documents else None,
        openapi_extra=MULTIPART_BODY if action.takes_documents else None,
        tags=[action.role],
        name=action.name.replace("-", "_"),
        summary=action.summary,
        response_model=Assignment if action.on_assignment else RequestStateView,
        response_description="The assignment as it now stands"
        if action.on_assignment
        else "The request's new state as you may see it: the staff's, the agency's or an "
        "expert's view",
        responses=ACTION_ERRORS,
    )


for _action in actions.ACTIONS.values():
    _route(_action)


# --- reads ---------------------------------------------------------------------------------


class Filters(BaseModel):
    # A misspelt filter is refused (422 naming it) rather than ignored, which would answer
    # with everything as if it had matched.
    model_config = ConfigDict(extra="forbid")

    stage: Stage | None = None
    kind: RequestKind | None = None
    overdue: bool | None = None
    cursor: Annotated[
        str | None, Field(max_length=200, description="next_cursor of the page before")
    ] = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


@router.get("/requests", response_model=Page, tags=["read"], responses=problems(401, 403, 422))
async def list_requests(
    request: Request,
    filters: Annotated[Filters, Query()],
    who: Principal = Anyone,
) -> Page:
    """Requests you may see, newest first; pass `next_cursor` back as `cursor` for more."""
    after = decode_cursor(filters.cursor) if filters.cursor else None
    async with request.app.state.pool.acquire() as conn:
        rows = await q.requests_page(
            conn,
            agency=who.subject if who.role == "agency" else None,
            expert=who.subject if who.role == "expert" else None,
            stage=filters.stage,
            kind=filters.kind,
            overdue=filters.overdue,
            after=after,
            limit=filters.limit + 1,
        )
    items = [RequestSummary.of(r) for r in rows[: filters.limit]]
    last = rows[filters.limit - 1] if len(rows) > filters.limit else None
    return Page(items=items, next_cursor=encode_cursor(last) if last else None)


def encode_cursor(row) -> str:
    """The position itself (time and id), not a request to look up: a cursor says nothing
    about requests the caller may not see."""
    raw = f"{row['submitted_at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, rid = raw.split("|", 1)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or len(rid) > 40:
            raise ValueError
        return when, rid
    except (ValueError, UnicodeDecodeError) as err:
        raise Problem(
            422,
            "Invalid input",
            "cursor: not a next_cursor this API gave",
            kind="validation",
            errors=[{"field": "query.cursor", "message": "not a next_cursor"}],
        ) from err


@router.get(
    "/requests/{request_id}", tags=["read"], response_model=RequestView, responses=READ_ERRORS
)
async def get_request(
    request: Request, request_id: RequestId, who: Principal = Anyone
) -> RequestView:
    """The request as you may see it."""
    return await access.request_view(request.app.state.pool, request_id, who)


@router.get(
    "/requests/{request_id}/timeline",
    tags=["read"],
    response_model=list[StaffTimelineEvent] | list[TimelineEvent],
    responses=READ_ERRORS,
)
async def timeline(request: Request, request_id: RequestId, who: Principal = Anyone) -> list[Any]:
    """The audit log. Agencies and experts see the stage changes; staff see every event."""
    return await access.timeline(request.app.state.pool, request_id, who)


@router.get(
    "/requests/{request_id}/opinions",
    tags=["read"],
    response_model=list[OpinionWithNote | Opinion],
    responses=READ_ERRORS,
)
async def opinions(
    request: Request, request_id: RequestId, who: Principal = Anyone
) -> list[OpinionWithNote | Opinion]:
    """Opinions: staff see all; an expert as the policy's `opinions_visible_to` allows (by
    default the chair sees the council's, to draft the conclusion, a member their own);
    agencies see the signed conclusion instead (403)."""
    return await access.opinions(request.app.state.pool, request_id, who, request.app.state.policy)


@router.get("/me/tasks", tags=["expert"], response_model=list[Task], responses=problems(401, 403))
async def my_tasks(request: Request, who: Principal = Expert) -> list[Task]:
    """Open invitations, reviews due and conclusions to draft."""
    async with request.app.state.pool.acquire() as conn:
        rows = await q.expert_tasks(conn, who.subject)
    return [from_row(Task, r) for r in rows]


def _recipient(who: Principal) -> tuple[str, str | None]:
    if who.role in ("coordinator", "operator"):
        return who.role, None
    return who.role, who.subject


class InboxQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unread: bool = False
    limit: Annotated[int, Field(ge=1, le=200)] = 50


@router.get(
    "/me/inbox", tags=["read"], response_model=list[InboxItem], responses=problems(401, 403, 422)
)
async def inbox(
    request: Request,
    query: Annotated[InboxQuery, Query()],
    who: Principal = Anyone,
) -> list[InboxItem]:
    """Your notifications, newest first."""
    kind, code = _recipient(who)
    async with request.app.state.pool.acquire() as conn:
        rows = await q.inbox(
            conn, kind, code, who.person.ref, unread_only=query.unread, limit=query.limit
        )
    return [InboxItem.of(r) for r in rows]


@router.post(
    "/me/inbox/{notification_id}/read",
    tags=["read"],
    response_model=Marked,
    responses=problems(401, 403, 404, 422),
)
async def mark_read(
    request: Request,
    notification_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    who: Principal = Reader,
) -> Marked:
    """Mark one of your notifications read (marking twice changes nothing)."""
    kind, code = _recipient(who)
    async with request.app.state.pool.acquire() as conn:
        marked = await q.mark_read(conn, kind, code, who.person.ref, [notification_id])
    if not marked:
        raise Problem(404, "Not found", f"no notification {notification_id}", kind="not-found")
    return Marked(id=notification_id, read=True)


class ReportQuery(BaseModel):
    """A report's period and filters (any of the values within one filter, all the filters
    together)."""

    model_config = ConfigDict(extra="forbid")

    period: Annotated[
        str,
        Field(
            max_length=40,
            description='A year ("2026"), a quarter ("2026-Q3"), a month ("2026-07") or two '
            'dates, both included ("2026-01-01..2026-06-30"), in Vietnam\'s dates',
            examples=["2026"],
        ),
    ]
    agency: list[Annotated[str, Field(max_length=40)]] = Field(default=[], max_length=50)
    kind: list[RequestKind] = Field(default=[], max_length=3)
    field: list[Annotated[str, Field(max_length=80)]] = Field(default=[], max_length=50)


# How domain.reports names what it refuses, and the query parameter it came in.
REPORT_PARAMETERS = {"period": "period", "agencies": "agency", "fields": "field"}


@router.get("/reports", tags=["reports"], response_model=Report, responses=problems(401, 403, 422))
async def get_report(
    request: Request, query: Annotated[ReportQuery, Query()], who: Principal = Staff
) -> Report:
    """How well the Union coordinates over a period: volumes, turnaround and time in stage
    in working days, on time by party, experts, adoption — each measure as the README's
    "Reports: what each measure means" defines it. Coordinators and operators only."""
    try:
        period = parse_period(query.period)
        chosen = ReportFilter(
            agencies=frozenset(query.agency),
            kinds=frozenset(query.kind),
            fields=frozenset(query.field),
        )
        state = request.app.state
        return await db_reports.report(state.pool, period, chosen, policy=state.policy)
    except ReportInputError as err:
        name = REPORT_PARAMETERS.get(err.field, err.field)
        rule = str(err).split(": ", 1)[1]
        raise Problem(
            422,
            "Invalid input",
            f"{name}: {rule}",
            kind="validation",
            errors=[{"field": f"query.{name}", "message": rule}],
        ) from err


@router.get("/health", include_in_schema=False)
async def health() -> dict:
    return {"status": "ok"}


@router.get(
    "/requests/{request_id}/documents/{document_id}",
    tags=["read"],
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file", "content": documents.BINARY},
        206: {"description": "The range asked for", "content": documents.BINARY},
        416: {"description": "A range outside the file"},
        **READ_ERRORS,
    },
)
async def download_document(
    request: Request,
    request_id: RequestId,
    document_id: DocumentId,
    who: Principal = Anyone,
    range_: Annotated[str | None, Header(alias="Range", max_length=100)] = None,
) -> StreamingResponse:
    """A document of the request, streamed, for the agency, an expert while seated,
    coordinators and operators; anyone else gets the same 404 as a missing document. Ranges
    (`Range: bytes=a-b`) answer 206. Every download is in the audit log."""
    async with request.app.state.pool.acquire() as conn:
        doc = await access.document(conn, request_id, document_id, who)
        span = documents.byte_range(range_, doc["size"])
        if span == "unsatisfiable":
            return Response(status_code=416, headers={"Content-Range": f"bytes */{doc['size']}"})
        await documents.log_download(conn, request_id, doc, who.person.ref, span)
    return documents.streamed(request.app.state.store, doc, span)


router.include_router(with_files)
router.include_router(uploads.router)
