"""Documents live in the engine: uploaded and checked by content, stored once per digest,
attached to a request's rounds, and read only by those who may, in ranges, with every
download in the audit log."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from urllib.parse import quote

from db import queries as q
from domain.filetypes import DOCX, ODT, PDF, PNG, sniff
from domain.models import Stage
from infra.documents import document_store
from starter.documents import byte_range, check_name
from tests import factories as f
from tests.test_api import api, body, token, until_stage


def pdf(text: str = "Dự thảo", pad: int = 0) -> bytes:
    """A small, well-formed PDF (made here, never a committed binary)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text.encode('ascii', 'replace').decode()}) Tj ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        " /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    out += b"%" + b"x" * pad + b"\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer << /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


def docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def odt() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", ODT)
        z.writestr("content.xml", "<office:document-content/>")
    return buf.getvalue()


def test_types_are_judged_by_content_not_by_name():
    assert sniff(io.BytesIO(pdf())) == PDF
    assert sniff(io.BytesIO(docx())) == DOCX
    assert sniff(io.BytesIO(odt())) == ODT
    assert sniff(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)) == PNG
    assert sniff(io.BytesIO(b"MZ\x90\x00 a program")) is None
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("a.txt", "x")
    assert sniff(plain_zip) is None


def test_names_and_ranges():
    assert check_name("  Tờ trình số 12.pdf ") == "Tờ trình số 12.pdf"
    for bad, rule in [
        ("../etc/passwd", "is a path"),
        ("a\\b.pdf", "is a path"),
        ("a\x07b.pdf", "control characters"),
        ("", "1 to 200"),
    ]:
        try:
            check_name(bad)
        except Exception as err:
            assert rule in str(err)
        else:
            raise AssertionError(bad)
    assert byte_range(None, 100) is None
    assert byte_range("bytes=10-19", 100) == (10, 19)
    assert byte_range("bytes=90-", 100) == (90, 99)
    assert byte_range("bytes=-5", 100) == (95, 99)
    assert byte_range("bytes=10-1000", 100) == (10, 99)
    assert byte_range("bytes=100-", 100) == "unsatisfiable"
    assert byte_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole file


