"""Rendering a page: one Jinja2 environment per language (its catalogue installed for
`{% trans %}` and `_()`), the context every template gets, the headers every page carries,
and the pages given for a refusal (PageError) or a visitor who must sign in first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.calendar import working_calendar
from domain.policy import UnionIdentity
from infra.links import PREFIX
from infra.settings import Settings
from starter.portal.forms import CSRF_FIELD, Form
from starter.portal.i18n import (
    LANGUAGES,
    N_,
    Language,
    deadline_text,
    format_date,
    translations,
)

if TYPE_CHECKING:
    from starter.portal.people import Visitor

# Each language's own name, as its readers write it: the switch offers the other language in
# that language, whatever the page's, so these are not translated.
LANGUAGE_NAMES: dict[Language, str] = {"vi": "Tiếng Việt", "en": "English"}

ROLE_NAMES = {
    "agency": N_("requesting agency"),
    "expert": N_("expert"),
    "coordinator": N_("coordinator"),
    "operator": N_("operator"),
}

# The navigation of each role: (path, message id). Page authors add their pages here.
NAVIGATION: dict[str, list[tuple[str, str]]] = {
    "agency": [
        (f"{PREFIX}/requests", N_("My requests")),
        (f"{PREFIX}/requests/new", N_("Submit a request")),
    ],
    "expert": [(f"{PREFIX}/", N_("Home"))],
    "coordinator": [(f"{PREFIX}/", N_("Home"))],
    "operator": [(f"{PREFIX}/", N_("Home"))],
}


def _environment(lang: Language) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("starter.portal", "templates"),
        # Pages are escaped; the e-mails' plain text (.txt) is not HTML.
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # newstyle: `_()` and `{% trans %}` escape their variables and format with %(name)s.
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["date"] = format_date
    env.filters["deadline"] = _deadline
    return env


@jinja2.pass_context
def _deadline(context: jinja2.runtime.Context, due: datetime) -> str:
    """{{ due | deadline }}: its date and the working days left, by the engine's calendar."""
    calendar = working_calendar(context["request"].app.state.policy.calendar)
    return deadline_text(due, datetime.now(UTC), calendar, context["lang"])


@dataclass
class Portal:
    """What every portal page shares, made once when the app is created (app.state.portal)."""

    settings: Settings
    # Signs links and form tokens; None: the portal is not configured and refuses to serve.
    secret: bytes | None
    union: UnionIdentity
    # Cookies only over https, except on a developer's own machine (http://127.0.0.1).
    secure_cookies: bool
    templates: dict[Language, jinja2.Environment]

    @classmethod
    def of(cls, settings: Settings) -> Portal:
        url = urlsplit(settings.portal_url)
        local = url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1")
        return cls(
            settings=settings,
            secret=settings.resolve_portal_secret(),
            union=settings.load_policy().union,
            secure_cookies=not local,
            templates={lang: _environment(lang) for lang in LANGUAGES},
        )

    def union_name(self, lang: Language) -> str:
        return self.union.name_en if lang == "en" else self.union.name


def portal_of(request: Request) -> Portal:
    return request.app.state.portal


# Pages show people's own data and carry single-use links in their address: never cached,
# never framed, and no Referer (the address) sent anywhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def render(
    visitor: Visitor,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    form: Form | None = None,
) -> HTMLResponse:
    """The page `template` in the visitor's language. Every template gets: `me` (the
    visitor; `me.person` when signed in), `lang`, `csrf_token`, `form` (empty unless given),
    `union_name`, `nav`, `role_name()`, `request`, and the filters `date` and `deadline`."""
    portal = portal_of(visitor.request)
    person = visitor.person
    values = {
        "request": visitor.request,
        "me": visitor,
        "person": person,
        "lang": visitor.language,
        "csrf_field": CSRF_FIELD,
        "csrf_token": visitor.csrf_token,
        "form": form or Form(),
        "union_name": portal.union_name(visitor.language),
        "nav": NAVIGATION.get(person.role, []) if person else [],
        "role_name": lambda role: ROLE_NAMES.get(role, role),
        "other_languages": [(k, v) for k, v in LANGUAGE_NAMES.items() if k != visitor.language],
        "here": _here(visitor.request),
        "quote": lambda s: quote(s, safe=""),
        **(context or {}),
    }
    html = portal.templates[visitor.language].get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    visitor.keep_cookies(response)
    return response


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


class PageError(Exception):
    """Raised by a dependency or a page: the visitor gets `template` with `status` instead.
    Nothing the request asked for is done."""

    def __init__(
        self,
        visitor: Visitor | None,
        status: int,
        template: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {template}")
        self.visitor, self.status, self.template, self.context = visitor, status, template, context


class SignInRequired(Exception):
    """A page for signed-in people was asked for by a visitor who is not."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def sign_in_url(next_path: str | None = None) -> str:
    url = f"{PREFIX}/sign-in"
    return f"{url}?next={quote(next_path, safe='/')}" if next_path else url


def install_handlers(app: FastAPI) -> None:
    from starter.access import NotVisible
    from starter.portal.people import bare_visitor, visitor

    api_not_visible = app.exception_handlers[NotVisible]

    @app.exception_handler(NotVisible)
    async def _not_found(request: Request, exc: NotVisible) -> Response:
        """Not there, or not this person's: on a portal page, the same page for both."""
        if not request.url.path.startswith(f"{PREFIX}/"):
            return await api_not_visible(request, exc)
        try:
            who = await visitor(request)
        except Exception:  # noqa: BLE001 (a 404 page is given whatever stopped the session)
            who = bare_visitor(request)
        return render(who, "not_found.html", status=404)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        visitor = exc.visitor or bare_visitor(request)
        return render(visitor, exc.template, exc.context, status=exc.status)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(sign_in_url(exc.next_path), status_code=303)
