"""The HTTP API, driven only through HTTP by an agency, a coordinator and the experts: the whole
lifecycle, each authorisation rule with a party that must be refused, idempotency keys, and
problem details. Every answer any of these tests gets is checked against the app's own OpenAPI
document (`Contract`)."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from db import queries as q
from db.liveness import ProcessLock
from db.pool import create_pool
from domain.models import Expert
from starter.api import create_app
from starter.api.auth import create_token
from starter.api.errors import MEDIA
from starter.api.views import UTC_INSTANT
from tests import factories as f
from tests.conftest import advisory, register_agency
from tests.test_deadlines import open_review

# Anything that reads as an instant ("2026-03-09T23:59:59+07:00"), wherever it is in a body.
INSTANT_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class Contract:
    """Checks each answer against the app's OpenAPI document: its status is one the operation
    declares, with the declared media type, a body valid against the declared schema
    (schemathesis's response validation), and every instant in it, free-form fields included,
    in UTC with `Z`."""

    def __init__(self, document: dict[str, Any]) -> None:
        import schemathesis

        self.document = document
        self.schema = schemathesis.openapi.from_dict(document)
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        method, path = response.request.method, response.request.url.path
        template = next((t for pattern, t in self.templates if pattern.match(path)), None)
        operation = self.document["paths"].get(template or "", {}).get(method.lower())
        if operation is None:
            # The documentation pages, and the router's own answers (no such path or method).
            documented = path in ("/docs", "/redoc", "/openapi.json", "/health")
            if documented or path.startswith("/docs/"):
                return
            assert response.status_code in (404, 405), f"{method} {path} is not documented"
            assert response.headers["content-type"] == MEDIA
            return
        declared = operation["responses"]
        status = str(response.status_code)
        assert status in declared, f"{method} {path}: {status} is not declared: {response.text}"
        media = response.headers.get("content-type", "").split(";")[0]
        content = declared[status].get("content", {})
        if not content and not response.content:
            return  # an answer without a body, declared so (416)
        assert media in content, f"{method} {path}: {media}"
        if not media.endswith("json"):
            return  # a document's bytes, declared as binary
        self.schema[template][method].validate_response(self.answered(response))
        assert_instants_in_utc(response.json())

    @staticmethod
    def answered(response: httpx.Response):
        """The answer as schemathesis reads it. Built here because its own conversion reads
        the request's body again, which a streamed one no longer has; the body sent plays no
        part in judging the answer."""
        import requests
        import schemathesis

        sent = response.request
        return schemathesis.Response(
            status_code=response.status_code,
            headers={k: response.headers.get_list(k) for k in response.headers.keys()},
            content=response.content,
            request=requests.Request(sent.method, str(sent.url), dict(sent.headers)).prepare(),
            elapsed=response.elapsed.total_seconds(),
            verify=True,
        )


def assert_instants_in_utc(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            assert_instants_in_utc(v)
    elif isinstance(value, list):
        for v in value:
            assert_instants_in_utc(v)
    elif isinstance(value, str) and INSTANT_LIKE.match(value):
        assert re.match(UTC_INSTANT, value), f"{value} is not in UTC with Z"


@asynccontextmanager
async def api(env, pool, settings, worker):
    app = create_app(settings, client=env.client, pool=pool, task_queue=worker.task_queue)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://api",
            event_hooks={"response": [Contract(app.openapi())]},
        ) as http:
            http.app_state = app.state  # a test may change the policy the API reads
            yield http


async def token(pool, role: str, subject: str) -> dict[str, str]:
    """A token for a registered party: an agency or expert this test names is registered
    first (a coordinator is one of the sample registry's)."""
    async with pool.acquire() as conn:
        if role == "agency" and await q.get_agency(conn, subject) is None:
            await register_agency(pool, subject)
        if role == "expert" and await q.get_expert(conn, subject) is None:
            await q.upsert_expert(
                conn,
                Expert(
                    code=subject,
                    name=f"Chuyên gia {subject}",
                    email=f"{subject.lower()}@experts.example.vn",
                    organisation="Viện Nghiên cứu",
                    member_association="Hội Khoa học",
                    fields=["khac"],
                ),
            )
    _, t = await create_token(pool, role, subject)
    return {"Authorization": f"Bearer {t}"}


def body(submission) -> dict:
    return submission.model_dump(mode="json")


async def until_stage(http, rid, headers, stage, tries=200, ready=lambda seen: True):
    import asyncio

    for _ in range(tries):
        r = await http.get(f"/requests/{rid}", headers=headers)
        # 404 until the intake is recorded in PostgreSQL
        if r.status_code == 200 and r.json()["stage"] == stage and ready(r.json()):
            return r.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{rid} never reached {stage}: {r.json()}")


async def test_a_whole_lifecycle_through_http_as_three_parties(
    env, worker, pool, settings, registry
):
    experts = await registry.add(3)
    agency_code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", agency_code)
    coordinator = await token(pool, "coordinator", "VP01")
    by_code = {e.code: await token(pool, "expert", e.code) for e in experts}
    sub = f.submission(registry.field, agency={"code": agency_code, "name": "Sở Tư pháp"})

    async with api(env, pool, settings, worker) as http:
        r = await http.post("/requests", json=body(sub), headers=agency)
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]
        await until_stage(http, rid, agency, "screening")

        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=coordinator
        )
        assert r.status_code == 200, r.text
        seen = await until_stage(
            http, rid, coordinator, "review", ready=lambda j: len(j["assignments"]) == 3
        )
        assert {a["expert_code"] for a in seen["assignments"]} == set(by_code)
        chair = next(a["expert_code"] for a in seen["assignments"] if a["role"] == "chair")
        # The review's deadline moves: the audit details and the experts' notices name the
        # old and new dates, which the API answers in UTC like every other instant.
        r = await http.post(
            f"/requests/{rid}/extend",
            json={"days": 3, "reason": "Chờ ý kiến bổ sung."},
            headers=coordinator,
        )
        assert r.status_code == 200 and r.json()["stage_deadline"].endswith("Z"), r.text
        events = (await http.get(f"/requests/{rid}/timeline", headers=coordinator)).json()
        extended = next(e for e in events if e["action"] == "deadline_extended")
        assert extended["details"]["to"].endswith("Z")

        for code, headers in by_code.items():
            tasks = (await http.get("/me/tasks", headers=headers)).json()
            assert [t["request_id"] for t in tasks] == [rid]
            assert (await http.get(f"/requests/{rid}", headers=headers)).json()["assignment"]
            # An answer replayed under its Idempotency-Key is the first one, as it was sent.
            key = {**headers, "Idempotency-Key": f"accept-{code}"}
            r = await http.post(f"/requests/{rid}/assignment/accept", headers=key)
            assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
            again = await http.post(f"/requests/{rid}/assignment/accept", headers=key)
            assert again.headers["idempotency-replayed"] == "true"
            assert again.json() == r.json() and r.json()["respond_by"].endswith("Z")
            opinion = f.opinion(code).opinion.model_dump(mode="json")
            r = await http.post(
                f"/requests/{rid}/assignment/opinion", json=opinion, headers=headers
            )
            assert r.status_code == 200 and r.json()["state"] == "submitted", r.text
        await until_stage(http, rid, coordinator, "synthesis")

        # The chair reads the council's opinions; a member only their own.
        council = (await http.get(f"/requests/{rid}/opinions", headers=by_code[chair])).json()
        assert len(council) == 3
        # Confidential notes are for the coordinator: the chair reads only their own.
        assert [o["expert_code"] for o in council if "confidential_note" in o] == [chair]
        member = next(c for c in by_code if c != chair)
        mine = (await http.get(f"/requests/{rid}/opinions", headers=by_code[member])).json()
        assert [o["expert_code"] for o in mine] == [member]
        # A deployment whose policy opens the council's opinions to every member.
        policy = http.app_state.policy
        http.app_state.policy = policy.model_copy(update={"opinions_visible_to": "council"})
        assert (
            len((await http.get(f"/requests/{rid}/opinions", headers=by_code[member])).json()) == 3
        )
        http.app_state.policy = policy

        draft = f.draft(chair).draft.model_dump(mode="json")
        r = await http.post(f"/requests/{rid}/conclusion/draft", json=draft, headers=by_code[chair])
        assert r.status_code == 200 and r.json()["stage"] == "approval", r.text
        r = await http.post(
            f"/requests/{rid}/conclusion/approve",
            json={},
            headers=coordinator,
        )
        assert r.status_code == 200, r.text
        seen = await until_stage(http, rid, agency, "adoption")
        assert seen["conclusion"]["recommendation"] == "endorse_with_changes"
        assert "assignments" not in seen  # the agency does not see who the experts are

        answer = f.adoption().model_dump(mode="json")
        r = await http.post(f"/requests/{rid}/adoption", json=answer, headers=agency)
        assert r.status_code == 200 and r.json()["stage"] == "closed", r.text

        timeline = (await http.get(f"/requests/{rid}/timeline", headers=agency)).json()
        assert [e["stage"] for e in timeline][-1] == "closed"
        assert all("details" not in e for e in timeline)
        full = (await http.get(f"/requests/{rid}/timeline", headers=coordinator)).json()
        assert len(full) > len(timeline) and all("actor" in e for e in full)

        # Lists filter by stage and kind; each party reads its inbox and marks it read.
        closed = await http.get("/requests", params={"stage": "closed"}, headers=agency)
        assert [i["request_id"] for i in closed.json()["items"]] == [rid]
        r = await http.get(
            "/requests", params={"stage": "review", "kind": sub.kind}, headers=agency
        )
        assert r.json()["items"] == []
        for headers in (agency, coordinator, by_code[chair]):
            inbox = (await http.get("/me/inbox", headers=headers)).json()
            assert inbox, "every party was told something"
            r = await http.post(f"/me/inbox/{inbox[0]['id']}/read", headers=headers)
            assert r.status_code == 200 and r.json() == {"id": inbox[0]["id"], "read": True}
            unread = (await http.get("/me/inbox", params={"unread": True}, headers=headers)).json()
            assert inbox[0]["id"] not in [n["id"] for n in unread]
        # The invitation's payload names the respond-by date the workflow wrote in local time.
        notices = (await http.get("/me/inbox", headers=by_code[member])).json()
        invitation = next(n for n in notices if n["event"] == "invitation")
        assert invitation["payload"]["respond_by"].endswith("Z")


