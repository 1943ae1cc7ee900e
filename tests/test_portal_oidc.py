"""Sign-in through an identity provider (OpenID Connect): a real provider over HTTP (discovery,
authorize, token, keys; it checks the client's secret and the PKCE verifier) and the portal
over httpx's ASGI transport. Who the provider vouches for signs in only as the registries say;
every answer that cannot be trusted is refused with a page and no session."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from db import queries as q
from domain.models import Contact, RegisteredAgency
from tests.conftest import free_port
from tests.test_portal_auth import new_expert, portal, portal_settings, text_of

CLIENT_ID, CLIENT_SECRET = "advisory-portal", "provider-secret"


class Provider:
    """An OpenID provider that vouches for `email` (set by the test) when the browser comes
    to authorize; `tamper` names one thing to get wrong in its ID token."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.email = ""
        self.email_verified: bool | None = True
        self.tamper: str | None = None
        self.codes: dict[str, dict] = {}
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/keys", self.keys),
            ]
        )

    async def discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/keys",
            }
        )

    async def authorize(self, request: Request) -> RedirectResponse:
        p = request.query_params
        assert p["response_type"] == "code" and p["client_id"] == CLIENT_ID
        assert p["code_challenge_method"] == "S256" and "openid" in p["scope"].split()
        code = uuid.uuid4().hex
        self.codes[code] = dict(p)
        return RedirectResponse(f"{p['redirect_uri']}?code={code}&state={p['state']}", 302)

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        auth = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        asked = self.codes.pop(form["code"], None)
        verifier = hashlib.sha256(form["code_verifier"].encode()).digest()
        challenge = base64.urlsafe_b64encode(verifier).rstrip(b"=").decode()
        if (
            auth != f"{CLIENT_ID}:{CLIENT_SECRET}"
            or asked is None
            or asked["code_challenge"] != challenge
            or asked["redirect_uri"] != form["redirect_uri"]
        ):
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "citizen-" + self.email,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now - 600 if self.tamper == "expired" else now + 300,
            "nonce": "another" if self.tamper == "nonce" else asked["nonce"],
            "email": self.email,
        }
        if self.email_verified is not None:
            claims["email_verified"] = self.email_verified
        key = RSAKey.generate_key(2048) if self.tamper == "key" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return JSONResponse({"access_token": "a", "token_type": "Bearer", "id_token": id_token})

    async def keys(self, request: Request) -> JSONResponse:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))


