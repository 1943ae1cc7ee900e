"""What people do with notifications, shared by the CLI (and the API when it exists): register
and rotate an agency's webhook endpoint, read an inbox, deliver failed rows again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import groupby
from urllib.parse import urlsplit

import asyncpg
from temporalio.client import Client

from activities.notify import (
    AddressRefused,
    HostUnresolved,
    count_settled,
    dispatch,
    plan_channels,
    resolve_host,
    sends_of,
    vetted_addresses,
)
from db import queries as q
from domain.ids import TASK_QUEUE, notification_task_queue
from domain.notifications import new_secret, url_refusal
from infra.settings import Settings

RECIPIENT_KINDS = ("agency", "expert", "coordinator", "operator")
MAX_OVERLAP_HOURS = 24 * 30


class NotificationError(ValueError):
    """Input that cannot be used; the message names the field and the rule."""


async def check_endpoint(url: str, settings: Settings) -> None:
    """Refuses an endpoint the worker would refuse to call: not https, or resolving to a
    loopback, private or otherwise non-public address (unless configured for development)."""
    allow = settings.webhook_allow_private
    refusal = url_refusal(url, allow_private=allow)
    if refusal is not None:
        raise NotificationError(refusal)
    if not allow:
        try:
            await vetted_addresses(resolve_host, urlsplit(url).hostname, 443, allow_private=False)
        except (HostUnresolved, AddressRefused) as e:
            raise NotificationError(str(e)) from e


async def register_webhook(pool: asyncpg.Pool, agency: str, url: str, settings: Settings) -> str:
    """Sets the agency's endpoint (enabled) and returns its signing secret: a new one for a
    new endpoint; an endpoint that moves keeps its secret (`rotate` changes it, with an
    overlap), so registering the same endpoint twice changes nothing."""
    if not agency.strip():
        raise NotificationError("agency: must not be empty")
    await check_endpoint(url, settings)
    async with pool.acquire() as conn:
        return await q.set_webhook_endpoint(conn, agency, url, new_secret())


async def rotate_webhook(
    pool: asyncpg.Pool,
    agency: str,
    settings: Settings,
    overlap_hours: float | None = None,
    *,
    force: bool = False,
) -> tuple[str, datetime]:
    """A new secret; the previous one keeps signing (a second signature) until the returned
    instant, so the agency can switch its receiver without missing a message."""
    hours = settings.webhook_rotation_hours if overlap_hours is None else overlap_hours
    if not 0 < hours <= MAX_OVERLAP_HOURS:
        raise NotificationError(
            f"overlap: must be more than 0 and at most {MAX_OVERLAP_HOURS} hours, not {hours}"
        )
    until = datetime.now(UTC) + timedelta(hours=hours)
    secret = new_secret()
    async with pool.acquire() as conn, conn.transaction():
        endpoint = await q.webhook_endpoint(conn, agency, for_update=True)
        if endpoint is None:
            raise NotificationError(f"agency: {agency} has no webhook endpoint")
        if (
            not force
            and endpoint["previous_until"]
            and endpoint["previous_until"] > datetime.now(UTC)
        ):
            # A second rotation would drop the secret the agency's receiver may still hold.
            raise NotificationError(
                f"agency: {agency} is rotating until {endpoint['previous_until']:%Y-%m-%d %H:%M}"
                " UTC; rotate again after that (or force it)"
            )
        await q.rotate_webhook_secret(conn, agency, secret, until)
    return secret, until


async def retry(
    pool: asyncpg.Pool,
    client: Client,
    ids: list[int],
    settings: Settings,
    *,
    task_queue: str = TASK_QUEUE,
) -> list[int]:
    """Delivers failed (or stuck pending) rows again: only their unsettled channels are sent,
    with the same Message-ID and webhook-id as before, by their request's delivery workflow
    (beside a channel of the same row still retrying there). Returns the rows sent on their
    way; NotificationError names ids that do not exist (and nothing is changed)."""
    delivery = settings.delivery()
    settled: list[tuple[str, str]] = []
    async with pool.acquire() as conn, conn.transaction():
        missing = await q.missing_outbox_ids(conn, ids)
        if missing:
            raise NotificationError(f"id: no notification {', '.join(map(str, missing))}")
        ids = await q.reopen_notifications(conn, ids)
        for i in ids:
            # A row written before channels were planned with it gets its plan now.
            settled += await plan_channels(conn, i, email=delivery.email)
        pending = await q.pending_sends(conn, ids=ids)
    count_settled(settled)
    for request_id, rows in groupby(pending, key=lambda r: r["request_id"]):
        await dispatch(
            client,
            request_id,
            sends_of(list(rows)),
            task_queue=notification_task_queue(task_queue),
            retry=delivery.retry,
        )
    return ids