async def test_each_party_is_refused_what_is_not_theirs(env, worker, pool, settings, registry):
    experts = await registry.add(3)
    mine, other = (f"AG{uuid.uuid4().hex[:6].upper()}" for _ in range(2))
    agency = await token(pool, "agency", mine)
    stranger = await token(pool, "agency", other)
    operator = await token(pool, "operator", "Trực vận hành")
    outsider = await token(pool, "expert", "E-NOT-ON-IT")
    coordinator = await token(pool, "coordinator", "VP01")
    sub = f.submission(registry.field, agency={"code": mine, "name": "Sở Tư pháp"})

    async with api(env, pool, settings, worker) as http:
        rid = (await http.post("/requests", json=body(sub), headers=agency)).json()["request_id"]
        await until_stage(http, rid, agency, "screening")
        missing = "R-0000000000"

        # No token, a bad one, a revoked one: 401, with the scheme to use.
        r = await http.get(f"/requests/{rid}")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"] == "application/problem+json"
        bad = {"Authorization": "Bearer adv_not-a-token"}
        assert (await http.get(f"/requests/{rid}", headers=bad)).status_code == 401
        token_id, t = await create_token(pool, "agency", mine)
        async with pool.acquire() as conn:
            await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", token_id)
        revoked = {"Authorization": f"Bearer {t}"}
        assert (await http.get(f"/requests/{rid}", headers=revoked)).status_code == 401

        # Another agency's request, and an expert not on it, look exactly like none at all.
        for headers in (stranger, outsider):
            theirs = await http.get(f"/requests/{rid}", headers=headers)
            nothing = await http.get(f"/requests/{missing}", headers=headers)
            assert theirs.status_code == nothing.status_code == 404
            assert theirs.json()["title"] == nothing.json()["title"]
            r = await http.post(
                f"/requests/{rid}/withdraw",
                json={"reason": "Không còn cần thiết."},
                headers=stranger,
            )
            assert r.status_code == 404
        listed = (await http.get("/requests", headers=stranger)).json()["items"]
        assert rid not in [i["request_id"] for i in listed]
        # Operators read, and change nothing, not even a read mark.
        r = await http.post("/me/inbox/1/read", headers=operator)
        assert r.status_code == 403

        # Roles: an agency may not screen, an expert may not submit, an operator reads only.
        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=agency
        )
        assert r.status_code == 403
        r = await http.post("/requests", json=body(sub), headers=outsider)
        assert r.status_code == 403
        assert (await http.get(f"/requests/{rid}", headers=operator)).status_code == 200
        r = await http.post(
            f"/requests/{rid}/screening", json={"decision": "accept"}, headers=operator
        )
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
        # An agency submits only for itself.
        forged = f.submission(registry.field, agency={"code": other, "name": "Sở khác"})
        r = await http.post("/requests", json=body(forged), headers=agency)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "agency.code"
        # Opinions are not for agencies.
        assert (await http.get(f"/requests/{rid}/opinions", headers=agency)).status_code == 403

        # Nothing of that changed the request.
        state = (await http.get(f"/requests/{rid}", headers=coordinator)).json()
        assert state["stage"] == "screening"
    assert experts