@pytest_asyncio.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    server = uvicorn.Server(
        uvicorn.Config(p.app, host="127.0.0.1", port=p.port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    # uvicorn says it has started by a flag only: there is no event to wait on.
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    yield p
    server.should_exit = True
    await task


def oidc_settings(mail, provider: Provider, **changes):
    return portal_settings(
        mail,
        portal_oidc_url=provider.url,
        portal_oidc_client_id=CLIENT_ID,
        portal_oidc_client_secret=CLIENT_SECRET,
        portal_oidc_name="Cổng định danh tỉnh",
        **changes,
    )


async def through_provider(http: httpx.AsyncClient, next_path: str = "") -> httpx.Response:
    """The browser's round trip: the portal sends it to the provider, the provider back."""
    start = await http.get("/portal/oidc", params={"next": next_path} if next_path else None)
    assert start.status_code == 303, start.text
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(start.headers["location"])
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["location"])
    return await http.get(f"{back.path}?{back.query}")


async def signed_in_as(http: httpx.AsyncClient) -> str:
    """The 'Signed in as …' line of the home page, or '' when the portal asks to sign in."""
    home = await http.get("/portal/", follow_redirects=True)
    text = text_of(home.text)
    return text.split("Đang đăng nhập: ")[1].split(")")[0] + ")" if "Đang đăng nhập" in text else ""


async def test_a_registered_expert_signs_in_through_the_provider(env, pool, mail, provider):
    expert = await new_expert(pool)
    provider.email, provider.email_verified, provider.tamper = expert.email.upper(), True, None
    async with portal(env, pool, oidc_settings(mail, provider)) as http:
        page = await http.get("/portal/sign-in", params={"next": "/portal/tasks"})
        assert "Đăng nhập bằng Cổng định danh tỉnh" in text_of(page.text)
        assert 'href="/portal/oidc?next=%2Fportal%2Ftasks"' in page.text

        back = await through_provider(http, "/portal/tasks")
        assert back.status_code == 303 and back.headers["location"] == "/portal/tasks"
        assert "advisory_session" in back.cookies
        assert await signed_in_as(http) == f"{expert.name} (chuyên gia)"
        assert (await http.get("/portal/tasks")).status_code == 200
    assert not mail.messages or all(m["To"] != expert.email for m in mail.messages)


@pytest.mark.parametrize(
    "tamper, verified",
    [("nonce", True), ("key", True), ("expired", True), (None, False)],
    ids=["another-nonce", "signed-by-another-key", "expired", "address-not-verified"],
)
async def test_an_answer_that_cannot_be_trusted_signs_nobody_in(
    env, pool, mail, provider, tamper, verified
):
    expert = await new_expert(pool)
    provider.email, provider.email_verified, provider.tamper = expert.email, verified, tamper
    async with portal(env, pool, oidc_settings(mail, provider)) as http:
        back = await through_provider(http)
        assert back.status_code == 400
        assert "Đăng nhập không thành công" in text_of(back.text)
        assert "advisory_session" not in back.cookies
        assert await signed_in_as(http) == ""
    provider.tamper = None


async def test_a_callback_this_browser_did_not_start_is_refused(env, pool, mail, provider):
    expert = await new_expert(pool)
    provider.email, provider.email_verified = expert.email, True
    async with portal(env, pool, oidc_settings(mail, provider)) as http:
        start = await http.get("/portal/oidc")
        async with httpx.AsyncClient() as browser:
            back = urlsplit((await browser.get(start.headers["location"])).headers["location"])
        query = parse_qs(back.query)
        # The state altered: another sign-in's answer replayed into this one.
        forged = await http.get(back.path, params={"code": query["code"][0], "state": "forged"})
        assert forged.status_code == 400 and "advisory_session" not in forged.cookies
        # And the real answer, in a browser that never started a sign-in.
        async with portal(env, pool, oidc_settings(mail, provider)) as other:
            elsewhere = await other.get(f"{back.path}?{back.query}")
            assert elsewhere.status_code == 400
            assert await signed_in_as(other) == ""


async def test_an_unregistered_address_is_told_so_and_not_signed_in(env, pool, mail, provider):
    provider.email, provider.email_verified = f"nobody.{uuid.uuid4().hex[:6]}@example.vn", True
    async with portal(env, pool, oidc_settings(mail, provider)) as http:
        back = await through_provider(http)
        assert back.status_code == 403
        text = text_of(back.text)
        assert "Không có tài khoản nào với địa chỉ này" in text and provider.email in text
        assert await signed_in_as(http) == ""


async def test_an_address_of_two_accounts_chooses_one(env, pool, mail, provider):
    expert = await new_expert(pool)
    code = f"OIDC{uuid.uuid4().hex[:6].upper()}"
    agency = RegisteredAgency(
        code=code,
        name=f"Sở thử nghiệm {code}",
        contacts=[Contact(name="Người liên hệ", email=expert.email)],
    )
    async with pool.acquire() as conn:
        await q.upsert_agency(conn, agency)
    provider.email, provider.email_verified = expert.email, None  # no claim: not refused
    async with portal(env, pool, oidc_settings(mail, provider)) as http:
        back = await through_provider(http)
        assert back.status_code == 200
        text = text_of(back.text)
        assert "Chọn tài khoản" in text
        assert f"{expert.name} (chuyên gia)" in text and f"{agency.name} (cơ quan đề nghị)" in text
        assert await signed_in_as(http) == ""
        actions = [a for a in back.text.split('action="')[1:] if a.startswith("/portal/link/")]
        assert len(actions) == 2
        csrf = back.text.split('name="csrf_token" value="')[1].split('"')[0]
        chosen = await http.post(actions[1].split('"')[0], data={"csrf_token": csrf})
        assert chosen.status_code == 303
        assert await signed_in_as(http) == f"{agency.name} (cơ quan đề nghị)"


async def test_without_a_provider_there_is_no_such_sign_in(env, pool, mail):
    async with portal(env, pool, portal_settings(mail)) as http:
        assert "/portal/oidc" not in (await http.get("/portal/sign-in")).text
        assert (await http.get("/portal/oidc")).status_code == 404
        assert (await http.get("/portal/oidc/callback?code=x&state=y")).status_code == 404
