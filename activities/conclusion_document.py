"""The approved conclusion issued as a document of its request: numbered from the Union's
yearly sequence, rendered as a PDF in Decree 30/2020/NĐ-CP's format, stored, and recorded in
the approval's own transaction. Issued once per request: a retry finds what was issued."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from activities.conclusion_pdf import render_conclusion_pdf
from activities.render import LABELS, LOCAL
from domain.documents import ConclusionDocument
from domain.messages import ConclusionRecord
from domain.policy import UnionIdentity
from infra.documents import DocumentStore, digest

_NUMBERING_LOCK = 0x736F6B79  # "soky": one number at a time, across every worker

SUBJECTS = {
    "advisory": "Kết quả tư vấn",
    "critique": "Kết quả phản biện",
    "social_assessment": "Kết quả giám định xã hội",
}


@dataclass(frozen=True)
class Issued:
    document_id: str
    number: str
    sha256: str
    name: str


async def issue(
    conn: asyncpg.Connection,
    store: DocumentStore,
    union: UnionIdentity,
    request_id: str,
    conclusion: ConclusionRecord,
    signer_title: str,
    at: datetime,
) -> Issued:
    """In the caller's transaction (the approval's)."""
    done = await conn.fetchrow(
        "SELECT n.number, n.document_id, d.sha256, d.name FROM conclusion_numbers n"
        " JOIN documents d ON d.id = n.document_id WHERE n.request_id = $1",
        request_id,
    )
    if done is not None:
        return Issued(done["document_id"], done["number"], done["sha256"], done["name"])
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _NUMBERING_LOCK)
    on = at.astimezone(LOCAL).date()
    seq = await conn.fetchval(
        "SELECT coalesce(max(seq), 0) + 1 FROM conclusion_numbers WHERE year = $1", on.year
    )
    req = await conn.fetchrow(
        "SELECT r.kind, r.title, a.name AS agency FROM requests r"
        " JOIN agencies a ON a.code = r.agency_code WHERE r.id = $1",
        request_id,
    )
    points = await conn.fetch(
        "SELECT comments_for_agency FROM opinions WHERE request_id = $1 ORDER BY submitted_at",
        request_id,
    )
    page = ConclusionDocument.for_union(
        union,
        number=seq,
        signer_registered_title=signer_title,
        date=on,
        subject=f"{SUBJECTS.get(req['kind'], 'Kết quả')} đối với {req['title']}",
        addressee=req["agency"],
        recommendation=LABELS["vi"][conclusion.recommendation.value],
        text=conclusion.text,
        # Each point once, in the order the experts made it.
        points=list(
            dict.fromkeys(p["comments_for_agency"] for p in points if p["comments_for_agency"])
        ),
        signer_name=conclusion.approved_by or "",
    )
    pdf = render_conclusion_pdf(page)
    file = io.BytesIO(pdf)
    d = await digest(file)
    await store.put(conn, file, d, "application/pdf")
    document_id = f"D-{secrets.token_hex(6).upper()}"
    name = f"Kết luận {page.number.replace('/', '-')}.pdf"
    round_ = await conn.fetchval(
        "SELECT coalesce(max(round), 0) FROM documents WHERE request_id = $1", request_id
    )
    await conn.execute(
        """
        INSERT INTO documents (id, name, sha256, size, content_type, stored, uploaded_by,
            uploaded_at, request_id, round, kind)
        VALUES ($1, $2, $3, $4, 'application/pdf', true, 'system', $5, $6, $7, 'conclusion')
        """,
        document_id,
        name,
        d.sha256,
        d.size,
        at,
        request_id,
        round_,
    )
    await conn.execute(
        "INSERT INTO conclusion_numbers (request_id, year, seq, number, document_id, issued_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        request_id,
        on.year,
        seq,
        page.number,
        document_id,
        at,
    )
    return Issued(document_id, page.number, d.sha256, name)
