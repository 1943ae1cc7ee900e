"""Past one machine: the worker and the API hold no state of their own, so any number of each
run against one Temporal cluster and one PostgreSQL. Two worker processes and two API processes
(`advisory worker`, `advisory api`), real subprocesses reaching PostgreSQL by its URL and the
Temporal dev server by its address, on one task queue of this test's own; a burst of people's
actions sent over HTTP to both APIs in turn; one worker SIGKILLed in the middle of it. Then
every request is where it should be, no transition or notice was written twice, and no e-mail
reached the SMTP server twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.service import RPCError, RPCStatusCode

from db import reports
from domain.ids import notifications_workflow_id
from domain.notifications import DeliverInput
from tests import factories as f
from tests.conftest import ROOT, free_port, register_agency
from tests.test_api import body, token

REQUESTS = 8  # each: submitted, screened, a council of 3 invited, 3 accept, 3 opinions
COUNCIL = 3  # config/policy.toml, kind "advisory"
START_DEADLINE = 60  # s for the four processes to start on a busy 2-core machine
# What each request's path writes: its audit trail (action: rows) and its notices ((event,
# recipient): outbox rows), once each.
TRAIL = Counter(
    submitted=1,
    screening_accepted=1,
    council_proposed=1,
    expert_invited=COUNCIL,
    review_opened=1,
    invitation_accepted=COUNCIL,
    opinion_submitted=COUNCIL,
    synthesis_opened=1,
)
NOTICES = Counter(
    {
        ("request_received", "agency"): 1,
        ("request_submitted", "coordinator"): 1,
        ("request_accepted", "agency"): 1,
        ("council_proposed", "coordinator"): 1,
        ("invitation", "expert"): COUNCIL,
        ("review_due", "expert"): COUNCIL,
        ("expert_accepted", "coordinator"): COUNCIL,
        ("opinion_received", "expert"): COUNCIL,
        ("opinion_submitted", "coordinator"): COUNCIL,
        ("draft_conclusion_requested", "expert"): 1,
    }
)
# A transition whose activity was running on the killed worker is retried once its
# start_to_close_timeout (workflows/common.py, 30 s) has passed, by the worker left.
SETTLE_DEADLINE = 75


@dataclass
class Process:
    """One `advisory …` subprocess, its output kept in a file for when a test fails."""

    name: str
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self, args: list[str], env: dict[str, str]) -> Process:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "starter.cli",
                *args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def identity(self) -> str:
        """The Temporal identity its client (and so its workers) reports: the SDK's default."""
        return f"{self.pid}@{socket.gethostname()}"

    def events(self) -> list[dict]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            with suppress(ValueError):
                found.append(json.loads(line))
        return found

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- {self.name} (pid {self.pid}), last lines of {self.log}:\n" + "\n".join(
            text[-lines:]
        )

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Burst:
    """The people's side: actions sent to the APIs in turn, answers counted."""

    apis: list[str]
    http: httpx.AsyncClient
    answered: int = 0
    retried: Counter = field(default_factory=Counter)
    answered_by: Counter = field(default_factory=Counter)
    midway: asyncio.Event = field(default_factory=asyncio.Event)
    kill_after: int = 0
    _turn: int = 0

    def next_api(self) -> str:
        self._turn += 1
        return self.apis[self._turn % len(self.apis)]

    async def post(self, path: str, headers: dict, json_body: dict | None = None) -> dict:
        """Sends one action with an Idempotency-Key, as a client that means it once: a lost
        connection, a 5xx or 409 in-progress is sent again with the same key, to whichever
        API is next (the other may be the one that took the key)."""
        key = uuid.uuid4().hex
        async with asyncio.timeout(SETTLE_DEADLINE + 30):
            while True:
                api = self.next_api()
                try:
                    r = await self.http.post(
                        f"{api}{path}",
                        json=json_body,
                        headers={**headers, "Idempotency-Key": key},
                    )
                except httpx.TransportError as err:
                    self.retried[type(err).__name__] += 1
                    await asyncio.sleep(0.5)
                    continue
                if r.status_code >= 500 or (
                    r.status_code == 409 and r.json().get("type", "").endswith("/in-progress")
                ):
                    self.retried[str(r.status_code)] += 1
                    await asyncio.sleep(0.5)
                    continue
                assert r.status_code in (200, 201), f"POST {api}{path}: {r.status_code} {r.text}"
                self.answered += 1
                self.answered_by[api] += 1
                if self.answered >= self.kill_after:
                    self.midway.set()
                return r.json()

    async def until(self, rid: str, headers: dict, stage: str, ready=lambda seen: True) -> dict:
        seen: dict = {}
        async with asyncio.timeout(SETTLE_DEADLINE + 30):
            while True:
                with suppress(httpx.TransportError):
                    r = await self.http.get(f"{self.next_api()}/requests/{rid}", headers=headers)
                    if r.status_code == 200:
                        seen = r.json()
                        if seen["stage"] == stage and ready(seen):
                            return seen
                await asyncio.sleep(0.2)


