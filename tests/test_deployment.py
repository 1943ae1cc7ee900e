"""The settings a deployment past one machine sets: how to reach a Temporal cluster or
Temporal Cloud (TLS, mTLS, an API key, the namespace), a worker's limits, and PostgreSQL
behind a connection pooler. No cloud is reachable here: the settings are checked as far as
the arguments every process hands to `Client.connect`, and the pooler's needs on the embedded
PostgreSQL itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from temporalio.client import Client
from temporalio.service import TLSConfig

from db.pool import open_pool
from infra import temporal
from infra.settings import Settings, TemporalSettingError, temporal_connection
from starter.api import create_app
from tests.conftest import ROOT
from worker import build_worker

CERT, KEY, CA = b"-----BEGIN CERTIFICATE-----\nclient\n", b"-----BEGIN KEY-----\nk\n", b"ca\n"


@pytest.fixture
def tls_files(tmp_path) -> dict[str, str]:
    """A client certificate, its key and a server CA as files, named as Temporal names them."""
    paths = {}
    for name, data in (
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", CERT),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", KEY),
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", CA),
    ):
        path = tmp_path / name.lower()
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


def test_a_self_hosted_cluster_with_mtls(tls_files):
    config = temporal_connection(
        {
            "TEMPORAL_ADDRESS": "temporal.lienhiephoi.internal:7233",
            "TEMPORAL_NAMESPACE": "advisory",
            "TEMPORAL_TLS_SERVER_NAME": "temporal.lienhiephoi.internal",
            **tls_files,
        }
    )
    assert config == {
        "target_host": "temporal.lienhiephoi.internal:7233",
        "namespace": "advisory",
        "tls": TLSConfig(
            client_cert=CERT,
            client_private_key=KEY,
            server_root_ca_cert=CA,
            domain="temporal.lienhiephoi.internal",
        ),
    }


def test_temporal_cloud_with_an_api_key_or_mtls(tls_files):
    by_key = temporal_connection(
        {
            "TEMPORAL_ADDRESS": "ap-southeast-1.aws.api.temporal.io:7233",
            "TEMPORAL_NAMESPACE": "lhh-bacgiang.a1b2c",
            "TEMPORAL_API_KEY": "eyJhbGciOi.key",
        }
    )
    assert by_key == {
        "target_host": "ap-southeast-1.aws.api.temporal.io:7233",
        "namespace": "lhh-bacgiang.a1b2c",
        "api_key": "eyJhbGciOi.key",
        "tls": True,  # the system's roots
    }
    by_cert = temporal_connection(
        {
            "TEMPORAL_ADDRESS": "lhh-bacgiang.a1b2c.tmprl.cloud:7233",
            "TEMPORAL_NAMESPACE": "lhh-bacgiang.a1b2c",
            "TEMPORAL_TLS_CLIENT_CERT_PATH": tls_files["TEMPORAL_TLS_CLIENT_CERT_PATH"],
            "TEMPORAL_TLS_CLIENT_KEY_PATH": tls_files["TEMPORAL_TLS_CLIENT_KEY_PATH"],
        }
    )
    assert by_cert["tls"] == TLSConfig(client_cert=CERT, client_private_key=KEY)
    # Nothing named: the dev server `make up` runs, in clear.
    assert temporal_connection({}) == {"target_host": "localhost:7233"}


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {
                "TEMPORAL_TLS_CLIENT_CERT_PATH": "/nowhere/client.pem",
                "TEMPORAL_TLS_CLIENT_KEY_PATH": "/k",
            },
            "TEMPORAL_TLS_CLIENT_CERT_PATH: no such file: /nowhere/client.pem",
        ),
        ({"TEMPORAL_CONFIG_FILE": "/nowhere/temporal.toml"}, "TEMPORAL_CONFIG_FILE: no such file"),
        ({"TEMPORAL_TLS": "yes"}, "TEMPORAL_TLS: must be true or false, not 'yes'"),
        ({"TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": "true"}, "TEMPORAL_TLS_SERVER_NAME"),
        ({"TEMPORAL_TLS_CLIENT_KEY_DATA": "k"}, "a client certificate needs its key (only the key"),
        ({"TEMPORAL_PROFILE": "cloud"}, "Profile 'cloud' not found"),
    ],
)
def test_a_setting_that_cannot_be_used_is_refused_by_name(env, message):
    with pytest.raises(TemporalSettingError, match=message.replace("(", r"\(")):
        temporal_connection(env)


async def test_every_process_connects_with_them(tls_files, monkeypatch):
    """infra.temporal.connect, which the worker, the API and the CLI all call, hands the
    settings of its environment to Client.connect."""
    for name, value in {
        "TEMPORAL_ADDRESS": "temporal.example:7233",
        "TEMPORAL_NAMESPACE": "advisory-prod",
        "TEMPORAL_API_KEY": "secret-key",
        **tls_files,
    }.items():
        monkeypatch.setenv(name, value)
    given = {}

    async def fake_connect(**kwargs):
        given.update(kwargs)
        return "client"

    monkeypatch.setattr(Client, "connect", staticmethod(fake_connect))
    settings = Settings()
    assert await temporal.connect(settings) == "client"
    assert given["target_host"] == "temporal.example:7233"
    assert given["namespace"] == "advisory-prod"
    assert given["api_key"] == "secret-key"
    assert given["tls"] == TLSConfig(
        client_cert=CERT, client_private_key=KEY, server_root_ca_cert=CA
    )
    assert given["data_converter"].payload_codec is not None  # payloads still encrypted
    # The UI's link names the namespace connected to.
    assert "/namespaces/advisory-prod/workflows/review-R-1" in temporal.temporal_ui_url(
        settings, "R-1"
    )


@pytest.mark.parametrize("command", [["api", "--port", "1"], ["worker"]])
def test_a_process_with_a_wrong_setting_says_which_and_stops(command):
    out = subprocess.run(
        [sys.executable, "-m", "starter.cli", *command],
        cwd=ROOT,
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "TEMPORAL_TLS_CLIENT_CERT_PATH": "/nowhere/client.pem",
            "TEMPORAL_TLS_CLIENT_KEY_PATH": "/nowhere/client.key",
            "ADVISORY_LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH: no such file: /nowhere/client.pem" in (
        out.stdout + out.stderr
    )
    assert "Traceback" not in out.stderr


async def test_the_worker_limits_are_read(env, pool, monkeypatch):
    for name, value in {
        "ADVISORY_WORKER_ACTIVITIES": "7",
        "ADVISORY_WORKER_WORKFLOW_TASKS": "5",
        "ADVISORY_WORKER_CACHED_WORKFLOWS": "300",
        "ADVISORY_WORKER_DB_CONNECTIONS": "12",
        "ADVISORY_API_DB_CONNECTIONS": "8",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(deliver_notifications=False)
    assert (settings.worker_db_connections, settings.api_db_connections) == (12, 8)
    w = build_worker(env.client, pool, settings, task_queue="tq-limits")
    requests, notifications = w.requests.config(), w.notifications.config()
    assert requests["max_concurrent_activities"] == 7
    assert requests["max_concurrent_workflow_tasks"] == 5
    assert requests["max_cached_workflows"] == notifications["max_cached_workflows"] == 300
    assert notifications["max_concurrent_activities"] == 10
    # The SDK needs two workflow task slots while it caches workflows.
    monkeypatch.setenv("ADVISORY_WORKER_WORKFLOW_TASKS", "1")
    with pytest.raises(ValueError, match="ADVISORY_WORKER_WORKFLOW_TASKS"):
        Settings()


async def test_behind_pgbouncer_in_transaction_mode_no_statement_is_prepared_by_name(
    database_url, monkeypatch
):
    """PgBouncer in transaction mode may run a connection's next statement on another server
    connection, which does not know a statement prepared by name: with
    ADVISORY_DB_STATEMENT_CACHE_SIZE=0 asyncpg keeps none."""

    async def named_statements(settings: Settings) -> int:
        pool = await open_pool(settings, max_size=1)
        try:
            async with pool.acquire() as conn:
                for _ in range(3):
                    await conn.fetch("SELECT id FROM requests WHERE stage = $1", "review")
                return await conn.fetchval(
                    "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__asyncpg%'"
                )
        finally:
            await pool.close()

    assert await named_statements(Settings(database_url=database_url)) > 0
    monkeypatch.setenv("ADVISORY_DB_STATEMENT_CACHE_SIZE", "0")
    off = Settings(database_url=database_url)
    assert off.db_statement_cache_size == 0
    assert await named_statements(off) == 0


async def test_the_api_holds_its_liveness_lock_on_the_session_url(env, pool, database_url):
    """Behind a pooler in transaction mode the lock that tells the API processes alive from
    dead is held on ADVISORY_DATABASE_SESSION_URL, a connection of its own."""
    glue = "&" if "?" in database_url else "?"
    session_url = f"{database_url}{glue}application_name=advisory-session"
    settings = Settings(database_url=database_url, database_session_url=session_url)
    app = create_app(settings, client=env.client, pool=pool)
    async with app.router.lifespan_context(app):
        lock_id = app.state.process_lock
        async with pool.acquire() as conn:
            holder = await conn.fetchval(
                "SELECT a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted"
                " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                lock_id,
            )
    assert holder == "advisory-session"


def test_migrations_run_on_the_session_url(database_url):
    """`advisory migrate` holds an advisory lock across transactions: it connects to
    ADVISORY_DATABASE_SESSION_URL, whatever DATABASE_URL (a pooler) says."""
    out = subprocess.run(
        [sys.executable, "-m", "starter.cli", "migrate"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/pooler",
            "ADVISORY_DATABASE_SESSION_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "schema up to date"
