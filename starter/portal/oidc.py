"""Sign-in through the province's identity provider (OpenID Connect), when one is configured
(ADVISORY_PORTAL_OIDC_URL, _CLIENT_ID, _CLIENT_SECRET; README "Web portal").

The authorization code flow with PKCE: `/portal/oidc` sends the browser to the provider with a
fresh state, nonce and code verifier, kept in a signed cookie for ten minutes; the provider
sends it back to `/portal/oidc/callback`, where the code is exchanged for an ID token whose
signature (the provider's published keys), issuer, audience, expiry and nonce are checked. The
provider vouches for an e-mail address, nothing more: the registries decide who that address
is, exactly as for an e-mailed sign-in link. One registered identity signs in at once; an
address registered several times (an expert who is also an agency's contact) chooses."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

import httpx
import structlog
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from db import portal as db
from infra.links import PREFIX, SIGN_IN_VALID_FOR, link_token, safe_next, sign, unsign
from infra.settings import Settings
from starter.portal.pages import PageError, portal_of, render
from starter.portal.people import Visitor, delete_cookie, set_cookie, start_session, visitor

router = APIRouter()
log = structlog.get_logger("portal")

FLOW_COOKIE = "advisory_oidc"
FLOW = "portal-oidc"
FLOW_SECONDS = 600
CALLBACK = f"{PREFIX}/oidc/callback"
TIMEOUT = httpx.Timeout(10.0)


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in (why, for the log; the person reads one
    plain sentence and a way to sign in by e-mail)."""


def configured(settings: Settings) -> bool:
    return bool(settings.portal_oidc_url and settings.portal_oidc_client_id)


async def provider(settings: Settings) -> dict[str, Any]:
    """The provider's metadata (its discovery document)."""
    url = settings.portal_oidc_url.rstrip("/") + "/.well-known/openid-configuration"
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        answer = await http.get(url)
    answer.raise_for_status()
    meta = answer.json()
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not meta.get(key):
            raise SignInFailed(f"the provider's discovery document has no {key}")
    return meta


def _redirect_uri(settings: Settings) -> str:
    return settings.portal_url.rstrip("/") + CALLBACK


@router.get("/oidc")
async def start(next: str = "", v: Visitor = Depends(visitor)) -> Response:
    portal = portal_of(v.request)
    settings = portal.settings
    if not configured(settings):
        raise PageError(v, 404, "not_found.html")
    try:
        meta = await provider(settings)
    except (httpx.HTTPError, ValueError, SignInFailed) as err:
        log.warning("identity provider unreachable", error=str(err))
        return _failed(v, 502)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    url = prepare_grant_uri(
        meta["authorization_endpoint"],
        settings.portal_oidc_client_id,
        "code",
        redirect_uri=_redirect_uri(settings),
        scope="openid email",
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    flow = {"s": state, "n": nonce, "v": verifier, "next": safe_next(next)}
    flow["x"] = int(time.time()) + FLOW_SECONDS
    response = RedirectResponse(url, status_code=303)
    set_cookie(response, portal, FLOW_COOKIE, sign(portal.secret, FLOW, flow), FLOW_SECONDS)
    return response


@router.get("/oidc/callback")
async def callback(
    state: str = "", code: str = "", error: str = "", v: Visitor = Depends(visitor)
) -> Response:
    request = v.request
    portal = portal_of(request)
    settings = portal.settings
    if not configured(settings):
        raise PageError(v, 404, "not_found.html")
    flow = unsign(portal.secret, FLOW, request.cookies.get(FLOW_COOKIE, ""))
    try:
        if error:
            raise SignInFailed(f"the provider answered {error}")
        if not flow or int(flow.get("x", 0)) < time.time():
            raise SignInFailed("no sign-in in progress in this browser, or it took too long")
        if not code or not hmac.compare_digest(state.encode(), str(flow["s"]).encode()):
            raise SignInFailed("the state does not match the sign-in this browser started")
        email = await _vouched_email(settings, code, flow)
    except (SignInFailed, httpx.HTTPError, ValueError, JoseError) as err:
        log.warning("identity provider sign-in refused", error=repr(err))
        response = _failed(v, 400)
        delete_cookie(response, portal, FLOW_COOKIE)
        return response
    async with request.app.state.pool.acquire() as conn:
        identities = await db.identities_by_email(conn, email)
    next_path = safe_next(flow["next"])
    if len(identities) == 1:
        person = identities[0]
        response = RedirectResponse(next_path, status_code=303)
        await start_session(
            request, response, person["role"], person["code"], email, person["language"]
        )
    elif identities:
        # One button per account, each an ordinary single-use sign-in link.
        choices = [
            (
                i,
                link_token(
                    portal.secret, i["role"], i["code"], email, next_path, SIGN_IN_VALID_FOR
                ),
            )
            for i in identities
        ]
        response = render(v, "oidc_choose.html", {"email": email, "choices": choices})
    else:
        response = render(v, "oidc_unknown.html", {"email": email}, status=403)
    delete_cookie(response, portal, FLOW_COOKIE)
    return response


async def _vouched_email(settings: Settings, code: str, flow: dict) -> str:
    """The e-mail address the provider's ID token vouches for, every check passed."""
    meta = await provider(settings)
    secret = settings.portal_oidc_client_secret
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        answer = await http.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": _redirect_uri(settings),
                "code_verifier": flow["v"],
            },
            auth=(settings.portal_oidc_client_id, secret.get_secret_value() if secret else ""),
        )
        answer.raise_for_status()
        id_token = answer.json().get("id_token")
        keys = KeySet.import_key_set((await http.get(meta["jwks_uri"])).raise_for_status().json())
    if not id_token:
        raise SignInFailed("the token answer has no id_token")
    token = jwt.decode(id_token, keys)
    jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": settings.portal_oidc_client_id},
        exp={"essential": True},
        nonce={"essential": True, "value": flow["n"]},
    ).validate(token.claims)
    email = str(token.claims.get("email") or "").strip().lower()
    if not email or token.claims.get("email_verified") is False:
        raise SignInFailed("the provider does not vouch for an e-mail address")
    return email


def _failed(v: Visitor, status: int) -> Response:
    return render(v, "oidc_failed.html", status=status)
