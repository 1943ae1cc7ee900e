"""Every transition of a request is persisted here: the state row, one audit event and the
outbox rows for the people to notify (with their channels: the inbox delivered, e-mail and
webhook to send) and the request's rows in the report tables, in one transaction keyed by
`<workflow id>:<step>`.

A retried attempt (the worker died after COMMIT, the result was lost on the way back) finds its
key already in the audit log and writes nothing: the transition happens exactly once.
"""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import conclusion_document, metrics
from activities.notify import count_settled, dispatch, plan_channels, sends_of
from db import queries as q
from db import reports
from domain.ids import notification_task_queue
from domain.messages import TransitionInput, TransitionResult
from domain.models import Notice
from domain.notifications import LANGUAGES, Delivery
from domain.policy import Policy, UnionIdentity
from infra.documents import DocumentStore

log = structlog.get_logger("persistence")


class PersistenceActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        coordinator_email: str,
        *,
        store: DocumentStore,
        policy: Policy,
        coordinator_language: str = "vi",
        delivery: Delivery | None = None,
        union: UnionIdentity | None = None,
    ) -> None:
        """`store`: where an approved conclusion's PDF is kept. `delivery`: how rows are
        delivered once written; None writes the rows only (no channels, no delivery).
        `union`: whose letterhead an approved conclusion is issued in (None: not issued as a
        document). `policy`: the deadlines and calendar the report tables count with."""
        self._policy = policy
        self._pool = pool
        self._union = union
        self._store = store
        self._coordinator_email = coordinator_email
        self._coordinator_language = coordinator_language
        self._delivery = delivery

    @activity.defn(name="record_transition")
    async def record_transition(self, t: TransitionInput) -> TransitionResult:
        result, left, settled = await self._record(t)
        if result.applied:
            # workflow_id and request_id come bound by the worker's interceptor.
            log.info(
                "transition recorded", action=t.action, stage=t.stage.value if t.stage else None
            )
            # Counted after COMMIT, once per transition (a retry that finds it written
            # counts nothing).
            metrics.TRANSITIONS.labels(t.action, t.stage.value if t.stage else "").inc()
            if left is not None:
                metrics.TIME_IN_STAGE.labels(left[0]).observe(left[1])
            count_settled(settled)
        if self._delivery is not None and t.notify:
            # After COMMIT, so a delivery never reads a row that may yet roll back. A retry
            # whose first attempt committed (applied=False) finds the same rows still to send:
            # the activity succeeds only once its rows are on their way, so none is lost.
            keys = [f"{t.workflow_id}:{t.step}:{i}" for i in range(len(t.notify))]
            async with self._pool.acquire() as conn:
                pending = await q.pending_sends(conn, keys=keys)
            await dispatch(
                activity.client(),
                t.request_id,
                sends_of(pending),
                task_queue=notification_task_queue(activity.info().task_queue),
                retry=self._delivery.retry,
            )
        return result

    async def record_past(self, t: TransitionInput) -> TransitionResult:
        """Records a transition outside any activity, in the same one transaction: for what
        happened before the engine ran it (`advisory demo --history`). Nothing is counted in
        the metrics, which measure this process's work, and nothing is delivered; built with
        `delivery=None` and `union=None`, no channel is planned and no conclusion issued."""
        result, _, _ = await self._record(t)
        return result

    async def _record(
        self, t: TransitionInput
    ) -> tuple[TransitionResult, tuple[str, float] | None, list[tuple[str, str]]]:
        """The result, the stage this transition leaves with the time spent in it, and the
        channels its rows settled as they were written (to count once committed)."""
        key = f"{t.workflow_id}:{t.step}"
        left: tuple[str, float] | None = None
        settled: list[tuple[str, str]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            if t.intake is not None:
                s = t.intake.submission
                await q.insert_request(
                    conn,
                    {
                        "id": t.request_id,
                        "workflow_id": t.workflow_id,
                        "agency_code": s.agency.code,
                        "agency_reference": s.agency_reference,
                        "kind": s.kind.value,
                        "title": s.title,
                        "summary": s.summary,
                        "expertise_fields": s.expertise_fields,
                        "documents": [d.model_dump(mode="json") for d in s.documents],
                        "requested_by": s.requested_by.model_dump(mode="json"),
                        "submitted_at": t.intake.submitted_at,
                        "council_size": t.intake.council_size,
                        "alternates": t.intake.alternates,
                        "review_window_days": t.intake.review_window_days,
                    },
                )
            # Issued before the audit row, whose details name it; issuing is once per request,
            # so a retry finds the same document.
            issued: dict[str, str] = {}
            if t.action == "conclusion_approved" and t.conclusion is not None and self._union:
                doc = await conclusion_document.issue(
                    conn,
                    self._store,
                    self._union,
                    t.request_id,
                    t.conclusion,
                    t.conclusion.approver_title or "",
                    t.at,
                )
                issued = {
                    "document": doc.document_id,
                    "number": doc.number,
                    "sha256": doc.sha256,
                    "download": f"/requests/{t.request_id}/documents/{doc.document_id}",
                }
            audit_id = await q.insert_audit(
                conn,
                key=key,
                request_id=t.request_id,
                at=t.at,
                actor=t.actor,
                action=t.action,
                stage=t.stage.value if t.stage else None,
                details={**t.details, **issued},
            )
            if audit_id is None:
                activity.logger.info("transition already recorded", extra={"key": key})
                existing = await q.audit_id_for_key(conn, key)
                return TransitionResult(applied=False, audit_id=existing), None, []
            if t.intake is not None:
                await q.attach_documents(
                    conn, t.request_id, t.intake.submission.documents, t.actor, t.at
                )
            if t.stage is not None:
                entered = await q.stage_entered(conn, t.request_id, before_audit_id=audit_id)
                if entered is not None and entered["stage"] != t.stage.value:
                    left = (entered["stage"], (t.at - entered["at"]).total_seconds())
                await q.update_request_stage(
                    conn, t.request_id, t.stage.value, t.next_deadline, t.at, t.stage.is_final
                )
            if t.assignment is not None:
                await q.upsert_assignment(
                    conn, t.request_id, t.assignment.model_dump(mode="python"), t.at
                )
            if t.opinion is not None:
                await q.insert_opinion(
                    conn,
                    t.request_id,
                    t.opinion.expert_code,
                    t.opinion.opinion.model_dump(mode="json"),
                    t.at,
                )
            if t.conclusion is not None:
                await q.upsert_conclusion(conn, t.request_id, t.conclusion.model_dump(), t.at)
            if t.adoption is not None:
                await q.insert_adoption(
                    conn, t.request_id, t.adoption.model_dump(mode="json"), t.at
                )
            if t.overdue is not None:
                if t.assignment is not None:
                    await q.set_assignment_overdue(
                        conn, t.request_id, t.assignment.expert_code, t.overdue
                    )
                else:
                    await q.set_request_overdue(conn, t.request_id, t.overdue)
            if t.council_confirmed:
                await q.confirm_council(conn, t.request_id, t.actor, t.at)
            if t.cancel_topics:
                await q.cancel_pending_topics(conn, t.request_id, t.cancel_topics)
            if t.documents_added:
                await q.add_documents(
                    conn, t.request_id, [d.model_dump(mode="json") for d in t.documents_added]
                )
                await q.attach_documents(
                    conn, t.request_id, t.documents_added, t.actor, t.at, next_round=True
                )
            # The reports' reading of the request, rewritten with its new event.
            await reports.refresh(conn, t.request_id, self._policy)
            title = await q.request_title(conn, t.request_id)
            outbox_ids: list[int] = []
            for i, notice in enumerate(t.notify):
                if issued and notice.event == "conclusion_delivered":
                    # The signed document goes with the conclusion: attached to the e-mail,
                    # linked from the webhook.
                    notice = notice.model_copy(update={"data": {**notice.data, **issued}})
                code, address, language = await self._address(conn, t.request_id, notice)
                row_id = await q.insert_outbox(
                    conn,
                    key=f"{key}:{i}",
                    request_id=t.request_id,
                    recipient_kind=notice.recipient.kind,
                    recipient_code=code,
                    address=address,
                    language=language,
                    event=notice.event,
                    payload={"request_id": t.request_id, "title": title, **notice.data},
                    topic=notice.topic,
                )
                if row_id is not None:
                    outbox_ids.append(row_id)
                    if self._delivery is not None:
                        settled += await plan_channels(conn, row_id, email=self._delivery.email)
        result = TransitionResult(applied=True, audit_id=audit_id, outbox_ids=outbox_ids)
        return result, left, settled

    async def _address(
        self, conn: asyncpg.Connection, request_id: str, notice: Notice
    ) -> tuple[str | None, str, str]:
        """The recipient's code (an agency's is its agency code), address and language."""
        r = notice.recipient
        if r.kind in ("coordinator", "operator"):
            return None, self._coordinator_email, self._coordinator_language
        if r.kind == "agency":
            row = await q.agency_contact(conn, request_id)
            if row is not None and row["email"]:
                return row["agency_code"], row["email"], row["language"]
        else:
            row = await q.expert_contact(conn, r.code or "")
            if row is not None:
                spoken = [lang for lang in row["languages"] if lang in LANGUAGES]
                return r.code, row["email"], spoken[0] if spoken else "vi"
        # A missing recipient is a bug in the caller, not something a retry can mend.
        raise ApplicationError(
            f"no address for {r.kind} {r.code!r} on request {request_id}",
            type="UnknownRecipient",
            non_retryable=True,
        )