async def test_two_workers_and_two_apis_share_the_work_through_a_worker_crash(
    dev_env, database_url, pool, registry, mail, smtp_port, tmp_path, policy
):
    experts = await registry.add(REQUESTS * COUNCIL // 2 + 2, load_limit=3)
    agency_code = f"AG{uuid.uuid4().hex[:6].upper()}"
    await register_agency(pool, agency_code, "Sở Khoa học và Công nghệ")
    agency = await token(pool, "agency", agency_code)
    coordinator = await token(pool, "coordinator", "VP01")
    by_code = {e.code: await token(pool, "expert", e.code) for e in experts}
    task_queue = f"tq-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        # PostgreSQL and Temporal by their addresses, as another machine would reach them.
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "ADVISORY_TASK_QUEUE": task_queue,
        "ADVISORY_SMTP_HOST": "127.0.0.1",
        "ADVISORY_SMTP_PORT": str(smtp_port),
        "ADVISORY_SMTP_STARTTLS": "false",
        "ADVISORY_COORDINATOR_EMAIL": "office@scale.example",
        "ADVISORY_DELIVERY_INITIAL_RETRY": "0.5",
        "ADVISORY_DELIVERY_MAX_RETRY": "2",
        "ADVISORY_METRICS": "off",
        "ADVISORY_SDK_METRICS": "off",
        "ADVISORY_LOG_FORMAT": "json",
    }
    ports = [free_port(), free_port()]
    workers = [Process(f"worker-{i}", tmp_path / f"worker-{i}.log") for i in (1, 2)]
    apis = [Process(f"api-{i}", tmp_path / f"api-{i}.log") for i in (1, 2)]
    processes = [*workers, *apis]
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    try:
        for w in workers:
            await w.start(["worker"], env)
        for a, port in zip(apis, ports, strict=True):
            await a.start(["api", "--host", "127.0.0.1", "--port", str(port)], env)
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        async with httpx.AsyncClient(timeout=SETTLE_DEADLINE + 30) as http:
            await _until_started(http, workers, apis, urls)
            timings["started"] = time.monotonic() - t0

            burst = Burst(urls, http, kill_after=REQUESTS * (2 + 2 * COUNCIL) // 3)

            async def expert_acts(rid: str, code: str) -> None:
                await burst.post(f"/requests/{rid}/assignment/accept", by_code[code])
                opinion = f.opinion(code).opinion.model_dump(mode="json")
                await burst.post(f"/requests/{rid}/assignment/opinion", by_code[code], opinion)

            async def one_request() -> str:
                sub = f.submission(registry.field, agency={"code": agency_code, "name": "Sở KH&CN"})
                rid = (await burst.post("/requests", agency, body(sub)))["request_id"]
                await burst.until(rid, agency, "screening")
                await burst.post(f"/requests/{rid}/screening", coordinator, {"decision": "accept"})
                seen = await burst.until(
                    rid,
                    coordinator,
                    "review",
                    ready=lambda j: (
                        len([a for a in j["assignments"] if a["state"] == "invited"]) == COUNCIL
                    ),
                )
                await asyncio.gather(
                    *(expert_acts(rid, a["expert_code"]) for a in seen["assignments"])
                )
                await burst.until(rid, coordinator, "synthesis")
                return rid

            async def kill_midway() -> None:
                await burst.midway.wait()
                timings["killed"] = time.monotonic() - t0
                await workers[0].kill()

            killer = asyncio.create_task(kill_midway())
            burst_started = time.monotonic()
            rids = await asyncio.gather(*(one_request() for _ in range(REQUESTS)))
            timings["burst"] = time.monotonic() - burst_started
            await killer
            assert workers[0].proc.returncode == -signal.SIGKILL
            assert not workers[1].exited(), workers[1].tail()

        # Every request in synthesis, as PostgreSQL records it.
        async with pool.acquire() as conn:
            stages = dict(
                await conn.fetch("SELECT id, stage FROM requests WHERE id = ANY($1)", rids)
            )
        assert stages == dict.fromkeys(rids, "synthesis"), stages

        rows = await _no_duplicate_rows(pool, rids)
        await _reports_read_the_whole_trail(pool, rids, policy)
        timings["rows checked"] = time.monotonic() - t0
        # Both APIs took actions, both workers did the work, the survivor the rest.
        assert len(burst.answered_by) == 2, burst.answered_by
        work, retried = await _who_worked(dev_env.client, pool, rids)
        assert set(work) == {w.identity for w in workers}, (work, [w.identity for w in workers])
        mails = await _each_email_once(dev_env.client, pool, rids, mail, workers[0])
        timings["mail checked"] = time.monotonic() - t0
        print(
            f"\nscale-out: {REQUESTS} requests, {burst.answered} actions answered "
            f"({dict(burst.answered_by)}), resent {dict(burst.retried)}; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
            + f"; {rows}; {mails}; tasks completed by worker {dict(work)}"
            + f", {retried} activities retried"
        )
    except BaseException:
        print("\n".join(p.tail() for p in processes if p.proc is not None))
        raise
    finally:
        await asyncio.gather(*(p.stop() for p in processes))


async def _until_started(http, workers: list[Process], apis: list[Process], urls: list[str]):
    """Both workers polling (their "worker started" line) and both APIs answering /health."""
    async with asyncio.timeout(START_DEADLINE):
        pending = set(urls)
        while pending or not all(
            any(e.get("event") == "worker started" for e in w.events()) for w in workers
        ):
            for p in (*workers, *apis):
                assert not p.exited(), p.tail()
            for url in list(pending):
                with suppress(httpx.TransportError):
                    if (await http.get(f"{url}/health")).status_code == 200:
                        pending.discard(url)
            await asyncio.sleep(0.2)


async def _no_duplicate_rows(pool, rids: list[str]) -> str:
    """Every transition once: each request's audit trail and notices are exactly those its
    path writes, each expert's action is recorded once, and each outbox row belongs to a
    recorded transition (its key is `<the transition's key>:<n>`)."""
    async with pool.acquire() as conn:
        audit = await conn.fetch(
            "SELECT request_id, idempotency_key, action, actor FROM audit_log"
            " WHERE request_id = ANY($1) ORDER BY id",
            rids,
        )
        outbox = await conn.fetch(
            "SELECT id, request_id, idempotency_key, event, recipient_kind FROM outbox"
            " WHERE request_id = ANY($1) ORDER BY id",
            rids,
        )
    trails = {rid: Counter() for rid in rids}
    for row in audit:
        trails[row["request_id"]][row["action"]] += 1
    wrong = {rid: dict(t) for rid, t in trails.items() if t != TRAIL}
    assert not wrong, f"expected each request's audit trail to be {dict(TRAIL)}: {wrong}"
    # An expert's acceptance and opinion: once each, by that expert.
    by_actor = Counter((r["request_id"], r["actor"], r["action"]) for r in audit)
    twice = {k: n for k, n in by_actor.items() if n > 1 and k[1].startswith("expert:")}
    assert not twice, f"an expert's action recorded more than once: {twice}"
    keys = {r["idempotency_key"] for r in audit}
    orphans = [
        r["idempotency_key"] for r in outbox if r["idempotency_key"].rsplit(":", 1)[0] not in keys
    ]
    assert not orphans, f"outbox rows of no recorded transition: {orphans}"
    notices = {rid: Counter() for rid in rids}
    for row in outbox:
        notices[row["request_id"]][(row["event"], row["recipient_kind"])] += 1
    wrong = {rid: dict(n) for rid, n in notices.items() if n != NOTICES}
    assert not wrong, f"expected each request's notices to be {dict(NOTICES)}: {wrong}"
    return f"{len(audit)} audit rows, {len(outbox)} outbox rows"


REPORT_TABLES = [
    "report_requests",
    "report_visits",
    "report_deadlines",
    "report_extensions",
    "report_assignments",
]


async def _reports_read_the_whole_trail(pool, rids: list[str], policy) -> None:
    """Transitions of one request committed together on two workers (one killed) left its
    report rows as a reading of its whole trail, and its experts' months as a count of all
    their assignments: rewriting them now from the log changes nothing."""

    async def read(conn) -> dict[str, list]:
        tables = {
            t: sorted(
                map(tuple, await conn.fetch(f"SELECT * FROM {t} WHERE request_id = ANY($1)", rids))
            )
            for t in REPORT_TABLES
        }
        experts = await conn.fetchval(
            "SELECT array_agg(DISTINCT expert_code) FROM report_assignments"
            " WHERE request_id = ANY($1)",
            rids,
        )
        tables["report_expert_months"] = sorted(
            map(
                tuple,
                await conn.fetch(
                    "SELECT * FROM report_expert_months WHERE expert_code = ANY($1)", experts
                ),
            )
        )
        return tables

    async with pool.acquire() as conn:
        kept = await read(conn)
        tx = conn.transaction()
        await tx.start()
        try:
            for rid in rids:
                await reports.refresh(conn, rid, policy)
            await reports.recount(conn, {r[0] for r in kept["report_expert_months"]})
            again = await read(conn)
        finally:
            await tx.rollback()
    assert len(kept["report_requests"]) == len(rids) and kept["report_expert_months"]
    assert kept == again


async def _who_worked(client, pool, rids: list[str]) -> tuple[Counter, int]:
    """Workflow and activity tasks completed by each worker identity, and the activities
    that ran more than once, from the histories of the requests' workflows and their
    experts'."""
    async with pool.acquire() as conn:
        keys = await conn.fetch(
            "SELECT DISTINCT split_part(idempotency_key, ':', 1) AS wf FROM audit_log"
            " WHERE request_id = ANY($1)",
            rids,
        )
    by_identity: Counter = Counter()
    retried = 0
    for row in keys:
        history = await client.get_workflow_handle(row["wf"]).fetch_history()
        for event in history.events:
            if event.activity_task_started_event_attributes.attempt > 1:
                retried += 1
            for attrs in (
                event.workflow_task_completed_event_attributes,
                event.activity_task_completed_event_attributes,
            ):
                if attrs.identity:
                    by_identity[attrs.identity] += 1
    return by_identity, retried


async def _each_email_once(client, pool, rids: list[str], mail, killed: Process) -> str:
    """Each outbox row delivered, its e-mail recorded delivered once and received by the SMTP
    server once (its Message-ID names the row). A row whose send was running on the killed
    worker when it died is retried only once that activity's start_to_close_timeout has
    passed, later than this test waits: such rows are found by the activity Temporal still
    counts as started by the dead worker, and may have reached the SMTP server at most once
    so far (the retry will send the same Message-ID again if the first got through)."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT o.id, o.request_id, o.status, d.status AS email FROM outbox o"
                " LEFT JOIN deliveries d ON d.outbox_id = o.id AND d.channel = 'email'"
                " WHERE o.request_id = ANY($1) ORDER BY o.id",
                rids,
            )
        unsettled = {r["id"] for r in rows if r["status"] != "delivered"}
        started = {}
        for rid in {r["request_id"] for r in rows if r["id"] in unsettled}:
            started.update(await _started_by(client, rid, killed))
        stranded = {i: a for i, a in started.items() if i in unsettled}
        if unsettled == set(stranded):
            break
        assert time.monotonic() < deadline, (
            "outbox rows not delivered, not explained by the killed worker: "
            f"{sorted(unsettled - set(stranded))}"
        )
        await asyncio.sleep(0.5)
    async with pool.acquire() as conn:
        attempts = await conn.fetch(
            "SELECT a.outbox_id, a.channel, count(*) AS n FROM delivery_attempts a"
            " JOIN outbox o ON o.id = a.outbox_id WHERE o.request_id = ANY($1)"
            " AND a.outcome = 'delivered' GROUP BY a.outbox_id, a.channel",
            rids,
        )
    recorded = {(r["outbox_id"], r["channel"]): r["n"] for r in attempts}
    assert all(n == 1 for n in recorded.values()), {k: n for k, n in recorded.items() if n > 1}
    emailed = {r["id"] for r in rows if r["email"] == "delivered"}
    assert emailed == {i for i, channel in recorded if channel == "email"}

    by_row: Counter = Counter()
    for message in mail.messages:
        mid = str(message["Message-ID"])  # <notification-<row id>@domain>
        by_row[int(mid.strip("<>").split("@")[0].removeprefix("notification-"))] += 1
    strangers = set(by_row) - {r["id"] for r in rows}
    assert not strangers, f"messages for rows of no request of this test: {strangers}"
    twice = {i: n for i, n in by_row.items() if n > 1}
    assert not twice, f"rows e-mailed more than once: {twice}"
    assert emailed <= set(by_row), f"delivered, never received: {emailed - set(by_row)}"
    assert set(by_row) <= emailed | set(stranded), (
        f"received, not recorded delivered: {set(by_row) - emailed - set(stranded)}"
    )
    arrived = [i for i in stranded if by_row[i]]
    return (
        f"{len(emailed)} e-mails delivered and received once each; "
        f"{len(stranded)} left running on the killed worker {sorted(stranded.values())}, "
        f"{len(arrived)} of them received already"
    )


async def _started_by(client, request_id: str, worker: Process) -> dict[int, str]:
    """The rows of the request whose delivery activity `worker` started and never finished,
    with the activity's type: pending activities of the request's notifications workflow,
    each row found by the input its activity was scheduled with."""
    handle = client.get_workflow_handle(notifications_workflow_id(request_id))
    try:
        described = await handle.describe()
    except RPCError as err:  # not started yet
        if err.status == RPCStatusCode.NOT_FOUND:
            return {}
        raise
    pending = {
        a.activity_id: a.activity_type.name
        for a in described.raw_description.pending_activities
        if a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        and a.last_worker_identity == worker.identity
    }
    if not pending:
        return {}
    rows = {}
    async for event in handle.fetch_history_events():
        attrs = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and (
            attrs.activity_id in pending
        ):
            [send] = await client.data_converter.decode(attrs.input.payloads, [DeliverInput])
            rows[send.outbox_id] = pending[attrs.activity_id]
    return rows
