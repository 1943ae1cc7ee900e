"""What people do, as functions over a Temporal client: the CLI, the demo and the tests all
go through here, so an action means the same thing wherever it comes from."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from db import queries as q
from domain import search_attributes as sa
from domain.ids import TASK_QUEUE, assignment_workflow_id, review_workflow_id
from domain.messages import RequestState, ReviewRequestInput
from domain.models import Actor, Agency, AssignmentView, Document, RequestSubmission, Stage
from domain.policy import KindPolicy, Policy
from infra.links import case_url
from infra.settings import get_settings
from workflows.assignment import ExpertAssignmentWorkflow
from workflows.review import ReviewRequestWorkflow


class ActionError(Exception):
    """An action a person asked for was refused; the message says why, in one line."""


class InvalidInput(ActionError):
    """What the person gave breaks a rule of one field: refused before anything is sent."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field, self.rule = field, rule


@dataclass
class Submitted:
    request_id: str
    created: bool  # False: the same agency reference was submitted before


def _summary(s: RequestSubmission, request_id: str) -> str:
    """The request's line in the Temporal UI, readable without the codec: codes only. Its
    title is the agency's text, as the rest of its input: a signed-in operator reads it through
    the codec server."""
    return f"{s.kind.value} · {s.agency.code} · {request_id}"


def _details(request_id: str) -> str:
    """Markdown under the summary in the UI: the way back to the request's case page."""
    return f"[Case {request_id} in the portal]({case_url(get_settings(), request_id)})"


async def submit(
    client: Client,
    pool: asyncpg.Pool,
    submission: RequestSubmission,
    policy: Policy,
    task_queue: str = TASK_QUEUE,
    history_limit: int | None = None,
    assignment_history_limit: int | None = None,
    submit_id: str | None = None,
) -> Submitted:
    """Opens a request for a registered, active agency; its name is the registry's.
    submit_id: the same id twice is one submission, answered as created both times (an API
    call retried under its Idempotency-Key after its first answer was lost)."""
    submission = await _as_registered(pool, submission)
    request_id = submission.request_id()
    attached = await with_uploads(
        pool, submission.documents, f"agency:{submission.agency.code}", request_id
    )
    submission = submission.model_copy(update={"documents": attached})
    memo = {CONTENT_MEMO: content_digest(submission)}
    if submit_id is not None:
        memo[SUBMIT_MEMO] = submit_id
    try:
        await client.start_workflow(
            ReviewRequestWorkflow.run,
            ReviewRequestInput(
                request_id=request_id,
                submission=submission,
                policy=policy.for_kind(submission.kind),
                calendar=policy.calendar,
                history_limit=history_limit,
                assignment_history_limit=assignment_history_limit,
            ),
            id=review_workflow_id(request_id),
            task_queue=task_queue,
            # A request id is never reused, even after it closed: the agency's reference
            # names one request for good.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.STAGE, Stage.intake.value),
                    SearchAttributePair(sa.KIND, submission.kind.value),
                    SearchAttributePair(sa.AGENCY, submission.agency.code),
                ]
            ),
            static_summary=_summary(submission, request_id),
            static_details=_details(request_id),
            memo=memo,
        )
    except WorkflowAlreadyStartedError:
        started = await _memo(client, request_id)
        _same_content(started, submission)
        if submit_id is None or started.get(SUBMIT_MEMO) != submit_id:
            return Submitted(request_id=request_id, created=False)
    await _intake_recorded(request_handle(client, request_id))
    return Submitted(request_id=request_id, created=True)


async def _as_registered(pool: asyncpg.Pool, submission: RequestSubmission) -> RequestSubmission:
    code = submission.agency.code
    async with pool.acquire() as conn:
        row = await q.get_agency(conn, code)
    if row is None:
        raise ActionError(
            f"agency.code: {code} is not in the agency registry; "
            "an operator registers agencies (advisory agencies import)"
        )
    if not row["active"]:
        raise ActionError(
            f"agency.code: {code} is inactive in the agency registry: it may not submit"
        )
    return submission.model_copy(update={"agency": Agency(code=code, name=row["name"])})


async def signed_in(pool: asyncpg.Pool, role: str, code: str) -> Actor:
    """Who acts, as the registries name them: a coordinator with their title, an agency by its
    official name, an expert by name; an operator by the name they were given. Someone not
    registered, or no longer active, is refused."""
    table = {
        "coordinator": "coordinators",
        "agency": "agencies",
        "expert": "experts",
        "operator": "operators",
    }[role]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE code = $1", code)
    if row is None and role == "operator":  # an API token's operator, by the name it gives
        return Actor(role="operator", code=code, name=code)
    if row is None:
        raise ActionError(f"no {role} {code} in the {role} registry")
    if not row["active"]:
        raise ActionError(f"{role} {code} is inactive in the {role} registry")
    return Actor(role=role, code=code, name=row["name"], title=row.get("title") or "")


async def with_uploads(
    pool: asyncpg.Pool, documents: list[Document], owner: str, request_id: str
) -> list[Document]:
    """The documents of a submission or supplement with every uploaded one filled in from
    its upload (POST /documents): it must be `owner`'s, and not part of another request."""
    out = []
    async with pool.acquire() as conn:
        for i, d in enumerate(documents):
            if d.id is None:
                out.append(d)
                continue
            row = await conn.fetchrow("SELECT * FROM documents WHERE id = $1", d.id)
            if (
                row is None
                or row["uploaded_by"] != owner
                or row["request_id"] not in (None, request_id)
            ):
                raise ActionError(f"documents.{i}.id: no upload {d.id} of yours to attach")
            out.append(
                Document(
                    id=d.id,
                    name=row["name"],
                    sha256=row["sha256"],
                    size=row["size"],
                    content_type=row["content_type"],
                )
            )
    return out


