"""The API document is the contract: the documentation pages load from the app alone, the
views carry what the workflow's models hold, query parameters and bodies that are not what the
document says are refused naming the field, instants are in UTC with Z, and messages read as
English. (Every answer of tests/test_api.py is checked against the document as it runs.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from domain.messages import RequestState
from domain.models import AssignmentView
from domain.text import with_article
from starter.api import create_app
from starter.api.errors import NOT_JSON
from starter.api.views import Assignment, StaffState, TimelineEvent, utc_values
from tests.test_api import api, token


class References(HTMLParser):
    """Every URL a page makes the browser fetch: scripts, styles, icons, ReDoc's spec-url,
    and the document Swagger UI is told to load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if self.script:
            for line in data.splitlines():
                line = line.strip()
                if line.startswith("url:"):
                    self.urls.append(line.split("'")[1])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_loads_everything_from_the_app_itself(settings, page):
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.internal") as http:
        r = await http.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        refs = References()
        refs.feed(r.text)
        assert len(refs.urls) >= 3, refs.urls  # the script, a style or the icon, the document
        assert "https://" not in r.text and "http://" not in r.text
        for url in refs.urls:
            absolute = urlsplit(urljoin(str(r.url), url))
            assert absolute.netloc == "api.internal", f"{url} is on another host"
            asset = await http.get(absolute.path)
            assert asset.status_code == 200 and asset.content, url
    if page == "/docs":
        # Swagger UI would otherwise send the document to its online validator.
        assert '"validatorUrl": null' in r.text


def test_the_views_carry_every_field_of_the_workflows_models():
    """A field added to the workflow's state or an assignment is added to its view (and so to
    the document) too, instead of vanishing from the answers."""
    assert set(StaffState.model_fields) == set(RequestState.model_fields)
    assert set(Assignment.model_fields) == set(AssignmentView.model_fields)


def test_instants_are_answered_in_utc_with_z():
    ict = timezone(timedelta(hours=7))
    event = TimelineEvent(
        at=datetime(2026, 3, 10, 6, 59, 59, tzinfo=ict), action="a", stage="review"
    )
    assert event.model_dump(mode="json")["at"] == "2026-03-09T23:59:59Z"
    assert TimelineEvent.model_json_schema(mode="serialization")["properties"]["at"]["pattern"]
    with pytest.raises(ValidationError):  # an instant without a zone has no one meaning
        TimelineEvent(at=datetime(2026, 3, 10), action="a", stage="review")
    details = {
        "to": "2026-03-12T23:59:59+07:00",
        "at": ["2026-03-12T16:59:59.5+00:00"],
        "reason": "2026-03-12 is a holiday",
        "days": 3,
    }
    assert utc_values(details) == {
        "to": "2026-03-12T16:59:59Z",
        "at": ["2026-03-12T16:59:59.500000Z"],
        "reason": "2026-03-12 is a holiday",
        "days": 3,
    }
    assert datetime.fromisoformat(utc_values("2026-03-12T23:59:59+07:00")).tzinfo == UTC


def test_articles_follow_the_first_letter():
    assert with_article("operator") == "an operator"
    assert with_article("answer adoption") == "an answer adoption"
    assert with_article("coordinator") == "a coordinator"


async def test_what_the_document_does_not_allow_is_refused_naming_the_field(
    env, worker, pool, settings
):
    coordinator = await token(pool, "coordinator", "VP01")
    operator = await token(pool, "operator", "Trực vận hành")
    screening = "/requests/R-0000000000/screening"
    async with api(env, pool, settings, worker) as http:
        # Stage and kind are the document's enums: anything else is named, not an empty list.
        for field in ("stage", "kind"):
            r = await http.get("/requests", params={field: "bogus"}, headers=coordinator)
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == f"query.{field}"
        ok = await http.get("/requests", params={"stage": "review"}, headers=coordinator)
        assert ok.status_code == 200
        # A misspelt filter would otherwise answer with everything.
        for path in ("/requests", "/me/inbox"):
            r = await http.get(path, params={"stag": "review"}, headers=coordinator)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.stag"

        # Bodies that are not JSON: each a 422 naming the body, never an undocumented 400.
        json_type = {**coordinator, "content-type": "application/json"}
        for content, headers, says in [
            (b'{"decision": "acc\xff\xfe"}', json_type, NOT_JSON),
            (b'{"decision": ', json_type, "not valid JSON: Expecting value at character 13"),
            (b"[" * 100_000, json_type, "not valid JSON: nested too deeply"),
            (b'{"decision": "accept"}', {**coordinator, "content-type": "text/plain"}, NOT_JSON),
        ]:
            r = await http.post(screening, content=content, headers=headers)
            assert r.status_code == 422, r.text
            assert r.json()["errors"] == [{"field": "body", "message": says}]
            assert r.json()["detail"] == f"body: {says}"

        # Messages read as English.
        r = await http.post(screening, json={"decision": "accept"}, headers=operator)
        assert r.status_code == 403 and r.json()["detail"] == "an operator may not do this"
