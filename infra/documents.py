"""The document store: file contents by SHA-256, streamed in and out a chunk at a time.

One small interface with two stores behind it, chosen by ADVISORY_DOCUMENT_STORE through
`document_store`, the one way every process gets its store. PostgreSQL is the default
(db/migrations/0009_documents.sql says why), so every API process and worker reads the same
files with no other server; a deployment that has an S3-compatible bucket may keep the bytes
there instead. Either way the `blobs` row is written in the caller's transaction and the store
is content-addressed: the same bytes stored twice are kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

import asyncpg

if TYPE_CHECKING:
    from infra.settings import Settings

CHUNK = 1 << 20  # 1 MiB: a row of blob_chunks, and what is in memory at a time
SETTING = "ADVISORY_DOCUMENT_STORE"


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


async def _claim(conn: asyncpg.Connection, d: Digest, content_type: str) -> bool:
    """The `blobs` row, in the caller's transaction: False when the bytes are kept already (or
    being kept by a transaction not yet committed, which this one waits for)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO blobs (sha256, size, content_type) VALUES ($1, $2, $3)"
            " ON CONFLICT (sha256) DO NOTHING RETURNING true",
            d.sha256,
            d.size,
            content_type,
        )
    )


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(
        self, conn: asyncpg.Connection, file: BinaryIO, d: Digest, content_type: str
    ) -> bool:
        if not await _claim(conn, d, content_type):
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
        _unchanged(h.hexdigest(), d)
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


# S3 lets every part of a multipart upload but the last be no smaller than 5 MiB; a part is
# what an upload holds in memory, so 8 MiB (s3transfer's own default) and one part at a time.
PART = 8 * CHUNK
# A DNS-compatible bucket name, the only kind every S3-compatible server accepts.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_OPTIONS = ("endpoint", "region", "addressing")


