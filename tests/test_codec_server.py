"""The codec server the Temporal UI reads payloads through (/portal/codec), over HTTP against
the real app (httpx's ASGI transport), a real PostgreSQL, the suite's Temporal client and its
payload keys, and portal sessions made by signing in from the e-mailed link: what a staff
member gets in clear and can seal again, who is refused and how, which origin the browser is
let through, and what a payload that cannot be opened is told."""

from __future__ import annotations

import json
import uuid

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from db import queries as q
from domain.models import Operator
from infra.links import case_url
from infra.settings import Settings
from infra.temporal import temporal_ui_url
from tests.conftest import CONVERTER
from tests.test_portal_agency import new_agency
from tests.test_portal_auth import (
    new_coordinator,
    new_expert,
    portal,
    portal_settings,
    signed_in_as,
)

UI = "http://127.0.0.1:8233"  # the Temporal UI's origin, as configured
FROM_UI = {"Origin": UI, "X-Namespace": "default"}
SUBMISSION = {"title": "Dự thảo Quy hoạch lưu vực sông Cầu", "email": "hong.nt@example.gov.vn"}


def settings(mail):
    return portal_settings(mail, temporal_ui_url=f"{UI}/")


async def new_operator(pool) -> Operator:
    tag = uuid.uuid4().hex[:8]
    operator = Operator(code=f"O{tag}", name=f"Vận hành {tag}", email=f"op.{tag}@portal.example.vn")
    async with pool.acquire() as conn:
        await q.upsert_operator(conn, operator)
    return operator


async def staff_email(pool, role: str) -> str:
    if role == "operator":
        return (await new_operator(pool)).email
    return (await new_coordinator(pool)).email


async def sealed(value: object) -> Payload:
    """A payload as the engine stores it in Temporal: converted, then encrypted."""
    (payload,) = await CONVERTER.encode([value])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    return payload


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(text: str) -> list[Payload]:
    return list(json_format.Parse(text, Payloads()).payloads)


async def post(http, operation: str, content: str, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **FROM_UI, **(headers or {})}
    return await http.post(f"/portal/codec/{operation}", content=content, headers=headers)


@pytest.mark.parametrize("role", ["operator", "coordinator"])
async def test_staff_read_payloads_in_clear_and_seal_them_again(env, pool, mail, role):
    async with portal(env, pool, settings(mail)) as http:
        await signed_in_as(http, mail, await staff_email(pool, role))
        stored = await sealed(SUBMISSION)

        decoded = await post(http, "decode", body(stored))
        assert decoded.status_code == 200, decoded.text
        assert decoded.headers["access-control-allow-origin"] == UI
        assert decoded.headers["access-control-allow-credentials"] == "true"
        assert decoded.headers["cache-control"] == "no-store"
        (clear,) = payloads_of(decoded.text)
        assert clear.metadata["encoding"] == b"json/plain"
        assert json.loads(clear.data) == SUBMISSION
        # In protobuf JSON as the UI reads it: metadata and data in base64.
        assert set(json.loads(decoded.text)["payloads"][0]) == {"metadata", "data"}

        encoded = await post(http, "encode", decoded.text)
        assert encoded.status_code == 200, encoded.text
        (again,) = payloads_of(encoded.text)
        assert again.metadata["encoding"] == b"binary/encrypted"
        assert again.data != stored.data  # a fresh nonce
        assert await CONVERTER.decode([again], [dict]) == [SUBMISSION]

        # What the engine leaves readable (a summary: a bare string) passes as it is.
        (summary,) = await CONVERTER.encode(["critique · STNMT · R-1"])
        passed = await post(http, "decode", body(summary))
        assert payloads_of(passed.text) == [summary]


async def test_without_a_session_the_codec_answers_401(env, pool, mail):
    async with portal(env, pool, settings(mail)) as http:
        r = await post(http, "decode", body(await sealed(SUBMISSION)))
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "sign in to the portal as an operator or a coordinator"
        # The UI may read the refusal (and say so) rather than see a network error.
        assert r.headers["access-control-allow-origin"] == UI
        assert "hong.nt" not in r.text
        assert (await post(http, "encode", body())).status_code == 401


@pytest.mark.parametrize("role", ["agency", "expert"])
async def test_an_agency_or_an_expert_is_refused_403(env, pool, mail, role):
    email = (await new_agency(pool))[1] if role == "agency" else (await new_expert(pool)).email
    async with portal(env, pool, settings(mail)) as http:
        await signed_in_as(http, mail, email)
        r = await post(http, "decode", body(await sealed(SUBMISSION)))
        assert r.status_code == 403
        assert r.json()["detail"] == "only operators and coordinators may read payloads"
        assert "hong.nt" not in r.text
        assert (await post(http, "encode", body())).status_code == 403