async def test_an_idempotency_key_returns_the_first_answer_and_changes_nothing(
    env, worker, pool, settings, registry
):
    await registry.add(3)
    code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    coordinator = await token(pool, "coordinator", "VP01")
    sub = f.submission(registry.field, agency={"code": code, "name": "Sở Tư pháp"})
    async with api(env, pool, settings, worker) as http:
        key = {"Idempotency-Key": f"submit-{uuid.uuid4()}"}
        first = await http.post("/requests", json=body(sub), headers={**agency, **key})
        again = await http.post("/requests", json=body(sub), headers={**agency, **key})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json() and again.headers["idempotency-replayed"] == "true"
        rid = first.json()["request_id"]
        await until_stage(http, rid, agency, "screening")

        decline = {"decision": "decline", "note": "Ngoài phạm vi."}
        key = {"Idempotency-Key": "screen-1"}
        a = await http.post(
            f"/requests/{rid}/screening", json=decline, headers={**coordinator, **key}
        )
        b = await http.post(
            f"/requests/{rid}/screening", json=decline, headers={**coordinator, **key}
        )
        assert a.status_code == b.status_code == 200 and a.json() == b.json()
        # Without the key, the same action is refused by the workflow (already declined).
        c = await http.post(f"/requests/{rid}/screening", json=decline, headers=coordinator)
        assert c.status_code == 409 and c.headers["content-type"] == "application/problem+json"
        # The key with a different body is refused, and changes nothing.
        other = {"decision": "accept"}
        d = await http.post(
            f"/requests/{rid}/screening", json=other, headers={**coordinator, **key}
        )
        assert d.status_code == 422 and d.json()["type"].endswith("/idempotency-key-reused")
    async with pool.acquire() as conn:
        screened = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1 AND action LIKE 'screening_%'",
            rid,
        )
        submitted = await conn.fetchval(
            "SELECT count(*) FROM requests WHERE agency_code = $1", code
        )
    assert screened == 1 and submitted == 1