class StoreSettingError(ValueError):
    """ADVISORY_DOCUMENT_STORE is not a store this engine can use; the message names the
    setting and the rule."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""  # "" or "a/b/": every key is <prefix>sha256/<hex>
    endpoint: str | None = None  # None: AWS itself
    region: str | None = None  # None: boto3's own (AWS_REGION, AWS_DEFAULT_REGION, config)
    addressing: Literal["path", "virtual"] | None = None  # None: path with an endpoint


def s3_location(url: str) -> S3Location:
    """`s3://bucket[/prefix][?endpoint=http://host:port&region=…&addressing=path|virtual]`.

    Credentials never go in the URL (settings are printed and logged; a secret in one would
    leak): boto3 finds them as it always does, from AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), a profile or an instance role."""

    def refuse(rule: str) -> StoreSettingError:
        return StoreSettingError(f"{SETTING}: {rule}")

    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise refuse("'postgresql' or an s3://bucket[/prefix] URL")
    if "@" in parts.netloc:  # the URL is not echoed: what precedes the @ may be a secret
        raise refuse(
            "credentials do not go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if not BUCKET.fullmatch(parts.netloc):
        raise refuse(
            f"{parts.netloc!r} is not a bucket name (3 to 63 lower-case letters, digits, dots"
            " and hyphens, starting and ending with a letter or digit)"
        )
    if parts.fragment:
        raise refuse("a URL without a #fragment")
    prefix = parts.path.strip("/")
    if "//" in prefix:
        raise refuse(f"the prefix {prefix!r} has an empty segment")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise refuse(f"{parts.query!r} is not a query of name=value pairs") from None
    unknown = sorted(set(query) - set(S3_OPTIONS))
    if unknown:
        raise refuse(f"unknown option {unknown[0]!r} (known: {', '.join(S3_OPTIONS)})")
    options: dict[str, str] = {}
    for name, values in query.items():
        if len(values) != 1 or not values[0]:
            raise refuse(f"{name} is given once, with a value")
        options[name] = values[0]
    endpoint = options.get("endpoint")
    if endpoint is not None:
        e = urlsplit(endpoint)
        if e.scheme not in ("http", "https") or not e.hostname or "@" in e.netloc:
            raise refuse("endpoint is http(s)://host[:port], without credentials")
    addressing = options.get("addressing")
    if addressing not in (None, "path", "virtual"):
        raise refuse("addressing is path or virtual")
    return S3Location(
        bucket=parts.netloc,
        prefix=f"{prefix}/" if prefix else "",
        endpoint=endpoint,
        region=options.get("region"),
        addressing=addressing,  # type: ignore[arg-type]
    )


class S3Store:
    """The bytes in an S3-compatible bucket under `<prefix>sha256/<hex>`, the `blobs` row in
    PostgreSQL as with PostgresStore. boto3 is synchronous: each request runs in a thread, one
    part or one chunk at a time, so no file is ever whole in memory."""

    def __init__(self, location: S3Location) -> None:
        # Imported here: a deployment that keeps its documents in PostgreSQL never loads boto3.
        import boto3
        from botocore.config import Config

        self._bucket = location.bucket
        self._prefix = location.prefix
        addressing = location.addressing or ("path" if location.endpoint else "auto")
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint,
            region_name=location.region,
            config=Config(
                # S3-compatible servers (MinIO, Ceph, moto) answer on their own host name;
                # path style needs no DNS entry per bucket.
                s3={"addressing_style": addressing},
                retries={"mode": "standard"},
                # The API stores up to ten uploads at once while it serves downloads.
                max_pool_connections=20,
            ),
        )

    def key(self, sha256: str) -> str:
        return f"{self._prefix}sha256/{sha256}"

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._client, method), **kwargs)

    async def put(
        self, conn: asyncpg.Connection, file: BinaryIO, d: Digest, content_type: str
    ) -> bool:
        if not await _claim(conn, d, content_type):
            return False
        # The object is written before the caller commits. Should its transaction roll back,
        # the object stays in the bucket with no `blobs` row: a harmless orphan, since a key
        # named by the content's digest can only ever hold these bytes, and the next put of
        # them claims the row again and writes the same object.
        key = self.key(d.sha256)
        await asyncio.to_thread(file.seek, 0)
        part = await asyncio.to_thread(file.read, PART)
        h = hashlib.sha256(part)
        if len(part) < PART:  # one request
            _unchanged(h.hexdigest(), d)
            await self._call(
                "put_object", Bucket=self._bucket, Key=key, Body=part, ContentType=content_type
            )
            return True
        # Parts are sent as they are read and hashed; the object appears only when the
        # upload is completed, after the hash matched, so a file that changed under us leaves
        # nothing readable under its digest.
        upload = await self._call(
            "create_multipart_upload", Bucket=self._bucket, Key=key, ContentType=content_type
        )
        where = {"Bucket": self._bucket, "Key": key, "UploadId": upload["UploadId"]}
        try:
            done = []
            while part:
                n = len(done) + 1
                sent = await self._call("upload_part", **where, PartNumber=n, Body=part)
                done.append({"PartNumber": n, "ETag": sent["ETag"]})
                part = await asyncio.to_thread(file.read, PART)
                h.update(part)
            _unchanged(h.hexdigest(), d)
            await self._call("complete_multipart_upload", **where, MultipartUpload={"Parts": done})
        except BaseException:
            # An upload never completed keeps its parts (and is billed for them) until it is
            # aborted; should the abort fail too, the bucket's lifecycle rule removes them.
            with contextlib.suppress(Exception):
                await self._call("abort_multipart_upload", **where)
            raise
        return True

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        # One ranged GET a chunk: nothing is held open between chunks while a slow reader
        # takes its time (as PostgresStore takes a connection only for a chunk's row).
        key = self.key(sha256)
        at = start
        while end is None or at <= end:
            last = at + CHUNK - 1 if end is None else min(at + CHUNK - 1, end)
            try:
                got = await self._call(
                    "get_object", Bucket=self._bucket, Key=key, Range=f"bytes={at}-{last}"
                )
            except self._client.exceptions.ClientError as err:
                # No such object, or a start past its end: nothing to read, as PostgresStore
                # finds no row.
                if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "InvalidRange"):
                    return
                raise
            data = await asyncio.to_thread(got["Body"].read)
            if not data:
                return
            yield data
            at += len(data)
            if at >= int(got["ContentRange"].rpartition("/")[2]):  # bytes a-b/<size>
                return


def _unchanged(sha256: str, d: Digest) -> None:
    if sha256 != d.sha256:  # the file changed under us: keep nothing
        raise ValueError("the file changed while it was being stored")


def document_store(settings: Settings, pool: asyncpg.Pool) -> DocumentStore:
    """The store ADVISORY_DOCUMENT_STORE names: `postgresql` (the default) or an
    s3://bucket[/prefix]?endpoint=…&region=… URL (see s3_location). Refused, naming the
    setting, when it is neither."""
    value = settings.document_store.strip()
    if value == "postgresql":
        return PostgresStore(pool)
    return S3Store(s3_location(value))