@pytest.mark.parametrize(
    "origin",
    [
        "https://attacker.example",
        "http://localhost:8233",  # the UI by another name: another site for the cookie too
        "http://127.0.0.1:8000",  # the portal's own pages never call it
    ],
)
async def test_another_origin_is_refused_even_with_a_staff_session(env, pool, mail, origin):
    async with portal(env, pool, settings(mail)) as http:
        await signed_in_as(http, mail, (await new_operator(pool)).email)
        r = await post(http, "decode", body(await sealed(SUBMISSION)), {"Origin": origin})
        assert r.status_code == 403
        assert r.json()["detail"] == f"only the Temporal UI ({UI}) may call the codec"
        assert "access-control-allow-origin" not in r.headers
        assert "hong.nt" not in r.text


async def test_the_preflight_is_answered_for_the_ui_alone(env, pool, mail):
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    async with portal(env, pool, settings(mail)) as http:
        for operation in ("decode", "encode"):
            ok = await http.options(f"/portal/codec/{operation}", headers={"Origin": UI, **ask})
            assert ok.status_code == 204
            assert ok.headers["access-control-allow-origin"] == UI
            assert ok.headers["access-control-allow-credentials"] == "true"
            assert ok.headers["access-control-allow-methods"] == "POST"
            allowed = ok.headers["access-control-allow-headers"].lower()
            assert "content-type" in allowed and "x-namespace" in allowed

        other = {"Origin": "https://attacker.example", **ask}
        refused = await http.options("/portal/codec/decode", headers=other)
        assert refused.status_code == 403
        assert not any(h.startswith("access-control-") for h in refused.headers)
        not_post = {"Origin": UI, "Access-Control-Request-Method": "DELETE"}
        assert (await http.options("/portal/codec/decode", headers=not_post)).status_code == 403


async def test_a_payload_that_cannot_be_opened_is_named_and_why(env, pool, mail):
    async with portal(env, pool, settings(mail)) as http:
        await signed_in_as(http, mail, (await new_operator(pool)).email)
        good = await sealed(SUBMISSION)
        tampered = Payload()
        tampered.CopyFrom(good)
        tampered.data = good.data[:-1] + bytes([good.data[-1] ^ 1])
        r = await post(http, "decode", body(good, tampered))
        assert r.status_code == 422
        assert r.json()["errors"] == [
            {
                "field": "payloads[1]",
                "message": "cannot be decrypted: altered, cut short, or sealed with a key this "
                "engine does not have",
            }
        ]
        assert r.headers["access-control-allow-origin"] == UI

        foreign = Payload()
        foreign.CopyFrom(good)
        foreign.metadata["encryption-key-id"] = b"gone"
        r = await post(http, "decode", body(foreign))
        assert r.status_code == 422
        assert r.json()["errors"][0] == {
            "field": "payloads[0]",
            "message": "payload encrypted with key 'gone', which is not configured",
        }

        r = await post(http, "decode", "payloads: none")
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "body"
        r = await post(http, "decode", body(good), {"Content-Type": "text/plain"})
        assert r.status_code == 422
        assert "Content-Type: application/json" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8233", "http://127.0.0.1:8233"),
        ("https://Temporal.LienHiepHoi.org.vn:443/ui/", "https://temporal.lienhiephoi.org.vn"),
        ("http://[::1]:8233/", "http://[::1]:8233"),
    ],
)
def test_the_allowed_origin_is_the_ui_address_as_a_browser_sends_it(url, origin):
    assert Settings(temporal_ui_url=url).temporal_ui_origin == origin


def test_a_request_links_to_its_case_page_and_to_its_ui_page(monkeypatch):
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "lhh-tvpb")  # as connect() reads it
    s = Settings(
        portal_url="https://portal.lienhiephoi.org.vn/",
        temporal_ui_url="https://temporal.lienhiephoi.org.vn/",
    )
    assert case_url(s, "R-1A2B3C4D5E") == (
        "https://portal.lienhiephoi.org.vn/portal/cases/R-1A2B3C4D5E"
    )
    assert temporal_ui_url(s, "R-1A2B3C4D5E") == (
        "https://temporal.lienhiephoi.org.vn/namespaces/lhh-tvpb/workflows/review-R-1A2B3C4D5E"
    )
