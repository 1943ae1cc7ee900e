"""Encryption fails closed: nothing starts without payload keys unless a development switch says
so; with keys, a payload that arrives in clear is refused and failures travel encrypted; keys
rotate without losing a request started under the old one; the key file is its owner's alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from domain.messages import ScreeningInput
from domain.models import Stage
from infra.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    KeyError_,
    data_converter,
    ensure_key_file,
    key_file,
    new_key_setting,
    parse_keys,
)
from infra.settings import Settings
from starter import service
from tests import factories as f
from tests.conftest import ROOT, TEST_KEY_SETTING, advisory
from tests.test_lifecycle import until
from worker import build_worker
from workflows.review import ReviewRequestWorkflow


def without_keys(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ADVISORY_PAYLOAD_KEYS"}
    return {**env, "ADVISORY_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1"}


def test_without_keys_nothing_starts_unless_development_says_so(tmp_path):
    unset = dict(data_dir=tmp_path, payload_keys=None)  # the suite's own key is in the env
    with pytest.raises(KeyError_, match="ADVISORY_PAYLOAD_KEYS: not set"):
        Settings(**unset).resolve_payload_keys()
    assert Settings(**unset, allow_unencrypted=True).resolve_payload_keys() is None
    ensure_key_file(tmp_path)
    assert Settings(**unset).resolve_payload_keys()  # make up's key file

    bare = tmp_path / "bare"
    bare.mkdir()
    for argv in (["-m", "starter.cli", "show", "R-0000000000"], ["-m", "worker"]):
        out = subprocess.run(
            [sys.executable, *argv],
            cwd=ROOT,
            env=without_keys(bare),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0, argv
        assert "ADVISORY_PAYLOAD_KEYS: not set" in out.stdout + out.stderr, argv


async def test_with_keys_a_payload_in_clear_is_refused_and_failures_are_sealed():
    codec = EncryptionCodec(parse_keys(TEST_KEY_SETTING))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"a@b.vn"}')
    with pytest.raises(KeyError_, match="unencrypted"):
        await codec.decode([plain])
    summary = Payload(metadata={"encoding": b"json/plain"}, data=b'"advisory \xc2\xb7 SXD"')
    assert await codec.decode([summary]) == [summary]  # what encode leaves readable

    converter = data_converter(parse_keys(TEST_KEY_SETTING))
    secret = "E-017: declared a conflict with Sở Xây dựng"
    failure = Failure()
    await converter.encode_failure(ApplicationError(secret, type="InvalidAction"), failure)
    assert secret not in str(failure) and "Sở" not in failure.SerializeToString().decode(
        "utf-8", "replace"
    )
    assert (await converter.decode_failure(failure)).message == secret


def test_keys_rotate_in_the_key_file_readable_by_its_owner_only(tmp_path):
    env = {"ADVISORY_DATA_DIR": str(tmp_path)}
    first = ensure_key_file(tmp_path)
    path = key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = advisory("keys", "rotate", "--id", "k2027", env_vars=env)
    assert out.returncode == 0, out.stderr
    rotated = path.read_text(encoding="utf-8").strip()
    assert rotated.startswith("k2027:") and rotated.endswith(first)
    assert list(parse_keys(rotated)) == ["k2027", "dev"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = advisory("keys", "rotate", "--id", "k2027", env_vars=env)
    assert again.returncode == 2 and "already in use" in again.stderr
    bad = advisory("keys", "rotate", "--id", "no:colons", env_vars=env)
    assert bad.returncode == 2 and "id: letters, digits" in bad.stderr
    path.write_text("garbage\n", encoding="utf-8")
    broken = advisory("keys", "rotate", env_vars=env)
    assert broken.returncode == 2 and "not id:base64key" in broken.stderr
    new = advisory("keys", "new", env_vars=env)
    assert new.returncode == 0 and parse_keys(new.stdout.strip())


async def test_a_request_started_under_the_old_key_completes_after_rotation(
    dev_env, pool, settings, policy, registry
):
    """On the dev server: the second worker takes over the first one's request, as a restarted
    worker does (on the time-skipping server the second worker was never given the request)."""
    env = dev_env
    old = new_key_setting("old")
    rotated = f"{new_key_setting('new')},{old}"

    def client_with(setting: str) -> Client:
        return Client(
            env.client.service_client,
            namespace=env.client.namespace,
            data_converter=data_converter(parse_keys(setting)),
        )

    await registry.add(3)
    before = client_with(old)
    queue = f"tq-{uuid.uuid4().hex}"
    async with build_worker(before, pool, settings, task_queue=queue):
        rid = (
            await service.submit(
                before, pool, f.submission(registry.field), policy, task_queue=queue
            )
        ).request_id
        await until(lambda s: s.stage == Stage.screening, service.request_handle(before, rid))

    after = client_with(rotated)
    async with build_worker(after, pool, settings, task_queue=queue):
        handle = service.request_handle(after, rid)
        await service.request_update(
            after,
            rid,
            ReviewRequestWorkflow.screen,
            ScreeningInput(actor=f.COORDINATOR, decision="accept"),
        )
        state = await until(lambda s: s.stage == Stage.review and len(s.assignments) == 3, handle)
        assert state.request_id == rid
        history = await handle.fetch_history()
    sealed = [
        p.metadata[KEY_ID]
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        for p in e.activity_task_scheduled_event_attributes.input.payloads
        if p.metadata.get("encoding") == ENCODING
    ]
    assert sealed[0] == b"old" and sealed[-1] == b"new"
