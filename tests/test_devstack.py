"""`make up` survives a crash: `python -m starter.devstack`, on the suite's PostgreSQL and
Temporal dev server, with its worker SIGKILLed. The HTTP API keeps answering, an action sent
while no worker runs is applied once the stack has started the worker again, and Ctrl-C (here
SIGTERM) still stops everything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
import pytest

from starter.devstack import restart_delay
from tests import factories as f
from tests.conftest import ROOT, free_port
from tests.test_api import body, token, until_stage

STACK_DEADLINE = 120  # s for the stack to start its worker and API on a busy 2-core machine


def started(process: str) -> Callable[[dict], bool]:
    return lambda e: e.get("event") == "process started" and e.get("process") == process


class Stack:
    """The running devstack and the log lines it has written so far (JSON, one per line)."""

    def __init__(self, proc: asyncio.subprocess.Process, api: str) -> None:
        self.proc, self.api = proc, api
        self.events: list[dict] = []

    def started(self, process: str) -> list[dict]:
        return [e for e in self.events if started(process)(e)]

    async def event(self, check: Callable[[dict], bool], timeout: float = STACK_DEADLINE) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                if found := [e for e in self.events if check(e)]:
                    return found[0]
                if self.proc.returncode is not None:
                    raise AssertionError(f"the stack exited: {self.events}")
                await asyncio.sleep(0.05)


@asynccontextmanager
async def devstack(dev_env, database_url: str, data: Path) -> AsyncIterator[Stack]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "ADVISORY_DATA_DIR": str(data),
        "ADVISORY_TASK_QUEUE": f"tq-{uuid.uuid4().hex}",
        "ADVISORY_API_PORT": str(port),
        "ADVISORY_SMTP_SINK_PORT": str(free_port()),
        "ADVISORY_METRICS": "off",
        "ADVISORY_SDK_METRICS": "off",
        "ADVISORY_LOG_FORMAT": "json",
        # Short enough for a test; the pause is still there to see the API serve through.
        "ADVISORY_RESTART_DELAY": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.devstack",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    stack = Stack(proc, f"http://127.0.0.1:{port}")

    async def read() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            with suppress(ValueError):
                stack.events.append(json.loads(line))

    reader = asyncio.create_task(read())
    try:
        yield stack
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                for e in stack.events:  # its children run in sessions of their own
                    with suppress(ProcessLookupError, KeyError):
                        os.kill(e["pid"], signal.SIGKILL)
        await reader


async def test_the_api_serves_through_a_worker_crash_and_actions_resume(
    dev_env, database_url, pool, registry, tmp_path
):
    await registry.add(3)
    code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    coordinator = await token(pool, "coordinator", "VP01")
    sub = f.submission(registry.field, agency={"code": code, "name": "Sở Tư pháp"})

    async with devstack(dev_env, database_url, tmp_path) as stack:
        first = await stack.event(started("worker"))
        await stack.event(started("api"))
        async with httpx.AsyncClient(base_url=stack.api, timeout=90) as http:
            async with asyncio.timeout(STACK_DEADLINE):
                while True:
                    with suppress(httpx.TransportError):
                        if (await http.get("/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.2)
            r = await http.post("/requests", json=body(sub), headers=agency)
            assert r.status_code == 201, r.text
            rid = r.json()["request_id"]
            await until_stage(http, rid, agency, "screening")

            os.kill(first["pid"], signal.SIGKILL)
            exited = await stack.event(lambda e: e.get("event") == "process exited")
            assert exited["process"] == "worker" and exited["returncode"] == -signal.SIGKILL

            # No worker runs: the screening waits for one, and reads are answered meanwhile.
            decline = {"decision": "decline", "note": "Ngoài phạm vi."}
            screened = asyncio.create_task(
                http.post(f"/requests/{rid}/screening", json=decline, headers=coordinator)
            )
            read = await http.get(f"/requests/{rid}", headers=agency)
            listed = await http.get("/requests", headers=agency)
            assert len(stack.started("worker")) == 1, "the worker was back before the reads"
            assert read.status_code == 200 and read.json()["stage"] == "screening"
            assert [i["request_id"] for i in listed.json()["items"]] == [rid]

            r = await screened
            assert r.status_code == 200 and r.json()["stage"] == "declined", r.text
            assert (await http.get(f"/requests/{rid}", headers=agency)).json()["stage"] == (
                "declined"
            )
        workers, apis = stack.started("worker"), stack.started("api")
        assert [w["restarts"] for w in workers] == [0, 1] and workers[1]["pid"] != first["pid"]
        assert len(apis) == 1  # the API was never interrupted

        stack.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(stack.proc.wait(), 60) == 0
    for pid in (workers[1]["pid"], apis[0]["pid"]):
        with pytest.raises(ProcessLookupError):  # nothing outlived the stack
            os.kill(pid, 0)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE request_id = $1"
                " AND action = 'screening_declined'",
                rid,
            )
            == 1
        )


def test_a_process_that_keeps_failing_waits_longer_each_time():
    """1 s, doubling to 30 s while it keeps failing; back to 1 s after a long run."""
    delays, last = [], None
    for _ in range(7):
        last = restart_delay(last, uptime=0.5, initial=1, maximum=30)
        delays.append(last)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert restart_delay(30, uptime=31, initial=1, maximum=30) == 1
