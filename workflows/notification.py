"""The notifications of one request (workflow id `notifications-<request id>`): every channel of
every row written about the request is sent here, side by side, each retried on its own
backoff, and a channel that gives up is reported to the operator.

The transaction that writes rows writes their channels too; once committed, the writer hands
the channels still to send to this workflow by signal-with-start (`deliver`): a run going is
woken, and when none is, one starts. A send already queued or under way here is not started
again, and one already settled is sent by nobody (the activity finds it settled), so a signal
repeated delivers nothing twice. A run ends after an hour with nothing to do, and the next
signal starts another; a long history continues as new, once nothing is in flight, carrying
what is queued (or just ends, when nothing is).

It runs apart from the request, on the notifications queue: a channel that is down delays only
its own messages, and the request's lifecycle never waits on, nor fails because of, a
notification.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import DELIVER_SIGNAL, NotificationActivities
    from domain.notifications import (
        Channel,
        DeliverInput,
        DeliveryFailedInput,
        DeliveryRetry,
        NotificationsInput,
        Sends,
    )
    from workflows.common import history_is_long

BOOKKEEPING = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)
SENDERS = {
    Channel.email: NotificationActivities.send_email,
    Channel.webhook: NotificationActivities.send_webhook,
}


@workflow.defn
class RequestNotificationsWorkflow:
    @workflow.init
    def __init__(self, inp: NotificationsInput) -> None:
        self._queued: list[DeliverInput] = list(inp.carry)
        self._sending: list[DeliverInput] = []  # started, not yet settled or reported

    @workflow.run
    async def run(self, inp: NotificationsInput) -> None:
        while True:
            if history_is_long(inp.history_limit):
                # Nothing in flight crosses into the next run (an activity of this one would
                # race the next run's send of the same channel); what is queued does. With
                # nothing queued the run just ends: the next signal starts another.
                await workflow.wait_condition(lambda: not self._sending)
                if self._queued:
                    workflow.continue_as_new(inp.model_copy(update={"carry": self._queued}))
                return
            for send in self._queued:
                self._sending.append(send)
                asyncio.create_task(self._send(send, inp.retry))
            self._queued = []
            if self._sending:
                await workflow.wait_condition(lambda: bool(self._queued) or not self._sending)
                continue
            try:
                await workflow.wait_condition(lambda: bool(self._queued), timeout=inp.idle_seconds)
            except TimeoutError:
                if not self._queued:  # a signal that came with the timer is still served
                    return

    @workflow.signal(name=DELIVER_SIGNAL)
    def deliver(self, inp: Sends) -> None:
        for send in inp.sends:
            if send not in self._queued and send not in self._sending:
                self._queued.append(send)

    async def _send(self, send: DeliverInput, retry: DeliveryRetry) -> None:
        try:
            await workflow.execute_activity_method(
                SENDERS[send.channel],
                send,
                summary=f"send {send.channel.value} {send.outbox_id}",
                # A webhook answers within its own timeout; SMTP may be slow to greet.
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=retry.initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=retry.maximum_seconds),
                    maximum_attempts=retry.attempts,
                ),
            )
        except ActivityError as e:
            # The last attempt's error (retries exhausted, or one not worth retrying).
            report = await workflow.execute_activity_method(
                NotificationActivities.delivery_failed,
                DeliveryFailedInput(
                    outbox_id=send.outbox_id, channel=send.channel, error=str(e.cause or e)
                ),
                summary=f"{send.channel.value} {send.outbox_id} failed",
                **BOOKKEEPING,
            )
            # The operator's report is about this request: it is sent from here too.
            self.deliver(report)
        finally:
            self._sending.remove(send)
