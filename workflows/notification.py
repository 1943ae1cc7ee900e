"""One outbox row's delivery (workflow id `notification-<row id>`): plan its channels, send
them side by side with retries and backoff, and report a channel that gives up.

It runs apart from the request, so a channel that is down delays only its own messages: the
request's lifecycle never waits on, nor fails because of, a notification.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotificationActivities
    from domain.notifications import (
        Channel,
        DeliverInput,
        DeliveryFailedInput,
        NotificationInput,
        NotificationResult,
        PlanInput,
    )

BOOKKEEPING = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)
SENDERS = {
    Channel.email: NotificationActivities.send_email,
    Channel.webhook: NotificationActivities.send_webhook,
}


@workflow.defn
class NotificationWorkflow:
    @workflow.run
    async def run(self, inp: NotificationInput) -> NotificationResult:
        plan = await workflow.execute_activity_method(
            NotificationActivities.plan_delivery,
            PlanInput(outbox_id=inp.outbox_id),
            summary="plan delivery",
            **BOOKKEEPING,
        )
        outcomes = await asyncio.gather(*(self._send(inp, ch) for ch in plan.channels))
        return NotificationResult(
            outbox_id=inp.outbox_id,
            outcomes={ch.value: o for ch, o in zip(plan.channels, outcomes, strict=True)},
        )

    async def _send(self, inp: NotificationInput, channel: Channel) -> str:
        r = inp.retry
        try:
            await workflow.execute_activity_method(
                SENDERS[channel],
                DeliverInput(outbox_id=inp.outbox_id, channel=channel),
                summary=f"send {channel.value}",
                # A webhook answers within its own timeout; SMTP may be slow to greet.
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=r.initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=r.maximum_seconds),
                    maximum_attempts=r.attempts,
                ),
            )
            return "delivered"
        except ActivityError as e:
            # The last attempt's error (retries exhausted, or one not worth retrying).
            error = str(e.cause or e)
            await workflow.execute_activity_method(
                NotificationActivities.delivery_failed,
                DeliveryFailedInput(outbox_id=inp.outbox_id, channel=channel, error=error),
                summary=f"{channel.value} failed",
                **BOOKKEEPING,
            )
            return "failed"
