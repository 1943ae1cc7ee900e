"""`make e2e`: the stack as `make up` runs it, a request taken to review with the CLI, and the
Temporal UI opened in headless Chromium (Debian's package) filtered by the stage search
attribute: the request must be listed, with its summary, and a screenshot is kept in .data/.
The metrics endpoints must answer with the engine's and the SDK's series. Then the codec
server as an operator meets it: signed in to the portal, the UI shows a request's input in
clear; in a browser signed out, with the same UI setting, ciphertext (screenshots
.data/e2e/ui-*.png).

A view that does not update by itself, as the UI's workflow list, is refreshed with its own
Refresh button after `REFRESH_AFTER` seconds without what is awaited."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator

from playwright.sync_api import Browser, Page, expect

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
from e2e.test_portal import chromium, link_in, mail_to, mails
from infra.settings import Settings
from infra.temporal import temporal_ui_url


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


OPERATOR = "viet.tq@lienhiephoi.example.vn"  # config/operators.sample.csv
UI_SHOTS = ROOT / ".data" / "e2e"


@contextlib.contextmanager
def browser_page(browser: Browser, name: str) -> Iterator[Page]:
    """A browser of its own (cookies, local storage) whose actions wait up to `UI_DEADLINE`;
    if the test fails while it is open, the page is kept as .data/e2e/ui-<name>-failed.png."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_DEADLINE * 1000)
    try:
        yield page
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(UI_SHOTS / f"ui-{name}-failed.png"), full_page=True)
        raise
    finally:
        context.close()


def use_codec(page: Page, ui: str, endpoint: str, deadline: float) -> None:
    """This browser's Codec Server setting, made as a person makes it in the UI: the icon in
    its top bar, "Use my browser setting", the endpoint, "Include cross-origin credentials"
    (the dev server's own setting never includes them), Apply."""
    page.goto(f"{ui}/namespaces/default/workflows", timeout=ms_left(deadline))
    page.locator("[data-testid^=data-encoder-status]").click(timeout=ms_left(deadline))
    dialog = page.locator("#data-encoder-settings")
    dialog.get_by_text("Use my browser setting").click(timeout=ms_left(deadline))
    dialog.locator("#data-encoder-endpoint-input").fill(endpoint, timeout=ms_left(deadline))
    dialog.get_by_text("Include cross-origin credentials").click(timeout=ms_left(deadline))
    page.screenshot(path=str(UI_SHOTS / "ui-codec-setting.png"))
    dialog.get_by_role("button", name="Apply").click(timeout=ms_left(deadline))


def test_signed_in_staff_read_the_input_in_clear_and_a_signed_out_browser_ciphertext(
    stack, tmp_path
):
    UI_SHOTS.mkdir(parents=True, exist_ok=True)
    ports = stack["ports"]
    portal = f"http://127.0.0.1:{ports['api']}"
    ui = f"http://127.0.0.1:{ports['ui']}"
    request = json.loads((ROOT / "config" / "request.sample.json").read_text(encoding="utf-8"))
    stamp = int(time.time())
    request["agency_reference"] = f"E2E-CODEC-{stamp}"
    request["title"] = f"Dự thảo Đề án chuyển đổi số ngành tài nguyên (lần {stamp})"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    rid = json.loads(advisory(stack, "--json", "submit", str(path)).stdout)["request_id"]
    wait_until(
        "the portal answers",
        lambda: "ok" in get(f"{portal}/health"),
        time.monotonic() + SERVER_DEADLINE,
    )
    # The page the case page links to: the request's workflow, the UI opening its latest run.
    request_page = temporal_ui_url(Settings(temporal_ui_url=ui), rid)
    assert request_page == f"{ui}/namespaces/default/workflows/review-{rid}"
    codec = f"{portal}/portal/codec"

    with chromium() as browser:
        deadline = time.monotonic() + UI_DEADLINE
        with browser_page(browser, "codec-signed-in") as page:
            # Signed in to the portal as the registry's operator, from the e-mailed link.
            before = len([m for m in mails(stack["data"]) if OPERATOR in m["To"]])
            page.goto(f"{portal}/portal/sign-in", timeout=ms_left(deadline))
            page.fill("input[name=email]", OPERATOR)
            page.locator("main form button[type=submit]").click()
            link = link_in(mail_to(stack, OPERATOR, None, after=before), "Đăng nhập")
            page.goto(link, timeout=ms_left(deadline))
            page.locator("main form button[type=submit]").first.click()
            expect(page).to_have_url(re.compile(r"/portal/$"), timeout=ms_left(deadline))

            use_codec(page, ui, codec, deadline)
            page.goto(request_page, timeout=ms_left(deadline))
            wait_for_text(page, request["title"], deadline)  # in its input, decoded
            page.screenshot(path=str(UI_SHOTS / "ui-codec-signed-in.png"), full_page=True)
            # Its summary names no title; its details link to the case page.
            wait_for_text(page, "User Metadata", deadline, exact=True).click()
            summary = f"critique · {request['agency']['code']} · {rid}"
            wait_for_text(page, summary, deadline, frame="#user-metadata-summary")
            case = wait_for_text(page, f"Case {rid}", deadline, frame="#user-metadata-details")
            assert case.get_attribute("href") == f"{portal}/portal/cases/{rid}"
            page.screenshot(path=str(UI_SHOTS / "ui-codec-case-link.png"), full_page=True)

        with browser_page(browser, "codec-signed-out") as page:
            # The same UI setting, no portal session: the codec refuses, the UI says so.
            use_codec(page, ui, codec, deadline)
            page.goto(request_page, timeout=ms_left(deadline))
            # The banner, not the codec icon's tooltip of the same words (hidden).
            refused = page.locator("text=Codec Server could not connect >> visible=true")
            expect(refused.first).to_be_visible(timeout=ms_left(deadline))
            ciphertext = page.get_by_text(re.compile(r'"[A-Za-z0-9+/]{200,}')).first
            expect(ciphertext).to_be_visible(timeout=ms_left(deadline))  # its input
            page.screenshot(path=str(UI_SHOTS / "ui-codec-signed-out.png"), full_page=True)
            seen = page_text(page)
            assert request["title"] not in seen
            assert "hong.nt@" not in seen and '"submission"' not in seen