async def test_upload_attach_and_download_by_seat(env, worker, pool, settings, registry):
    experts = await registry.add(3)
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    other_code = f"B{uuid.uuid4().hex[:6].upper()}"
    other = await token(pool, "agency", other_code)
    coordinator = await token(pool, "coordinator", "VP01")
    by_code = {e.code: await token(pool, "expert", e.code) for e in experts}
    draft, letter = pdf("Du thao de an", pad=3000), docx()
    async with api(env, pool, settings, worker) as http:
        async with pool.acquire() as conn:
            blobs_before = await conn.fetchval("SELECT count(*) FROM blobs")

        # Refused by content, by size, by name: 422 naming the rule, nothing stored.
        for files, rule in [
            ([("file", ("de-an.pdf", b"MZ\x90\x00 a program", "application/pdf"))], "not a PDF"),
            ([("file", ("trong.pdf", b"", "application/pdf"))], "is empty"),
            ([("file", ("../../x.pdf", draft, "application/pdf"))], "is a path"),
            (
                [
                    ("file", ("Dự thảo.pdf", draft, "application/pdf")),
                    ("file", ("b.pdf", b"not a pdf", "application/pdf")),
                ],
                "b.pdf is not a PDF",
            ),
        ]:
            r = await http.post("/documents", files=files, headers=agency)
            assert r.status_code == 422 and rule in r.json()["detail"], r.text
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM blobs") == blobs_before
            assert not await conn.fetchval(
                "SELECT count(*) FROM documents WHERE uploaded_by = $1", f"agency:{code}"
            )

        r = await http.post(
            "/documents",
            files=[
                ("file", ("Dự thảo đề án.pdf", draft, "application/octet-stream")),
                ("file", ("Tờ trình.docx", letter, "application/octet-stream")),
            ],
            headers=agency,
        )
        assert r.status_code == 201, r.text
        uploaded = r.json()
        assert [(d["name"], d["content_type"], d["size"]) for d in uploaded] == [
            ("Dự thảo đề án.pdf", PDF, len(draft)),
            ("Tờ trình.docx", DOCX, len(letter)),
        ]
        assert uploaded[0]["sha256"] == hashlib.sha256(draft).hexdigest()
        # A digest given for a file must be the file's.
        r = await http.post(
            "/documents",
            files=[("file", ("Dự thảo.pdf", draft, "application/pdf"))],
            data={"sha256": "ab" * 32},
            headers=agency,
        )
        assert r.status_code == 422 and "sha256: does not match the bytes" in r.json()["detail"]
        # The same bytes again: a second document, one stored copy.
        again = await http.post(
            "/documents",
            files=[("file", ("bản sao.pdf", draft, "application/pdf"))],
            headers=agency,
        )
        assert again.status_code == 201
        async with pool.acquire() as conn:
            copies = await conn.fetchval(
                "SELECT count(*) FROM blobs WHERE sha256 = $1", uploaded[0]["sha256"]
            )
        assert copies == 1

        # Another agency cannot attach these uploads.
        theirs = f.submission(
            registry.field, agency={"code": other_code}, documents=[{"id": uploaded[0]["id"]}]
        )
        r = await http.post("/requests", json=body(theirs), headers=other)
        assert r.status_code == 409, r.text
        assert f"documents.0.id: no upload {uploaded[0]['id']} of yours" in r.json()["detail"]

        sub = f.submission(
            registry.field,
            agency={"code": code},
            documents=[{"id": d["id"]} for d in uploaded],
        )
        r = await http.post("/requests", json=body(sub), headers=agency)
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]
        await until_stage(http, rid, agency, "screening")
        async with pool.acquire() as conn:
            rows = await q.request_documents(conn, rid)
        assert [(d["id"], d["round"]) for d in rows] == [(d["id"], 0) for d in uploaded]

        url = f"/requests/{rid}/documents/{uploaded[0]['id']}"
        r = await http.get(url, headers=agency)
        assert r.status_code == 200 and r.content == draft
        assert r.headers["content-type"] == PDF
        assert r.headers["etag"] == f'"{uploaded[0]["sha256"]}"'
        assert (
            f"filename*=UTF-8''{quote('Dự thảo đề án.pdf', safe='')}"
            in (r.headers["content-disposition"])
        )
        part = await http.get(url, headers={**agency, "Range": "bytes=100-1199"})
        assert part.status_code == 206 and part.content == draft[100:1200]
        assert part.headers["content-range"] == f"bytes 100-1199/{len(draft)}"
        beyond = await http.get(url, headers={**agency, "Range": f"bytes={len(draft)}-"})
        assert beyond.status_code == 416

        # Another agency, an expert not seated: the same 404 as no document at all.
        missing = await http.get(f"/requests/{rid}/documents/D-000000000000", headers=agency)
        for headers in (other, by_code[experts[0].code]):
            r = await http.get(url, headers=headers)
            assert r.status_code == 404 and r.json()["detail"] == (
                f"no document {uploaded[0]['id']}"
            )
        assert missing.status_code == 404

        # Seated experts read it; once their seat ends, no more.
        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=coordinator
        )
        assert r.status_code == 200, r.text
        seen = await until_stage(
            http, rid, coordinator, "review", ready=lambda s: len(s["assignments"]) == 3
        )
        member = seen["assignments"][1]["expert_code"]
        assert (await http.get(url, headers=by_code[member])).content == draft
        r = await http.post(
            f"/requests/{rid}/assignment/decline",
            json={"reason": "Bận công tác"},
            headers=by_code[member],
        )
        assert r.status_code == 200, r.text
        assert (await http.get(url, headers=by_code[member])).status_code == 404

        trail = (await http.get(f"/requests/{rid}/timeline", headers=coordinator)).json()
        downloads = [e for e in trail if e["action"] == "document_downloaded"]
        assert [e["actor"] for e in downloads] == [
            f"agency:{code}",
            f"agency:{code}",
            f"expert:{member}",
        ]
        assert downloads[1]["details"]["range"] == "100-1199"


