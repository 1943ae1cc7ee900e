"""`make e2e`: the stack as `make up` runs it, a request taken to review with the CLI, and the
Temporal UI opened in headless Chromium (Debian's package) filtered by the stage search
attribute: the request must be listed, with its summary, and a screenshot is kept in .data/.
The metrics endpoints must answer with the engine's and the SDK's series.

A view that does not update by itself, as the UI's workflow list, is refreshed with its own
Refresh button after `REFRESH_AFTER` seconds without what is awaited."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable

from playwright.sync_api import Page

from e2e.stack import (
    ROOT,
    SERVER_DEADLINE,
    SHOTS,
    UI_DEADLINE,
    advisory,
    get,
    ms_left,
    page_text,
    ui_page,
    wait_for_text,
    wait_until,
)


def refresh_button(page: Page, deadline: float) -> Callable[[], None]:
    """Clicks the Temporal UI's Refresh button (a list view's), once the page shows it."""
    return lambda: page.get_by_role("button", name="Refresh").click(timeout=ms_left(deadline))


def test_an_operator_finds_the_request_in_review_in_the_ui(stack, tmp_path):
    request = json.loads((ROOT / "config" / "request.sample.json").read_text(encoding="utf-8"))
    request["agency_reference"] = f"E2E-{int(time.time())}"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    rid = json.loads(advisory(stack, "--json", "submit", str(path)).stdout)["request_id"]
    advisory(stack, "screen", rid, "accept")
    # In review as the UI will ask: Temporal's visibility store, filtered as the page is.
    query = f'WorkflowId = "review-{rid}" AND ReviewStage = "review"'
    wait_until(
        "the request is listed in review by Temporal's visibility",
        lambda: json.loads(advisory(stack, "--json", "list", "--query", query).stdout),
        time.monotonic() + SERVER_DEADLINE,
    )
    assert json.loads(advisory(stack, "--json", "show", rid).stdout)["state"]["stage"] == "review"

    ports = stack["ports"]
    engine = get(f"http://127.0.0.1:{ports['metrics']}/metrics")
    assert 'advisory_transitions_total{action="screening_accepted",stage="council"}' in engine
    assert "temporal_request_total" in get(f"http://127.0.0.1:{ports['sdk']}/metrics")
    wait_until(  # the API starts beside the worker
        "the HTTP API answers",
        lambda: '"openapi"' in get(f"http://127.0.0.1:{ports['api']}/openapi.json"),
        time.monotonic() + SERVER_DEADLINE,
    )

    query = urllib.parse.quote('ReviewStage = "review"')
    url = f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows?query={query}"
    summary = f"critique · {request['agency']['code']} · "
    with ui_page("review") as page:
        deadline = time.monotonic() + UI_DEADLINE
        page.goto(url, timeout=ms_left(deadline))
        refresh = refresh_button(page, deadline)
        link = wait_for_text(page, f"review-{rid}", deadline, exact=True, refresh=refresh)
        page.screenshot(path=str(SHOTS / "e2e-ui-review-list.png"), full_page=True)
        link.click(timeout=ms_left(deadline))
        # The request's page: its input is ciphertext; the summary and what it waits for
        # (current details) are under User Metadata, each in its own frame.
        wait_for_text(page, "User Metadata", deadline, exact=True).click(timeout=ms_left(deadline))
        wait_for_text(page, summary, deadline, frame="#user-metadata-summary")
        waits_for = "review: waiting for 0 of 5 opinions"
        wait_for_text(page, waits_for, deadline, frame="#user-metadata-current-details")
        page.screenshot(path=str(SHOTS / "e2e-ui-review-request.png"), full_page=True)
        assert "hong.nt@" not in page_text(page)