async def test_a_resubmission_is_the_same_request_only_with_the_same_content(
    env, worker, pool, settings, policy, registry
):
    await registry.add(3)
    code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    sub = f.submission(registry.field, agency={"code": code, "name": "Sở Tư pháp"})
    changed = sub.model_copy(update={"title": "Dự thảo Kế hoạch khác hẳn, cùng số công văn"})
    async with api(env, pool, settings, worker) as http:
        first = await http.post("/requests", json=body(sub), headers=agency)
        assert first.status_code == 201 and first.json()["created"] is True
        rid = first.json()["request_id"]
        same = await http.post("/requests", json=body(sub), headers=agency)
        assert same.status_code == 200
        assert same.json() == {"request_id": rid, "created": False}
        other = await http.post("/requests", json=body(changed), headers=agency)
        assert other.status_code == 409, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert f"already names request {rid}" in other.json()["detail"]
        assert "agency_reference" in other.json()["detail"]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, title FROM requests WHERE agency_code = $1", code)
    assert [(r["id"], r["title"]) for r in rows] == [(rid, sub.title)]


async def test_an_extension_retried_after_its_answer_was_lost_extends_once(
    env, worker, pool, settings, policy, registry
):
    """The workflow update carries an id derived from the Idempotency-Key: when the API lost
    its record of the first call (its process died after the update), the retry is the same
    update and Temporal applies it once. Past the policy's bound an extension is refused."""
    rid, handle, state = await open_review(env, worker, policy, registry, n_experts=3)
    expert = state.assignments[0].expert_code
    coordinator = await token(pool, "coordinator", "VP01")
    extend = {"expert_code": expert, "days": 20, "reason": "Chờ số liệu bổ sung."}
    headers = {**coordinator, "Idempotency-Key": "extend-1"}
    async with api(env, pool, settings, worker) as http:
        first = await http.post(f"/requests/{rid}/assignments/extend", json=extend, headers=headers)
        assert first.status_code == 200, first.text
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM idempotency_keys WHERE key = 'extend-1'")
        retry = await http.post(f"/requests/{rid}/assignments/extend", json=extend, headers=headers)
        assert retry.status_code == 200 and retry.json() == first.json()
        over = await http.post(
            f"/requests/{rid}/assignments/extend",
            json={**extend, "days": 50},
            headers=coordinator,
        )
        assert over.status_code == 409 and "at most 40 more day(s)" in over.json()["detail"]
    async with pool.acquire() as conn:
        extended = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1 AND action = 'deadline_extended'",
            rid,
        )
    assert extended == 1


