"""One contract for every document store: PostgreSQL's, and S3's against a real S3-compatible
server (moto's, run as its own process on a free port): files of several MiB put and read back
a chunk at a time, byte ranges across chunk and part boundaries, the same bytes kept once, a
file that changed under the store refused, and ADVISORY_DOCUMENT_STORE refused when it names
no store."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import pytest

from infra.documents import (
    CHUNK,
    PART,
    S3Location,
    S3Store,
    StoreSettingError,
    digest,
    document_store,
    s3_location,
)
from infra.settings import Settings

BUCKET = "advisory-documents"
# Several MiB, past one part: the upload is multipart and the read crosses chunk boundaries.
LARGE = PART + 3 * CHUNK + 517
SMALL = 3 * CHUNK + 5  # one PUT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in a process of its own, with one bucket; credentials through the
    standard AWS variables, as a deployment gives them."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="test-key", AWS_SECRET_ACCESS_KEY="test-secret")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def s3_client(endpoint: str):
    """A client of the test's own, to look into the bucket behind the store's back."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


class Backend:
    """A store, and how to see what it keeps outside its interface."""

    def __init__(self, kind: str, pool, endpoint: str | None) -> None:
        self.kind = kind
        self.pool = pool
        self.endpoint = endpoint
        self.prefix = f"t-{uuid.uuid4().hex[:8]}"  # a fresh corner of the bucket per test
        url = (
            "postgresql"
            if kind == "postgresql"
            else f"s3://{BUCKET}/{self.prefix}?endpoint={endpoint}&region=us-east-1"
        )
        self.store = document_store(Settings(document_store=url), pool)

    async def copies(self, sha256: str) -> int:
        """How many times the bytes are kept (objects, or sets of chunk rows)."""
        if self.kind == "postgresql":
            async with self.pool.acquire() as conn:
                return await conn.fetchval(
                    "SELECT count(*) FROM blob_chunks WHERE sha256 = $1 AND n = 0", sha256
                )
        listed = s3_client(self.endpoint).list_objects_v2(Bucket=BUCKET, Prefix=self.prefix)
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert set(keys) <= {f"{self.prefix}/sha256/{sha256}"}, keys
        return len(keys)


@pytest.fixture(params=["postgresql", "s3"])
def backend(request, pool) -> Backend:
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    return Backend(request.param, pool, endpoint)


async def put(backend: Backend, data: bytes) -> bool:
    file = io.BytesIO(data)
    d = await digest(file)
    async with backend.pool.acquire() as conn, conn.transaction():
        return await backend.store.put(conn, file, d, "application/pdf")


