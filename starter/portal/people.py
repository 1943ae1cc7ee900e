"""Who is on a page: sessions, the visitor (signed in or not), the dependencies pages declare,
and the CSRF check every POST passes before a page sees it.

Cookies (all HttpOnly, SameSite=Lax, path /portal, Secure unless the portal is served from
the developer's own machine):
- `advisory_session`: a random session id; PostgreSQL keeps only its SHA-256.
- `advisory_browser`: a random value naming this browser. A form's CSRF token is an HMAC of
  it and the session cookie, so a token is good for one browser and one session only; both
  change at sign-in and sign-out. Forms before sign-in (the sign-in form, a link's button) are
  protected by the same token.
- `advisory_lang`: the language the person chose with the switch."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, fields
from datetime import timedelta

from fastapi import Depends, Request, Response

from db import portal as db
from domain.models import Actor
from infra.links import PREFIX, mac
from starter import service
from starter.portal.forms import CSRF_FIELD
from starter.portal.i18n import DEFAULT_LANGUAGE, Language, language, translations
from starter.portal.pages import PageError, Portal, SignInRequired, portal_of

SESSION_COOKIE = "advisory_session"
BROWSER_COOKIE = "advisory_browser"
LANG_COOKIE = "advisory_lang"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hash_session(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Person:
    """Someone signed in: as the registry names them (`actor`, what their actions record),
    the registered address they signed in with, and their registry's language."""

    role: str
    code: str
    email: str
    actor: Actor
    language: Language
    session_hash: str


@dataclass(frozen=True)
class Visitor:
    """Anyone on a portal page. `language` is the switch's choice, else the person's, else
    Vietnamese; `csrf_token` goes in every POST form (the `forms.csrf()` macro puts it)."""

    request: Request
    language: Language
    csrf_token: str
    person: Person | None
    # A browser cookie made for this visit, set on the page that answers it.
    new_browser_cookie: str | None = None

    def gettext(self, message: str, **variables: object) -> str:
        """A message in the visitor's language: me.gettext("Give a reason of %(n)d words.",
        n=5). Marked for the catalogues by its name, like _()."""
        text = translations(self.language).gettext(message)
        return text % variables if variables else text

    def ngettext(self, singular: str, plural: str, n: int, **variables: object) -> str:
        text = translations(self.language).ngettext(singular, plural, n)
        return text % {"n": n, **variables}

    def keep_cookies(self, response: Response) -> None:
        if self.new_browser_cookie:
            set_cookie(response, portal_of(self.request), BROWSER_COOKIE, self.new_browser_cookie)


@dataclass(frozen=True)
class SignedIn(Visitor):
    """A visitor who is signed in: `person` is always there."""

    person: Person


def set_cookie(
    response: Response, portal: Portal, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=portal.secure_cookies,
    )


def delete_cookie(response: Response, portal: Portal, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite="lax", secure=portal.secure_cookies
    )


def _csrf_token(secret: bytes, browser: str, session_id: str) -> str:
    return mac(secret, "csrf", f"{browser}|{session_id}")


def bare_visitor(request: Request) -> Visitor:
    """A visitor known by nothing but the language they chose: for the pages given when no
    session could be read (the portal not configured)."""
    return Visitor(
        request=request,
        language=language(request.cookies.get(LANG_COOKIE)) or DEFAULT_LANGUAGE,
        csrf_token="",
        person=None,
    )


async def _person(request: Request, session_id: str) -> Person | None:
    """The session's person, if the session is live and the person still registered and
    active (else the session is revoked: a deactivated person is signed out at once)."""
    portal = portal_of(request)
    pool = request.app.state.pool
    session_hash = hash_session(session_id)
    idle = timedelta(minutes=portal.settings.portal_idle_minutes)
    async with pool.acquire() as conn:
        row = await db.touch_session(conn, session_hash, idle)
    if row is None:
        return None
    try:
        actor = await service.signed_in(pool, row["role"], row["code"])
    except service.ActionError:
        async with pool.acquire() as conn:
            await db.revoke_session(conn, session_hash)
        return None
    return Person(
        role=row["role"],
        code=row["code"],
        email=row["email"],
        actor=actor,
        language=language(row["language"]) or DEFAULT_LANGUAGE,
        session_hash=session_hash,
    )


