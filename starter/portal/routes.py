"""The portal's own pages: sign-in by e-mailed link, the link's page, sign-out, the language
switch, and the landing page of each role."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.background import BackgroundTask

from db import portal as db
from infra.links import PREFIX, SIGN_IN_VALID_FOR, LinkState, read_link, safe_next
from starter.portal import oidc
from starter.portal.forms import Form
from starter.portal.i18n import LANGUAGES, language
from starter.portal.pages import portal_of, render, sign_in_url
from starter.portal.people import (
    LANG_COOKIE,
    SignedIn,
    Visitor,
    end_session,
    set_cookie,
    signed_in,
    start_session,
    visitor,
)
from starter.portal.sign_in import identities_to_mail, send_sign_in_mail

router = APIRouter()

# Enough to catch a slip (a missing @, a space); the registry decides what is an address.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
YEAR = 365 * 24 * 3600


@router.get("/")
async def home(me: SignedIn = Depends(signed_in)) -> Response:
    if me.person.role == "agency":  # an agency's home is its list of requests
        return RedirectResponse(f"{PREFIX}/requests", status_code=303)
    return render(me, "home.html")


def _sign_in_page(v: Visitor, form: Form, status: int = 200) -> Response:
    settings = portal_of(v.request).settings
    provider = (settings.portal_oidc_name or "") if oidc.configured(settings) else None
    return render(v, "sign_in.html", {"provider": provider}, form=form, status=status)


@router.get("/sign-in")
async def sign_in_form(next: str = "", v: Visitor = Depends(visitor)) -> Response:
    return _sign_in_page(v, Form.of(next=safe_next(next)))


@router.post("/sign-in")
async def sign_in(v: Visitor = Depends(visitor)) -> Response:
    form = await Form.read(v.request)
    address = form.value("email").strip().lower()
    if not EMAIL.match(address) or len(address) > 254:
        form.error("email", v.gettext("Enter your e-mail address, like name@example.vn."))
        return _sign_in_page(v, form, status=422)
    next_path = safe_next(form.value("next"))
    client = v.request.client.host if v.request.client else "unknown"
    portal = portal_of(v.request)
    identities = await identities_to_mail(v.request.app.state.pool, address, client)
    # The same page whether the address is registered, unknown or over a limit: nobody learns
    # from it who is registered.
    minutes = int(SIGN_IN_VALID_FOR.total_seconds() // 60)
    response = render(v, "sign_in_sent.html", {"email": address, "minutes": minutes})
    if identities:
        response.background = BackgroundTask(
            send_sign_in_mail, portal, address, identities, next_path
        )
    return response


async def _link_state(request: Request, token: str):
    portal = portal_of(request)
    assert portal.secret is not None
    state, link = read_link(portal.secret, token)
    if state is LinkState.valid and link is not None:
        async with request.app.state.pool.acquire() as conn:
            if await db.link_used(conn, link.digest):
                state = LinkState.used
    return state, link


def _refused(v: Visitor, state: LinkState, link) -> Response:
    """Why a link cannot be used, with a way to a fresh sign-in link (to the same address,
    when the link could be read)."""
    status = 400 if state is LinkState.tampered else 410
    return render(
        v,
        "link_refused.html",
        {"state": state.value, "link": link},
        status=status,
        form=Form.of(email=link.email, next=link.next_path) if link else None,
    )


# Opening a link (GET) only shows a page with one button; pressing it (POST) uses the link.
# Mail scanners and link previews fetch every address in an e-mail: if the GET used the link,
# the person would find it spent before they clicked it.
@router.get("/link/{token}")
async def link_page(token: str, v: Visitor = Depends(visitor)) -> Response:
    state, link = await _link_state(v.request, token)
    if state is not LinkState.valid or link is None:
        return _refused(v, state, link)
    if v.person is not None:
        if (v.person.role, v.person.code) == (link.role, link.code):
            return RedirectResponse(link.next_path, status_code=303)
        return render(v, "link_other_person.html", {"link": link})
    return render(v, "link.html", {"link": link})


@router.post("/link/{token}")
async def use_link(token: str, v: Visitor = Depends(visitor)) -> Response:
    request = v.request
    state, link = await _link_state(request, token)
    if state is not LinkState.valid or link is None:
        return _refused(v, state, link)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        if not await db.use_link(conn, link.digest, link.expires_at):
            return _refused(v, LinkState.used, link)
        # Still the person's registered address, and the person still active?
        found = [
            i
            for i in await db.identities_by_email(conn, link.email)
            if (i["role"], i["code"]) == (link.role, link.code)
        ]
    if not found:
        return _refused(v, LinkState.withdrawn, link)
    response = RedirectResponse(link.next_path, status_code=303)
    await start_session(request, response, link.role, link.code, link.email, found[0]["language"])
    return response


@router.post("/sign-out")
async def sign_out(v: Visitor = Depends(visitor)) -> Response:
    form = await Form.read(v.request)
    next_path = safe_next(form.value("next")) if form.value("next") else sign_in_url()
    response = RedirectResponse(next_path, status_code=303)
    await end_session(v.request, response)
    return response


@router.get("/language/{lang}")
async def switch_language(lang: str, request: Request, next: str = "") -> Response:
    """The switch every page shows: a plain link, so it works without JavaScript; it only
    sets a cookie, which is harmless to follow from anywhere."""
    response = RedirectResponse(safe_next(next), status_code=303)
    chosen = language(lang)
    if chosen in LANGUAGES:
        set_cookie(response, portal_of(request), LANG_COOKIE, chosen, max_age=YEAR)
    return response