async def read(backend: Backend, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    chunks = [c async for c in backend.store.read(sha256, start, end)]
    assert all(0 < len(c) <= CHUNK for c in chunks)  # streamed, never whole
    return b"".join(chunks)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one-request", "multipart"])
async def test_put_then_read_back(backend: Backend, size: int):
    data = os.urandom(size)
    sha256 = hashlib.sha256(data).hexdigest()
    assert await put(backend, data) is True
    back = await read(backend, sha256)
    assert len(back) == size and hashlib.sha256(back).hexdigest() == sha256
    async with backend.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT size, content_type FROM blobs WHERE sha256 = $1", sha256)
    assert (row["size"], row["content_type"]) == (size, "application/pdf")
    if backend.kind == "s3":
        head = s3_client(backend.endpoint).head_object(
            Bucket=BUCKET, Key=f"{backend.prefix}/sha256/{sha256}"
        )
        assert head["ContentLength"] == size
        # A multipart object's ETag counts its parts: "<md5 of the parts' md5s>-<n>".
        parts = head["ETag"].strip('"').partition("-")[2]
        assert parts == ("2" if size > PART else "")


async def test_ranges(backend: Backend):
    data = os.urandom(LARGE)
    sha256 = hashlib.sha256(data).hexdigest()
    await put(backend, data)
    for start, end in [
        (0, 0),
        (0, 99),  # the first bytes
        (CHUNK - 10, CHUNK + 9),  # across a chunk boundary
        (CHUNK - 1, 3 * CHUNK),  # across several
        (PART - 5, PART + 5),  # across the multipart upload's first part
        (LARGE - 1, LARGE - 1),  # the last byte
        (LARGE - 100, None),  # to the end
        (5, None),
        (2 * CHUNK, 2 * CHUNK + CHUNK - 1),  # exactly one chunk
    ]:
        want = data[start : None if end is None else end + 1]
        assert await read(backend, sha256, start, end) == want, (start, end)
    assert await read(backend, sha256, LARGE, None) == b""  # past the end: nothing
    assert await read(backend, "0" * 64) == b""  # nothing kept under that digest


async def test_the_same_bytes_are_kept_once(backend: Backend):
    data = os.urandom(SMALL)
    sha256 = hashlib.sha256(data).hexdigest()
    assert await put(backend, data) is True
    assert await put(backend, data) is False
    assert await backend.copies(sha256) == 1
    async with backend.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM blobs WHERE sha256 = $1", sha256) == 1
    assert await read(backend, sha256) == data


async def test_a_rolled_back_put_can_be_put_again(backend: Backend):
    """The upload's transaction rolled back (a sibling file was refused): no `blobs` row is
    left, so the same bytes are stored again in full by the next put. S3 keeps the first
    object as a harmless orphan under the same digest, overwritten with the same bytes."""
    data = os.urandom(SMALL)
    file = io.BytesIO(data)
    d = await digest(file)
    async with backend.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await backend.store.put(conn, file, d, "application/pdf") is True
        await tx.rollback()
    assert await put(backend, data) is True
    assert await read(backend, d.sha256) == data
    assert await backend.copies(d.sha256) == 1


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one-request", "multipart"])
async def test_a_file_changed_under_the_store_keeps_nothing(backend: Backend, size: int):
    data = os.urandom(size)
    file = io.BytesIO(data)
    d = await digest(file)
    file.seek(size - 1)
    file.write(b"\0" if data[-1] else b"\1")  # the last part differs from what was digested
    with pytest.raises(ValueError, match="changed"):
        async with backend.pool.acquire() as conn, conn.transaction():
            await backend.store.put(conn, file, d, "application/pdf")
    assert await backend.copies(d.sha256) == 0
    assert await read(backend, d.sha256) == b""
    if backend.kind == "s3":  # the multipart upload was aborted, not left to be billed
        uploads = s3_client(backend.endpoint).list_multipart_uploads(
            Bucket=BUCKET, Prefix=backend.prefix
        )
        assert not uploads.get("Uploads")


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("ADVISORY_DOCUMENT_STORE", raising=False)
    assert Settings().document_store == "postgresql"
    monkeypatch.setenv("ADVISORY_DOCUMENT_STORE", "s3://docs?region=eu-west-1")
    assert Settings().document_store == "s3://docs?region=eu-west-1"


def test_s3_urls():
    assert s3_location("s3://docs") == S3Location(bucket="docs")
    assert s3_location(
        "s3://docs.example/advisory/prod/?endpoint=https://s3.example:9000&region=hn-1"
        "&addressing=virtual"
    ) == S3Location(
        bucket="docs.example",
        prefix="advisory/prod/",
        endpoint="https://s3.example:9000",
        region="hn-1",
        addressing="virtual",
    )


@pytest.mark.parametrize(
    "value, rule",
    [
        ("", "'postgresql' or an s3://bucket"),
        ("postgres", "'postgresql' or an s3://bucket"),
        ("file:///srv/documents", "'postgresql' or an s3://bucket"),
        ("s3://", "is not a bucket name"),
        ("s3://Documents", "is not a bucket name"),
        ("s3://docs:9000", "is not a bucket name"),
        ("s3://docs/a//b", "empty segment"),
        ("s3://docs#x", "fragment"),
        ("s3://docs?colour=red", "unknown option 'colour'"),
        ("s3://docs?region", "is not a query"),
        ("s3://docs?region=", "region is given once, with a value"),
        ("s3://docs?region=a&region=b", "region is given once"),
        ("s3://docs?endpoint=localhost:9000", "endpoint is http(s)://host[:port]"),
        ("s3://docs?endpoint=ftp://h", "endpoint is http(s)://host[:port]"),
        ("s3://docs?addressing=dns", "addressing is path or virtual"),
    ],
)
def test_a_malformed_setting_is_refused_naming_it(pool, value: str, rule: str):
    with pytest.raises(StoreSettingError) as refused:
        document_store(Settings(document_store=value), pool)
    assert str(refused.value).startswith("ADVISORY_DOCUMENT_STORE: ")
    assert rule in str(refused.value)


@pytest.mark.parametrize(
    "value", ["s3://AKIAEXAMPLE:hunter2@docs", "s3://docs?endpoint=http://AKIA:hunter2@h:9000"]
)
def test_credentials_in_the_url_are_refused_and_not_repeated(pool, value: str):
    with pytest.raises(StoreSettingError, match="ADVISORY_DOCUMENT_STORE") as refused:
        document_store(Settings(document_store=value), pool)
    assert "hunter2" not in str(refused.value)


async def test_the_api_keeps_uploads_where_the_setting_says(env, pool, settings, s3_endpoint):
    """The API makes its store from the setting: an upload lands in the bucket."""
    import httpx

    from starter.api import create_app
    from tests.test_api import token
    from tests.test_documents import pdf

    prefix = f"api-{uuid.uuid4().hex[:8]}"
    s3 = settings.model_copy(
        update={"document_store": f"s3://{BUCKET}/{prefix}?endpoint={s3_endpoint}"}
    )
    app = create_app(s3, client=env.client, pool=pool, task_queue=f"tq-{uuid.uuid4().hex}")
    content = pdf(f"S3 {prefix}", pad=CHUNK)
    async with app.router.lifespan_context(app):
        assert isinstance(app.state.store, S3Store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            r = await http.post(
                "/documents",
                headers=await token(pool, "agency", f"S3{uuid.uuid4().hex[:6].upper()}"),
                files=[("file", ("Dự thảo.pdf", content, "application/pdf"))],
            )
    assert r.status_code == 201, r.text
    sha256 = r.json()[0]["sha256"]
    assert sha256 == hashlib.sha256(content).hexdigest()
    got = s3_client(s3_endpoint).get_object(Bucket=BUCKET, Key=f"{prefix}/sha256/{sha256}")
    assert got["Body"].read() == content