async def session_person(request: Request) -> Person | None:
    """Who the request's session cookie signs in, if anyone: for what is no page (the codec
    server) as for pages (`visitor`)."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    return await _person(request, session_id) if session_id else None


async def visitor(request: Request) -> Visitor:
    """Dependency: whoever is on the page. On a POST it first checks the form's CSRF token:
    a form without it, or with another browser's or session's, is refused with a 403 page
    before the page's own code runs, so nothing is changed."""
    portal = portal_of(request)
    if portal.secret is None:
        raise PageError(None, 503, "not_configured.html")
    session_id = request.cookies.get(SESSION_COOKIE, "")
    person = await session_person(request)
    browser = request.cookies.get(BROWSER_COOKIE, "")
    new_browser = None
    if len(browser) < 32:
        browser = new_browser = secrets.token_urlsafe(32)
    chosen = language(request.cookies.get(LANG_COOKIE))
    v = Visitor(
        request=request,
        language=chosen or (person.language if person else DEFAULT_LANGUAGE),
        csrf_token=_csrf_token(portal.secret, browser, session_id),
        person=person,
        new_browser_cookie=new_browser,
    )
    if request.method not in SAFE_METHODS:
        sent = (await request.form()).get(CSRF_FIELD)
        if not isinstance(sent, str) or not hmac.compare_digest(sent, v.csrf_token):
            raise PageError(v, 403, "csrf.html")
    return v


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def signed_in(v: Visitor = Depends(visitor)) -> SignedIn:
    """Dependency: the signed-in person. A visitor who is not signed in is sent to sign in
    (303), and after signing in lands on this page."""
    if v.person is None:
        raise SignInRequired(_here(v.request))
    return SignedIn(**{f.name: getattr(v, f.name) for f in fields(v)})


def only(*roles: str):
    """Dependency: the signed-in person, if their role is one of `roles`; anyone else signed
    in gets a 403 page in their language."""

    async def check(me: SignedIn = Depends(signed_in)) -> SignedIn:
        if me.person.role not in roles:
            raise PageError(me, 403, "forbidden.html")
        return me

    return check


# --- sessions -------------------------------------------------------------------------


async def start_session(
    request: Request, response: Response, role: str, code: str, email: str, lang: str
) -> None:
    """Signs a person in on `response`: a new session (any other of this browser's ends),
    and a new browser cookie, so no form token from before sign-in works after it."""
    portal = portal_of(request)
    session_id = secrets.token_urlsafe(32)
    lifetime = timedelta(hours=portal.settings.portal_session_hours)
    async with request.app.state.pool.acquire() as conn:
        if old := request.cookies.get(SESSION_COOKIE):
            await db.revoke_session(conn, hash_session(old))
        await db.insert_session(conn, hash_session(session_id), role, code, email, lang, lifetime)
    # A session cookie for the browser (no max-age): the server ends the session itself.
    set_cookie(response, portal, SESSION_COOKIE, session_id)
    set_cookie(response, portal, BROWSER_COOKIE, secrets.token_urlsafe(32))


async def end_session(request: Request, response: Response) -> None:
    """Signs out: the session is revoked in PostgreSQL (a copied cookie is worth nothing
    from now on) and the browser's cookies are replaced."""
    portal = portal_of(request)
    if session_id := request.cookies.get(SESSION_COOKIE):
        async with request.app.state.pool.acquire() as conn:
            await db.revoke_session(conn, hash_session(session_id))
    delete_cookie(response, portal, SESSION_COOKIE)
    set_cookie(response, portal, BROWSER_COOKIE, secrets.token_urlsafe(32))


async def revoke_all_sessions(pool, role: str, code: str) -> int:
    """Ends every session of one person, wherever they are signed in; how many."""
    async with pool.acquire() as conn:
        return await db.revoke_sessions(conn, role, code)
