"""Documents as people handle them: an upload checked and stored, uploaded documents named in a
submission or supplement, and a download for whoever may read it. The API and the CLI both
come through here."""

from __future__ import annotations

import base64
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import quote

import asyncpg
from fastapi.responses import StreamingResponse

from db import queries as q
from domain.filetypes import ALLOWED, KINDS, sniff
from domain.models import Document
from infra.documents import DocumentStore, digest
from infra.settings import Settings
from starter.service import ActionError

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    file: int = 50 * MiB
    request: int = 200 * MiB
    files: int = 30

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the deployment configures (ADVISORY_DOCUMENT_MAX_*)."""
        return cls(
            file=settings.document_max_file_mib * MiB,
            request=settings.document_max_request_mib * MiB,
            files=settings.document_max_files,
        )


def check_name(name: str) -> str:
    """A file name as people see it (Vietnamese kept, NFC), never a path."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > 200:
        raise ActionError("name: a file name has 1 to 200 characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ActionError("name: a file name may not contain control characters")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ActionError(f"name: {name!r} is a path; give the file's name alone")
    return name


async def upload(
    pool: asyncpg.Pool,
    store: DocumentStore,
    file: BinaryIO,
    name: str,
    uploaded_by: str,
    *,
    limits: Limits = Limits(),
    sha256: str | None = None,
    reuse_for: str | None = None,
) -> Document:
    """Stores one file as an upload of `uploaded_by` (role:code), not yet part of a request.
    Refused, with nothing stored: an empty or over-size file, content that is not an allowed
    type whatever its name, a declared digest that is not the bytes'. `reuse_for` (a request
    id): the same file, name and uploader already uploaded, free or of that request, is that
    upload again — a retried call names the same document."""
    name = check_name(name)
    d = await digest(file)
    if d.size == 0:
        raise ActionError(f"file: {name} is empty")
    if d.size > limits.file:
        raise ActionError(
            f"file: {name} is {d.size / MiB:.1f} MiB; a file may be at most "
            f"{limits.file / MiB:g} MiB"
        )
    kind = sniff(file)
    if kind is None:
        raise ActionError(f"file: {name} is not a {ALLOWED} file (judged by its content)")
    if sha256 is not None and sha256.lower() != d.sha256:
        raise ActionError(f"sha256: does not match the bytes of {name} (they are {d.sha256})")
    if reuse_for is not None:
        async with pool.acquire() as conn:
            same = await conn.fetchval(
                "SELECT id FROM documents WHERE uploaded_by = $1 AND sha256 = $2 AND name = $3"
                " AND (request_id IS NULL OR request_id = $4) ORDER BY uploaded_at LIMIT 1",
                uploaded_by,
                d.sha256,
                name,
                reuse_for,
            )
        if same is not None:
            return Document(id=same, name=name, sha256=d.sha256, size=d.size, content_type=kind)
    doc_id = f"D-{secrets.token_hex(6).upper()}"
    async with pool.acquire() as conn, conn.transaction():
        await store.put(conn, file, d, kind)
        await conn.execute(
            """
            INSERT INTO documents (id, name, sha256, size, content_type, stored, uploaded_by,
                uploaded_at)
            VALUES ($1, $2, $3, $4, $5, true, $6, $7)
            """,
            doc_id,
            name,
            d.sha256,
            d.size,
            kind,
            uploaded_by,
            datetime.now(UTC),
        )
    return Document(id=doc_id, name=name, sha256=d.sha256, size=d.size, content_type=kind)


async def discard(pool: asyncpg.Pool, ids: list[str]) -> None:
    """Uploads of a call that was refused as a whole: gone, with any bytes no other document
    keeps."""
    if not ids:
        return
    async with pool.acquire() as conn, conn.transaction():
        hashes = await conn.fetch(
            "DELETE FROM documents WHERE id = ANY($1::text[]) AND request_id IS NULL"
            " RETURNING sha256",
            ids,
        )
        for r in hashes:
            if not await conn.fetchval("SELECT 1 FROM documents WHERE sha256 = $1", r["sha256"]):
                await conn.execute("DELETE FROM blob_chunks WHERE sha256 = $1", r["sha256"])
                await conn.execute("DELETE FROM blobs WHERE sha256 = $1", r["sha256"])


# --- downloads -------------------------------------------------------------------------------

BINARY = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in KINDS}
Span = tuple[int, int] | None


def byte_range(header: str | None, size: int) -> Span | str:
    """One range of `Range: bytes=a-b` (a-, -n too) as (first, last); None for the whole
    file (no header, or one this does not serve: several ranges); "unsatisfiable" past the
    end."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header.removeprefix("bytes=").strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # the last n bytes
        n = int(last)
        return "unsatisfiable" if n == 0 else (max(0, size - n), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


async def log_download(conn, request_id: str, doc, actor: str, span: Span) -> None:
    await q.insert_audit(
        conn,
        key=f"download:{secrets.token_hex(8)}",
        request_id=request_id,
        at=datetime.now(UTC),
        actor=actor,
        action="document_downloaded",
        stage=None,
        details={
            "document": doc["id"],
            "name": doc["name"],
            "sha256": doc["sha256"],
            **({"range": f"{span[0]}-{span[1]}"} if span else {}),
        },
    )


def disposition(name: str) -> str:
    """attachment, with the name in UTF-8 (RFC 6266/5987) and an ASCII fallback."""
    ascii_name = (
        unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "document"
    ).replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def streamed(store: DocumentStore, doc, span: Span) -> StreamingResponse:
    size = doc["size"]
    start, end = span if span else (0, size - 1)
    headers = {
        "Content-Length": str(end - start + 1),
        "Content-Disposition": disposition(doc["name"]),
        "ETag": f'"{doc["sha256"]}"',
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(doc['sha256'])).decode()}:",
        "Accept-Ranges": "bytes",
    }
    if span:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(
        store.read(doc["sha256"], start, end),
        status_code=206 if span else 200,
        media_type=doc["content_type"],
        headers=headers,
    )
