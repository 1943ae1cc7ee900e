"""Payload encryption: what Temporal stores and its UI shows of a request — the submission with
the requester's name and e-mail, opinions with their confidential notes, query results — is
AES-256-GCM ciphertext. Plain strings stay readable: the UI's summaries, details and current
details (kind, agency code, request id, the case page's link, what the request waits for) and
the SDK's own metadata messages, which never carry a name or an address. Signed-in staff read
the rest through the codec server (starter/portal/codec.py), which uses this codec.

Keys come from ADVISORY_PAYLOAD_KEYS as `id:base64key[,id:base64key…]`: the first encrypts,
every one decrypts, so a key is rotated by putting the new one first (`advisory keys rotate`).
`make up` makes one in `.data/payload.key`. Encryption fails closed: with keys configured, a
payload that arrives unencrypted is refused, and failures' messages and stack traces are
encrypted too; without keys nothing starts unless ADVISORY_ALLOW_UNENCRYPTED=true says this is
a development machine (infra.settings).

The converter under the codec is temporalio's pydantic one, except that it decodes with the
validation context that makes the domain models ignore fields they do not know
(`domain.models.IGNORE_UNKNOWN_FIELDS`): a worker of the previous release reads what the next
release wrote. See README, "Versioning and rolling deploys".
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
)

from domain.models import IGNORE_UNKNOWN_FIELDS

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class KeyError_(ValueError):
    """A key setting that cannot be used; the message says which part and why."""


def parse_keys(value: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for n, item in enumerate(p.strip() for p in value.split(",") if p.strip()):
        key_id, sep, b64 = item.partition(":")
        if not sep or not key_id:
            raise KeyError_(f"ADVISORY_PAYLOAD_KEYS: entry {n + 1} is not id:base64key")
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError as e:
            raise KeyError_(f"ADVISORY_PAYLOAD_KEYS: key {key_id!r} is not base64") from e
        if len(key) != 32:
            raise KeyError_(f"ADVISORY_PAYLOAD_KEYS: key {key_id!r} must be 32 bytes")
        keys[key_id] = key
    if not keys:
        raise KeyError_("ADVISORY_PAYLOAD_KEYS: no key given")
    return keys


def new_key_setting(key_id: str | None = None) -> str:
    key_id = key_id or f"k{secrets.token_hex(3)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _readable(p: Payload) -> bool:
    encoding = p.metadata.get("encoding", b"")
    if encoding == b"json/plain":
        return p.data[:1] == b'"'  # a bare string: a summary, current details
    if encoding == b"json/protobuf":
        # The SDK's own messages (the workflow metadata query behind "current details").
        return p.metadata.get("messageType", b"").startswith(b"temporal.api.")
    return encoding == b"binary/null"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: dict[str, bytes]) -> None:
        self._keys = {k: AESGCM(v) for k, v in keys.items()}
        self._current = next(iter(keys))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if _readable(p):
                out.append(p)
                continue
            nonce = os.urandom(12)
            sealed = self._keys[self._current].encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                # Only what `encode` leaves readable may arrive in clear: anything else was
                # written by a process without the keys, and is refused rather than trusted.
                if not _readable(p):
                    raise KeyError_(
                        "a payload arrived unencrypted although payload keys are configured: "
                        "refused (was it written by a process without ADVISORY_PAYLOAD_KEYS?)"
                    )
                out.append(p)
                continue
            key_id = p.metadata.get(KEY_ID, b"").decode()
            aead = self._keys.get(key_id)
            if aead is None:
                raise KeyError_(f"payload encrypted with key {key_id!r}, which is not configured")
            inner = Payload()
            inner.ParseFromString(aead.decrypt(p.data[:12], p.data[12:], None))
            out.append(inner)
        return out


MESSAGE_CONTEXT = {IGNORE_UNKNOWN_FIELDS: True}

# Building a TypeAdapter is costly; one per type hint, as the SDK's converter keeps them.
_adapter = functools.lru_cache(maxsize=1024)(TypeAdapter)


class MessageJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """temporalio's pydantic JSON converter, decoding under MESSAGE_CONTEXT: every payload
    Temporal hands the engine is a message one of its own processes wrote, maybe a newer
    release with fields this one does not know yet. Encoding is the SDK's, unchanged."""

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint = type_hint if type_hint is not None else Any
        try:
            adapter = _adapter(hint)
        except TypeError:
            # An unhashable hint cannot be cached; a TypeError building the adapter is real.
            try:
                hash(hint)
            except TypeError:
                adapter = TypeAdapter(hint)
            else:
                raise
        return adapter.validate_json(payload.data, context=MESSAGE_CONTEXT)


class MessagePayloadConverter(CompositePayloadConverter):
    """The SDK's default converters with JSON done by MessageJSONPayloadConverter, as
    `temporalio.contrib.pydantic.PydanticPayloadConverter` does with its own (nullary, as
    Temporal requires of a payload converter class)."""

    def __init__(self) -> None:
        json_converter = MessageJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


def data_converter(keys: dict[str, bytes] | None) -> DataConverter:
    """The one data converter of every Client, worker, test environment and Replayer:
    pydantic, messages tolerant of unknown fields, encrypting when keys are given."""
    if not keys:
        return DataConverter(payload_converter_class=MessagePayloadConverter)
    return DataConverter(
        payload_converter_class=MessagePayloadConverter,
        payload_codec=EncryptionCodec(keys),
        # A failure's message can name a person or say why an expert is not available: it
        # travels as an encoded (so encrypted) attribute, not as plain text in the history.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def key_file(data_dir: Path) -> Path:
    return data_dir / "payload.key"


def write_key_file(path: Path, setting: str) -> None:
    """Writes a key setting readable by its owner only, from the first byte (never a moment
    with the default permissions), replacing the file atomically."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(setting + "\n")
    os.chmod(tmp, 0o600)  # an existing .new file keeps its mode through O_CREAT
    os.replace(tmp, path)


def ensure_key_file(data_dir: Path) -> str:
    """The dev stack's key, made once and kept so restarts can read old payloads."""
    path = key_file(data_dir)
    if not path.exists():
        write_key_file(path, new_key_setting("dev"))
    return path.read_text(encoding="utf-8").strip()


def rotated(setting: str, key_id: str | None = None) -> str:
    """The key setting with a new key first (it encrypts from now on); every old key stays, so
    what it sealed still opens."""
    old = parse_keys(setting)
    new = new_key_setting(key_id)
    if new.partition(":")[0] in old:
        raise KeyError_(f"key id {new.partition(':')[0]!r} is already in use: choose another")
    return f"{new},{setting.strip()}"
