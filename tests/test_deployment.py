"""The settings a deployment past one machine sets: how to reach a Temporal cluster or
Temporal Cloud (TLS, mTLS, an API key, the namespace). No cloud is reachable here: the
settings are checked as far as the arguments every process hands to `Client.connect`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from temporalio.client import Client
from temporalio.service import TLSConfig

from infra import temporal
from infra.settings import Settings, TemporalSettingError, temporal_connection
from tests.conftest import ROOT

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