def content_digest(submission: RequestSubmission) -> str:
    """What a submission says, apart from its reference (the key: equal up to case and
    spaces), as a SHA-256: kept in the request workflow's memo, personal data never in clear."""
    content = submission.model_dump_json(exclude={"agency_reference"})
    return hashlib.sha256(content.encode()).hexdigest()


async def _memo(client: Client, request_id: str) -> dict[str, Any]:
    """The memo the request's workflow was started with."""
    # The raw description: the SDK's decoding of search attributes fails on the test server
    # once a request has ended (an unset datetime kept as null), and only the memo is needed.
    described = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=review_workflow_id(request_id)),
        )
    )
    fields = described.workflow_execution_info.memo.fields
    names = list(fields)
    values = await client.data_converter.decode([fields[n] for n in names])
    return dict(zip(names, values, strict=True))


def _same_content(started: dict[str, Any], submission: RequestSubmission) -> None:
    """A resubmission under the same reference is the same request only if it says the same;
    otherwise it is refused, naming the request that reference already opened."""
    stored = started.get(CONTENT_MEMO)
    if stored is None:  # started before the digest was kept: nothing to compare
        return
    if stored != content_digest(submission):
        raise ActionError(
            f"agency_reference: {submission.agency_reference} already names request "
            f"{submission.request_id()}, submitted with different content; supplement that "
            "request or use a new reference"
        )


CONTENT_MEMO = "content_sha256"
# The submission's own id (an API call's, from its Idempotency-Key): a retry of the call that
# started the request is answered as that call was, created.
SUBMIT_MEMO = "submit_id"


# How long a submission waits for its intake to be recorded before answering anyway.
INTAKE_WAIT = 10.0


async def _intake_recorded(handle: WorkflowHandle) -> None:
    """Returns once the request has left intake (its submission is in PostgreSQL and it waits
    for screening), so the caller's next read or action finds it. A request whose worker is
    away still stands, durably started: after INTAKE_WAIT the answer goes out anyway."""
    try:
        async with asyncio.timeout(INTAKE_WAIT):
            # Polls another process's workflow: there is no event here to wait on.
            while (await handle.query(ReviewRequestWorkflow.state)).stage == Stage.intake:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except (TimeoutError, RPCError, WorkflowQueryFailedError):
        pass


def request_handle(client: Client, request_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(ReviewRequestWorkflow.run, review_workflow_id(request_id))


def assignment_handle(client: Client, request_id: str, expert_code: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(
        ExpertAssignmentWorkflow.run, assignment_workflow_id(request_id, expert_code)
    )


def _explain(err: BaseException, what: str) -> ActionError:
    if isinstance(err, WorkflowUpdateFailedError):
        cause = err.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.__cause__
        message = cause.message if cause is not None else str(err.cause or err)
        return ActionError(message)
    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
        return ActionError(f"no {what}")
    if isinstance(err, RPCError) and err.status == RPCStatusCode.FAILED_PRECONDITION:
        return ActionError(f"{what} is closed: nothing more can be done on it")
    # Anything else (the server unavailable, a deadline exceeded) is not a refusal: it is
    # raised as it is, so a caller retries instead of taking it for an answer.
    raise err


async def _closed_or_missing(handle: WorkflowHandle, what: str) -> ActionError:
    """An update to a workflow that has ended answers NOT_FOUND, as does one that never
    existed; tell the person which it is."""
    try:
        described = await handle.describe()
    except RPCError:
        return ActionError(f"no {what}")
    except Exception:  # a server that cannot describe it: say what is certain
        return ActionError(f"{what} is not running: nothing more can be done on it")
    status = described.status.name.lower() if described.status else "closed"
    return ActionError(f"{what} has ended ({status}): nothing more can be done on it")


async def _update(
    handle: WorkflowHandle, what: str, update: Any, arg: Any, update_id: str | None = None
) -> Any:
    try:
        return await handle.execute_update(update, arg, id=update_id)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise await _closed_or_missing(handle, what) from err
        raise _explain(err, what) from err
    except WorkflowUpdateFailedError as err:
        raise _explain(err, what) from err


async def request_update(
    client: Client, request_id: str, update: Any, arg: Any, update_id: str | None = None
) -> RequestState:
    """update_id: the same id twice is one update (Temporal deduplicates within a run)."""
    handle = request_handle(client, request_id)
    return await _update(handle, f"request {request_id}", update, arg, update_id)


async def assignment_update(
    client: Client,
    request_id: str,
    expert_code: str,
    update: Any,
    arg: Any,
    update_id: str | None = None,
) -> AssignmentView:
    handle = assignment_handle(client, request_id, expert_code)
    return await _update(
        handle, f"assignment of {expert_code} on request {request_id}", update, arg, update_id
    )


async def request_state(client: Client, request_id: str) -> RequestState:
    try:
        return await request_handle(client, request_id).query(ReviewRequestWorkflow.state)
    except RPCError as err:
        raise _explain(err, f"request {request_id}") from err


async def request_policy(client: Client, request_id: str) -> KindPolicy:
    """The policy the request runs under: its kind's, as it was when the request was opened
    (a running request keeps it, whatever the policy file says since). Read from the input of
    the workflow's current run, which every continued run carries on."""
    handle = request_handle(client, request_id)
    try:
        async for event in handle.fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [inp] = await client.data_converter.decode(payloads, [ReviewRequestInput])
            return inp.policy
    except RPCError as err:
        raise _explain(err, f"request {request_id}") from err
    raise ActionError(f"no request {request_id}")