async def test_a_key_left_running_by_a_process_that_died_is_taken_over_and_acts_once(
    env, worker, pool, settings, registry, database_url
):
    """Another API process took each call, applied it and has not answered yet: while it
    lives, a retry under the key is told the call is in progress; once it has died (its
    connection, and with it its process lock, gone) the retry takes the key over at once and
    gets the answer the first call would have given, with nothing done twice."""
    await registry.add(3)
    code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    coordinator = await token(pool, "coordinator", "VP01")
    sub = f.submission(registry.field, agency={"code": code, "name": "Sở Tư pháp"})
    decline = {"decision": "decline", "note": "Ngoài phạm vi."}
    submit_key, screen_key = (f"{what}-{uuid.uuid4()}" for what in ("submit", "screen"))
    other = await asyncpg.connect(database_url)  # the other process's lock connection
    holder = (1 << 32) + secrets.randbelow(1 << 40)
    await other.execute("SELECT pg_advisory_lock($1)", holder)

    async def left_running(key: str, holder: int = holder) -> None:
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status_code = NULL, response = NULL, holder = $2"
                " WHERE key = $1",
                key,
                holder,
            )

    async with api(env, pool, settings, worker) as http:

        async def submit():
            return await http.post(
                "/requests", json=body(sub), headers={**agency, "Idempotency-Key": submit_key}
            )

        async def screen():
            return await http.post(
                f"/requests/{rid}/screening",
                json=decline,
                headers={**coordinator, "Idempotency-Key": screen_key},
            )

        submitted = await submit()
        assert submitted.status_code == 201, submitted.text
        rid = submitted.json()["request_id"]
        await until_stage(http, rid, agency, "screening")
        screened = await screen()
        assert screened.status_code == 200 and screened.json()["stage"] == "declined"
        await left_running(submit_key)
        await left_running(screen_key)

        for send in (submit, screen):
            busy = await send()
            assert busy.status_code == 409 and busy.json()["type"].endswith("/in-progress")

        other.terminate()  # that process dies
        # The server drops a closed connection's locks within moments: a client retrying
        # "in progress" gets through almost at once.
        async with asyncio.timeout(5):
            while (retried := await submit()).status_code == 409:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # Answered as the first call would have been: created (the request it started).
        assert retried.status_code == 201 and retried.json() == submitted.json()
        assert "idempotency-replayed" not in retried.headers
        retried = await screen()
        assert retried.status_code == 200 and retried.json() == screened.json()
        # From now on the answer is kept.
        again = await screen()
        assert again.json() == screened.json() and again.headers["idempotency-replayed"] == "true"

        # A call still running in this very API process is in progress too.
        await left_running(screen_key, holder=http.app_state.process_lock)
        assert (await screen()).status_code == 409
    async with pool.acquire() as conn:
        declined = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE request_id = $1"
            " AND action = 'screening_declined'",
            rid,
        )
        submitted_rows = await conn.fetchval(
            "SELECT count(*) FROM requests WHERE agency_code = $1", code
        )
    assert declined == 1 and submitted_rows == 1