async def test_the_approved_conclusion_is_issued_as_a_numbered_pdf(
    env, worker, policy, registry, pool, settings
):
    """Decree 30's format, in the Union's letterhead, signed with the approver's registered
    name and title; numbered once, on approval (a returned draft takes no number); stored
    as a document of the request, in the audit log, attached to the delivery e-mail and
    linked from the webhook payload."""
    import pypdf

    from activities.notify import NotificationActivities
    from domain.messages import ApproveInput, ReturnConclusionInput
    from starter import service
    from tests.test_lifecycle import accept_and_submit, review_to_synthesis, start, until
    from workflows.review import ReviewRequestWorkflow

    rid, handle = await start(env, worker, policy, registry)
    state = await review_to_synthesis(env, rid, handle)
    for a in state.assignments:
        await accept_and_submit(env, rid, a.expert_code)
    chair = next(a.expert_code for a in state.assignments if a.role == "chair")
    await until(lambda s: s.stage == Stage.synthesis, handle)
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await service.request_update(
        env.client,
        rid,
        ReviewRequestWorkflow.return_conclusion,
        ReturnConclusionInput(actor=f.COORDINATOR, comments="Bổ sung kiến nghị về nguồn vốn."),
    )
    async with pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT 1 FROM conclusion_numbers WHERE request_id = $1", rid
        )
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.draft_conclusion, f.draft(chair)
    )
    await service.request_update(
        env.client, rid, ReviewRequestWorkflow.approve_conclusion, ApproveInput(actor=f.COORDINATOR)
    )
    async with pool.acquire() as conn:
        issued = await conn.fetchrow("SELECT * FROM conclusion_numbers WHERE request_id = $1", rid)
        doc = await conn.fetchrow("SELECT * FROM documents WHERE id = $1", issued["document_id"])
        approved = await conn.fetchrow(
            "SELECT details FROM audit_log WHERE request_id = $1"
            " AND action = 'conclusion_approved'",
            rid,
        )
        delivered = await conn.fetchrow(
            "SELECT id FROM outbox WHERE request_id = $1 AND event = 'conclusion_delivered'", rid
        )
        row = await q.outbox_row(conn, delivered["id"])
    assert issued["number"] == f"{issued['seq']}/LHH-TVPB"
    assert (doc["kind"], doc["content_type"]) == ("conclusion", PDF)
    assert approved["details"]["sha256"] == doc["sha256"]
    assert row["payload"]["document"] == doc["id"]
    assert row["payload"]["download"] == f"/requests/{rid}/documents/{doc['id']}"

    store_bytes = b"".join([c async for c in document_store(settings, pool).read(doc["sha256"])])
    assert hashlib.sha256(store_bytes).hexdigest() == doc["sha256"]
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(store_bytes)).pages)
    text = " ".join(text.split())
    for expected in (
        "LIÊN HIỆP CÁC HỘI KHOA HỌC VÀ KỸ THUẬT TỈNH BẮC GIANG",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        f"Số: {issued['number']}",
        "Sở Giao thông Vận tải tỉnh Bắc Giang",
        "Nguyễn Thị Lan",
        "Cần bổ sung đánh giá tác động môi trường.",
    ):
        assert expected in text, expected
    # Three experts made the same point: the agency reads it once.
    assert text.count("Cần bổ sung đánh giá tác động môi trường.") == 1

    acts = NotificationActivities(pool, settings)
    message = acts._email(row, await acts._attachment(row))
    [attached] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert attached.get_filename() == doc["name"]
    assert attached.get_payload(decode=True) == store_bytes


async def test_a_submission_and_a_supplement_bring_their_files_as_multipart(
    env, worker, pool, settings, registry
):
    await registry.add(3)
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    coordinator = await token(pool, "coordinator", "VP01")
    sub = body(f.submission(registry.field, agency={"code": code}))
    del sub["documents"]
    draft = pdf("Du thao", pad=500)
    parts = {"json": (None, json.dumps(sub, ensure_ascii=False), "text/plain")}
    files = [("file", ("Dự thảo kế hoạch.pdf", draft, "application/pdf"))]
    keyed = {**agency, "Idempotency-Key": f"multipart-{code}"}
    async with api(env, pool, settings, worker) as http:
        bad = await http.post(
            "/requests",
            files=[*parts.items(), ("file", ("x.pdf", b"nope", "application/pdf"))],
            headers=agency,
        )
        assert bad.status_code == 422 and "x.pdf is not a PDF" in bad.json()["detail"]
        r = await http.post("/requests", files=[*parts.items(), *files], headers=keyed)
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]
        # The same call again (its answer lost): the first answer, one request, one upload.
        again = await http.post("/requests", files=[*parts.items(), *files], headers=keyed)
        assert again.status_code == 201 and again.json() == r.json(), again.text
        assert again.headers["idempotency-replayed"] == "true"
        await until_stage(http, rid, agency, "screening")
        r = await http.post(
            f"/requests/{rid}/screening",
            json={"decision": "supplement", "note": "Bổ sung tờ trình"},
            headers=coordinator,
        )
        assert r.status_code == 200, r.text
        r = await http.post(
            f"/requests/{rid}/supplement",
            files=[
                ("json", (None, json.dumps({"note": "Gửi tờ trình"}), "text/plain")),
                ("file", ("Tờ trình.docx", docx(), "application/octet-stream")),
            ],
            headers=agency,
        )
        assert r.status_code == 200, r.text
        seen = (await http.get(f"/requests/{rid}", headers=agency)).json()
    assert [(d["name"], d["round"], d["kind"]) for d in seen["documents"]] == [
        ("Dự thảo kế hoạch.pdf", 0, "submitted"),
        ("Tờ trình.docx", 1, "submitted"),
    ]
    async with pool.acquire() as conn:
        uploads = await conn.fetchval(
            "SELECT count(*) FROM documents WHERE uploaded_by = $1", f"agency:{code}"
        )
        told = await conn.fetchval(
            "SELECT payload FROM outbox WHERE request_id = $1 AND event = 'supplement_received'",
            rid,
        )
    assert uploads == 2
    # Screening is told what changed.
    assert (told["round"], told["documents"]) == (1, "Tờ trình.docx")
