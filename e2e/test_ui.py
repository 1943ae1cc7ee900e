"""`make e2e`: the stack as `make up` runs it, a request taken to review with the CLI, and the
Temporal UI opened in headless Chromium (Debian's package) filtered by the stage search
attribute: the request must be listed, with its summary, and a screenshot is kept in .data/.
The metrics endpoints must answer with the engine's and the SDK's series."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / ".data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    data = Path(tempfile.mkdtemp(prefix="advisory-e2e-"))
    ports = {k: free_port() for k in ("temporal", "ui", "smtp", "metrics", "sdk", "api")}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "ADVISORY_PAYLOAD_KEYS")
    }
    env.update(
        ADVISORY_DATA_DIR=str(data),
        ADVISORY_TEMPORAL_PORT=str(ports["temporal"]),
        ADVISORY_UI_PORT=str(ports["ui"]),
        ADVISORY_SMTP_SINK_PORT=str(ports["smtp"]),
        ADVISORY_METRICS=f"127.0.0.1:{ports['metrics']}",
        ADVISORY_SDK_METRICS=f"127.0.0.1:{ports['sdk']}",
        ADVISORY_API_PORT=str(ports["api"]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "starter.devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "Advisory & Review Engine is up" in line:
            break
        if time.monotonic() > deadline:
            break
    else:
        pytest.fail("make up exited:\n" + "".join(seen))
    assert "is up" in "".join(seen), "".join(seen)
    cli_env = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}"}
    try:
        yield {"env": cli_env, "ports": ports, "data": data}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)


def advisory(stack, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        cwd=ROOT,
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


# Waits are on what the page shows, with generous overall deadlines: on a busy 2-core machine
# the Temporal UI takes many seconds to render, and a short fixed interval never sees it drawn.
PAGE_DEADLINE = 180.0


def wait_until_shown(page, locator, what: str, reload_after: float = 45) -> None:
    """Playwright's own wait for `locator` to be visible; the page is reloaded only after a long
    wait without it (the UI reads the workflow list once per load), until PAGE_DEADLINE."""
    deadline = time.monotonic() + PAGE_DEADLINE
    while True:
        remaining = deadline - time.monotonic()
        try:
            locator.wait_for(state="visible", timeout=max(1.0, min(reload_after, remaining)) * 1000)
            return
        except PlaywrightTimeout:
            if time.monotonic() >= deadline:
                page.screenshot(path=str(SHOTS / "e2e-ui-not-shown.png"), full_page=True)
                raise AssertionError(f"{what} (screenshot: .data/e2e-ui-not-shown.png)") from None
            page.reload(wait_until="domcontentloaded")


def shown_text(page, wanted: list[str]) -> str:
    """The page's text, frames included (the UI renders user metadata as markdown in a
    sandboxed frame), once it shows every `wanted` piece."""
    deadline = time.monotonic() + PAGE_DEADLINE
    while True:
        text = "\n".join(f.locator("body").inner_text() for f in page.frames if f.url)
        missing = [w for w in wanted if w not in text]
        if not missing:
            return text
        assert time.monotonic() < deadline, f"not shown: {missing}"
        page.wait_for_timeout(500)


def eventually(check, what: str, deadline_s: float = PAGE_DEADLINE) -> None:
    """Calls `check` until it holds (returns truthy without raising OSError)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_an_operator_finds_the_request_in_review_in_the_ui(stack, tmp_path):
    request = json.loads((ROOT / "config" / "request.sample.json").read_text(encoding="utf-8"))
    request["agency_reference"] = f"E2E-{int(time.time())}"
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    rid = json.loads(advisory(stack, "--json", "submit", str(path)).stdout)["request_id"]
    advisory(stack, "screen", rid, "accept")
    eventually(
        lambda: (
            json.loads(advisory(stack, "--json", "show", rid).stdout)["state"]["stage"] == "review"
        ),
        "the request did not reach review",
    )

    ports = stack["ports"]
    engine = get(f"http://127.0.0.1:{ports['metrics']}/metrics")
    assert 'advisory_transitions_total{action="screening_accepted",stage="council"}' in engine
    assert "temporal_request_total" in get(f"http://127.0.0.1:{ports['sdk']}/metrics")
    eventually(  # the API starts beside the worker
        lambda: '"openapi"' in get(f"http://127.0.0.1:{ports['api']}/openapi.json"),
        "the API did not answer",
    )

    query = urllib.parse.quote('ReviewStage = "review"')
    url = f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows?query={query}"
    summary = f"critique · {request['agency']['code']} · "
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(url, wait_until="domcontentloaded")
        link = page.get_by_text(f"review-{rid}", exact=True).first
        wait_until_shown(page, link, "the request is not listed")
        page.screenshot(path=str(SHOTS / "e2e-ui-review-list.png"), full_page=True)
        link.click()
        # The request's page: its input is ciphertext; the summary and what it waits for
        # (current details) are under User Metadata.
        metadata = page.get_by_text("User Metadata", exact=True).first
        wait_until_shown(page, metadata, "the request's page did not open")
        metadata.click()
        shown = shown_text(page, [summary, "review: waiting for 0 of 5 opinions"])
        page.screenshot(path=str(SHOTS / "e2e-ui-review-request.png"), full_page=True)
        assert "hong.nt@" not in shown
        browser.close()
