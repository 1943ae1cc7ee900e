"""The document store: file contents by SHA-256, streamed in and out a chunk at a time.

One small interface, so a deployment with an S3-compatible store could put one behind it;
PostgreSQL is the store by default (db/migrations/0009_documents.sql says why), so every API
process and worker reads the same files with no other server. Content-addressed: the same
bytes stored twice are kept once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import asyncpg

CHUNK = 1 << 20  # 1 MiB: a row of blob_chunks, and what is in memory at a time


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


async def digest(file: BinaryIO) -> Digest:
    """SHA-256 and size of a seekable file, read a chunk at a time from its start."""
    h, size = hashlib.sha256(), 0
    await asyncio.to_thread(file.seek, 0)
    while chunk := await asyncio.to_thread(file.read, CHUNK):
        h.update(chunk)
        size += len(chunk)
    await asyncio.to_thread(file.seek, 0)
    return Digest(h.hexdigest(), size)


class DocumentStore(Protocol):
    async def put(
        self, conn: asyncpg.Connection, file: BinaryIO, d: Digest, content_type: str
    ) -> bool:
        """Keeps the file's bytes under d.sha256 (in the caller's transaction); False when
        they were kept already."""

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes start..end (inclusive; end None: to the last), a chunk at a time."""


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(
        self, conn: asyncpg.Connection, file: BinaryIO, d: Digest, content_type: str
    ) -> bool:
        inserted = await conn.fetchval(
            "INSERT INTO blobs (sha256, size, content_type) VALUES ($1, $2, $3)"
            " ON CONFLICT (sha256) DO NOTHING RETURNING true",
            d.sha256,
            d.size,
            content_type,
        )
        if not inserted:
            return False
        h = hashlib.sha256()
        await asyncio.to_thread(file.seek, 0)
        n = 0
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            h.update(chunk)
            await conn.execute(
                "INSERT INTO blob_chunks (sha256, n, data) VALUES ($1, $2, $3)", d.sha256, n, chunk
            )
            n += 1
        if h.hexdigest() != d.sha256:  # the file changed under us: keep nothing
            raise ValueError("the file changed while it was being stored")
        return True

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        first = start // CHUNK
        last = None if end is None else end // CHUNK
        n = first
        while last is None or n <= last:
            async with self._pool.acquire() as conn:
                data = await conn.fetchval(
                    "SELECT data FROM blob_chunks WHERE sha256 = $1 AND n = $2", sha256, n
                )
            if data is None:
                return
            lo = start - n * CHUNK if n == first else 0
            hi = end - n * CHUNK + 1 if last is not None and n == last else len(data)
            if lo >= len(data):  # a start past the last byte: nothing, not an empty chunk
                return
            yield data[lo:hi]
            n += 1
