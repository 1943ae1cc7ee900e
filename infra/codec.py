"""Payload encryption: what Temporal stores and its UI shows of a request — the submission with
the requester's name and e-mail, opinions with their confidential notes, query results — is
AES-256-GCM ciphertext. Plain strings stay readable: the UI's summaries and current details
(kind, agency code, title, what the request waits for) and the SDK's own metadata messages,
which never carry a name or an address.

Keys come from ADVISORY_PAYLOAD_KEYS as `id:base64key[,id:base64key…]`: the first encrypts,
every one decrypts, so a key is rotated by putting the new one first. `make up` makes one in
`.data/payload.key`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

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
            # Payloads written before encryption was on stay as they were.
            if p.metadata.get("encoding") != ENCODING:
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


def data_converter(keys: dict[str, bytes] | None) -> DataConverter:
    """The pydantic converter, encrypting when keys are given."""
    if not keys:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(keys))


def key_file(data_dir: Path) -> Path:
    return data_dir / "payload.key"


def ensure_key_file(data_dir: Path) -> str:
    """The dev stack's key, made once and kept (mode 600) so restarts can read old payloads."""
    path = key_file(data_dir)
    if not path.exists():
        path.write_text(new_key_setting("dev") + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()
