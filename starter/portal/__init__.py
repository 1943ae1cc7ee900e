"""The web portal: server-rendered pages under /portal, served by the API's own app
(`starter.api.app.create_app` calls `install`). Plain HTML forms that work without
JavaScript; every word a person reads comes from the catalogues
(`locale/{vi,en}/LC_MESSAGES/messages.po`), Vietnamese unless the person reads English.

What a page author uses
=======================

Dependencies (FastAPI `Depends`), from `starter.portal`:

- `visitor` -> `Visitor`: anyone (signed in or not): `.language`, `.csrf_token`, `.person`
  (None when signed out), `.gettext(msg, **vars)`, `.ngettext(...)`.
- `signed_in` -> `SignedIn`: a signed-in person (`.person`: `role`, `code`, `email`,
  `actor` — the `domain.models.Actor` every action records — and `language`). Anyone else is
  sent (303) to sign in and comes back to this page afterwards.
- `only("expert", ...)` -> `SignedIn`: the same, for these roles only; others get a 403 page.

Each of them checks a POST's CSRF token before the page's code runs: a form without the
right token gets a 403 page and nothing is done. Every POST form must carry it:
`{{ forms.csrf() }}`.

Pages: `render(me, "folder/page.html", {...}, form=form, status=...)` renders a template in
the person's language. Templates extend "base.html" (`{% block title %}`, `{% block main %}`)
and import the form macros: `{% import "forms.html" as forms with context %}`, then
`forms.error_summary(form)`, `forms.csrf()`, `forms.field(form, "name", _("Label"),
type="text"|"email"|"textarea"|"select", options=[(value, label)], hint=..., required=True)`.
Filters: `{{ instant | date }}` (dd/mm/yyyy, Vietnam time) and `{{ due | deadline }}`
("04/05/2026 (còn 3 ngày làm việc)"). `Form.read(request)` gives the values posted;
`form.error(name, me.gettext("..."))` refuses a field; render the same template again with
that form (status 422) and the person sees their input kept and the message beside the field.
`PageError(me, status, "template.html", {...})` stops a page with another page.
`NAVIGATION[role]` lists each role's menu: add a page's (path, N_("Label")) there.

Links for e-mails: `task_link(settings, role, code, email, next_path, valid_for)` is an
absolute, signed, single-use URL that signs that person in and lands on `next_path`.

Example: an expert declines an invitation, with a reason required::

    from fastapi import APIRouter, Depends
    from starter.portal import Form, SignedIn, only, render

    router = APIRouter()

    @router.get("/tasks/{request_id}/decline")
    async def decline_form(request_id: str, me: SignedIn = Depends(only("expert"))):
        return render(me, "expert/decline.html", {"request_id": request_id})

    @router.post("/tasks/{request_id}/decline")
    async def decline(request_id: str, me: SignedIn = Depends(only("expert"))):
        form = await Form.read(me.request)
        if len(form.value("reason").strip()) < 10:
            form.error("reason", me.gettext("Say in a sentence why you decline."))
        if not form.ok:
            context = {"request_id": request_id}
            return render(me, "expert/decline.html", context, form=form, status=422)
        ...  # the service layer, acting as me.person.actor
        return RedirectResponse(f"/portal/tasks/{request_id}", status_code=303)

with `templates/expert/decline.html`::

    {% extends "base.html" %}
    {% import "forms.html" as forms with context %}
    {% block title %}{{ _("Decline the invitation") }}{% endblock %}
    {% block main %}
      {{ forms.error_summary(form) }}
      <h1>{{ _("Decline the invitation") }}</h1>
      <form method="post">
        {{ forms.csrf() }}
        {{ forms.field(form, "reason", _("Why do you decline?"), type="textarea") }}
        <button type="submit">{{ _("Decline") }}</button>
      </form>
    {% endblock %}

New message ids go into both catalogues (tests/test_portal_auth.py checks that every id the
templates and code use is in both, translated in Vietnamese).

Sign-in and sessions
====================

GET /portal/sign-in asks for an e-mail address; whatever the address, the answer is the same
page. A registered address (a coordinator's, an expert's, an agency contact's; several
identities get one link each) receives a link valid 15 minutes, usable once. At most 3
requests per address and 20 per client address in 15 minutes are handled (PostgreSQL counts).
The link's page has one button that signs in; the session lives in PostgreSQL (its id hashed),
ends after ADVISORY_PORTAL_IDLE_MINUTES without a request or ADVISORY_PORTAL_SESSION_HOURS in
all, at sign-out, when `revoke_all_sessions` is called for the person, or as soon as the
person is deactivated in their registry.

Behind a reverse proxy, run uvicorn with --proxy-headers and --forwarded-allow-ips so the
per-client limit counts clients, not the proxy.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from infra.links import PREFIX, safe_next, task_link
from infra.settings import Settings
from starter.portal.forms import Form
from starter.portal.i18n import N_, format_date
from starter.portal.pages import NAVIGATION, PageError, Portal, render
from starter.portal.people import (
    Person,
    SignedIn,
    Visitor,
    only,
    revoke_all_sessions,
    signed_in,
    visitor,
)

__all__ = [
    "NAVIGATION",
    "N_",
    "Form",
    "PageError",
    "Person",
    "SignedIn",
    "Visitor",
    "format_date",
    "install",
    "only",
    "render",
    "revoke_all_sessions",
    "safe_next",
    "signed_in",
    "task_link",
    "visitor",
]


def install(app: FastAPI, settings: Settings) -> None:
    """Serves the portal from `app`: its pages under /portal, its stylesheet, and the pages
    given for a refusal. The catalogues and templates are compiled here, once."""
    from starter.portal import agency, codec, council, expert, office, oidc, registries, reports
    from starter.portal.pages import install_handlers
    from starter.portal.routes import router

    app.state.portal = Portal.of(settings)
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=str(files("starter.portal") / "static")),
        name="portal-static",
    )
    # The portal's pages (and the UI's codec server) are no part of the API's OpenAPI document.
    pages_of = (agency, expert, council, office, oidc, registries, reports, codec)
    for pages in (router, *(module.router for module in pages_of)):
        app.include_router(pages, prefix=PREFIX, include_in_schema=False)
    expert.add_navigation()
    registries.add_navigation()
    office.add_navigation()
    reports.add_navigation()
    install_handlers(app)