async def test_a_process_lock_lost_with_its_connection_is_taken_again(database_url):
    """A cut connection (a database restart) frees the API process's lock; the process takes
    it again, so its claims count as running again rather than as left by a dead process."""
    own = await create_pool(database_url, min_size=1, max_size=3)
    try:
        async with ProcessLock(own, check_every=0.5) as lock:

            async def held() -> bool:
                return not await own.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock.id)

            assert await held()
            await own.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid"
                " AND objsubid = 1",
                lock.id,
            )
            async with asyncio.timeout(10):
                while await held():  # noqa: ASYNC110 (another session's lock: no event)
                    await asyncio.sleep(0.02)
                while not await held():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    finally:
        await own.close()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"decision": "maybe"}, "decision"),
        ({"decision": "accept", "unexpected": 1}, "unexpected"),
        ({}, "decision"),
    ],
)
async def test_bad_input_names_each_field(env, worker, pool, settings, payload, field):
    coordinator = await token(pool, "coordinator", "VP01")
    async with api(env, pool, settings, worker) as http:
        r = await http.post("/requests/R-0000000000/screening", json=payload, headers=coordinator)
        assert r.status_code == 422
        problem = r.json()
        assert problem["status"] == 422 and problem["type"].endswith("/validation")
        assert field in [e["field"] for e in problem["errors"]], problem
        assert "Traceback" not in r.text

        big = {"decision": "accept", "note": "x" * (2 << 20)}
        r = await http.post("/requests/R-0000000000/screening", json=big, headers=coordinator)
        assert r.status_code == 413 and r.json()["title"] == "Request too large"
        r = await http.get("/requests/not-an-id", headers=coordinator)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.request_id"

        async def chunks():  # no Content-Length: counted as it streams
            for _ in range(40):
                yield b"x" * 65536

        r = await http.post(
            "/requests/R-0000000000/screening",
            content=chunks(),
            headers={**coordinator, "content-type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["title"] == "Request too large"
        r = await http.get("/requests", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=coordinator)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cursor"


async def test_pages_follow_the_cursor_to_the_end(env, worker, pool, settings, registry):
    await registry.add(3)
    code = f"AG{uuid.uuid4().hex[:6].upper()}"
    agency = await token(pool, "agency", code)
    async with api(env, pool, settings, worker) as http:
        made = []
        for _ in range(3):
            sub = f.submission(registry.field, agency={"code": code, "name": "Sở Tư pháp"})
            made.append((await http.post("/requests", json=body(sub), headers=agency)).json())
        for m in made:
            await until_stage(http, m["request_id"], agency, "screening")
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/requests", params=params, headers=agency)).json()
            seen += [i["request_id"] for i in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
    assert sorted(seen) == sorted(m["request_id"] for m in made) and len(seen) == 3


def fuzz(base_url: str, headers: dict[str, str], examples: int) -> tuple[int, list[str]]:
    """Every operation of the OpenAPI document with generated input (schemathesis +
    hypothesis, derandomised so CI runs the same cases): no answer may be a server error, and
    every answer must be one the document declares, in status, media type, headers and body;
    input the document calls invalid must be refused."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck
    from schemathesis import GenerationMode
    from schemathesis import checks as c
    from schemathesis.core.failures import FailureGroup

    conformance = [
        c.not_a_server_error,
        c.status_code_conformance,
        c.content_type_conformance,
        c.response_headers_conformance,
        c.response_schema_conformance,
        c.negative_data_rejection,
    ]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    calls, failures = 0, []
    operations = [
        (result.ok(), mode)
        for result in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    for operation, mode in operations:

        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            nonlocal calls
            # The token goes into the case itself, so the checks judge the request as sent: a
            # case that dropped Authorization was sent with it all the same.
            case.headers = {**(case.headers or {}), **headers}
            response = case.call(base_url=base_url, timeout=30)
            calls += 1
            where = f"{case.method} {case.formatted_path}"
            if "Traceback" in response.text:
                failures.append(f"{where}: a traceback")
            try:
                case.validate_response(response, checks=conformance, headers=headers)
            except FailureGroup as group:
                failures.extend(
                    f"{where}: {f.title}: {f.message[:300]} ({response.request.url})"
                    for f in group.exceptions
                )
            except AssertionError as failed:
                failures.append(f"{where}: {failed}")

        check()
    return calls, failures


async def test_fuzzing_the_openapi_document_finds_every_answer_as_declared(
    dev_env, pool, database_url
):
    import asyncio
    import os
    import subprocess
    import sys

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 (only forks; the server runs on its own)
        [sys.executable, "-m", "starter.cli", "api", "--port", str(port)],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "ADVISORY_TASK_QUEUE": f"fuzz-{uuid.uuid4().hex}",
            "ADVISORY_LOG_LEVEL": "WARNING",
        },
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{base}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        coordinator = await token(pool, "coordinator", "VP01")
        agency = await token(pool, "agency", "SGTVT")
        for headers in (coordinator, agency):
            calls, failures = await asyncio.to_thread(fuzz, base, headers, 15)
            assert calls >= 400 and failures == [], failures
    finally:
        proc.terminate()
        proc.wait(20)


def test_tokens_from_the_cli_are_shown_once_and_revocable(database_url, pool):
    import json

    def tokens(*args: str):
        return advisory(*args, env_vars={"DATABASE_URL": database_url})

    # A token signs in someone of a registry: an unknown code gets none.
    unknown = tokens("tokens", "create", "--role", "coordinator", "--subject", "VP99")
    assert unknown.returncode == 2
    assert "subject: no coordinator VP99 in the coordinator registry" in unknown.stderr
    made = tokens("--json", "tokens", "create", "--role", "coordinator", "--subject", "VP02")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["token"].startswith("adv_")
    listed = tokens("--json", "tokens", "list")
    row = next(t for t in json.loads(listed.stdout) if t["id"] == created["id"])
    assert row["role"] == "coordinator" and row["subject"] == "VP02" and "token" not in row
    assert created["token"] not in listed.stdout
    assert tokens("tokens", "revoke", str(created["id"])).returncode == 0
    again = tokens("tokens", "revoke", str(created["id"]))
    assert again.returncode == 2 and f"no live token {created['id']}" in again.stderr
    bad = tokens("tokens", "create", "--role", "admin", "--subject", "x")
    assert bad.returncode == 2 and "--role" in bad.stderr
