"""What every browser test shares: the stack as `make up` runs it (one for the whole run), the
CLI against it, waiting on conditions, and pages in headless Chromium (Debian's package).

Waiting: every wait is on the condition itself with a generous deadline, never a fixed short
interval, because a busy 2-core machine may take many seconds to start the stack or to render
a page. In the browser that means Playwright's own auto-waiting on a locator (`wait_for_text`);
a page is loaded once and never reloaded (a reload restarts a render that may take longer
than any fixed interval). Browser tests open their page with `ui_page`, which keeps a
screenshot of the page when the test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
SHOTS = ROOT / ".data"

STACK_DEADLINE = 300  # s for `make up` to say it is up (embedded PostgreSQL, Temporal, worker)
SERVER_DEADLINE = 120  # s for the engine (CLI, HTTP API) to get somewhere
UI_DEADLINE = 240  # s for everything one browser test waits on
REFRESH_AFTER = 25  # s without the awaited text before refreshing (the UI's list does not
# update by itself)

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack():
    data = Path(tempfile.mkdtemp(prefix="advisory-e2e-"))
    ports = {k: free_port() for k in ("temporal", "ui", "smtp", "metrics", "sdk", "api")}
    # The shipped policy, but an advisory request's council waits for the coordinator, who
    # confirms or edits it in the portal (the browser test's requests are advisory).
    policy = data / "policy.toml"
    policy.write_text(
        (CONFIG / "policy.toml")
        .read_text(encoding="utf-8")
        .replace(
            "[kinds.advisory]            # tư vấn\ncouncil_size = 3\nquorum = 2\n"
            'council_confirmation = "auto"',
            '[kinds.advisory]\ncouncil_size = 3\nquorum = 2\ncouncil_confirmation = "coordinator"',
        ),
        encoding="utf-8",
    )
    assert 'council_confirmation = "coordinator"' in policy.read_text(encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "ADVISORY_PAYLOAD_KEYS")
    }
    env.update(
        ADVISORY_DATA_DIR=str(data),
        ADVISORY_POLICY_FILE=str(policy),
        ADVISORY_TEMPORAL_PORT=str(ports["temporal"]),
        ADVISORY_UI_PORT=str(ports["ui"]),
        ADVISORY_SMTP_SINK_PORT=str(ports["smtp"]),
        ADVISORY_METRICS=f"127.0.0.1:{ports['metrics']}",
        ADVISORY_SDK_METRICS=f"127.0.0.1:{ports['sdk']}",
        ADVISORY_API_PORT=str(ports["api"]),
        # For the CLI too: the requests it submits link to their case pages on this portal.
        ADVISORY_PORTAL_URL=f"http://127.0.0.1:{ports['api']}",
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
    # Its output is read on a thread for as long as it runs (so the deadline holds even while
    # it prints nothing, and the pipe never fills); `settled` is set once it is up or gone.
    seen: list[str] = []
    settled = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Advisory & Review Engine is up" in line:
                settled.set()
        settled.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        settled.wait(STACK_DEADLINE)
        if not any("is up" in line for line in seen):
            why = "exited" if proc.poll() is not None else f"is not up after {STACK_DEADLINE} s"
            pytest.fail(f"make up {why}:\n" + "".join(seen))
        cli_env = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}"}
        yield {"env": cli_env, "ports": ports, "data": data}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def advisory(stack, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        cwd=ROOT,
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=SERVER_DEADLINE,
    )
    assert out.returncode == 0, out.stderr
    return out


def get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def wait_until(what: str, check: Callable[[], T | None], deadline: float) -> T:
    """`check()`'s first truthy answer (exceptions count as "not yet"), asked again as soon as
    each answer comes back (with a short growing pause) until `deadline` (time.monotonic());
    for conditions outside the browser: the CLI, HTTP endpoints."""
    pause, last = 0.2, None
    while True:
        try:
            result = check()
            if result:
                return result
            last = repr(result)
        except Exception as err:  # e.g. connection refused while it starts
            last = f"{type(err).__name__}: {err}"
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{what}: not so by the deadline (last: {last})")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 3)


def ms_left(deadline: float) -> float:
    """Milliseconds to `deadline`, at least 1 (Playwright takes a timeout of 0 as none)."""
    return max((deadline - time.monotonic()) * 1000, 1)


@contextlib.contextmanager
def ui_page(name: str) -> Iterator[Page]:
    """A page in headless Chromium (Debian's) whose actions wait up to `UI_DEADLINE`; if the
    test fails while it is open, the page is kept as .data/e2e-ui-<name>-failed.png."""
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.set_default_timeout(UI_DEADLINE * 1000)
            page.set_default_navigation_timeout(UI_DEADLINE * 1000)
            try:
                yield page
            except BaseException:
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(SHOTS / f"e2e-ui-{name}-failed.png"), full_page=True)
                raise
        finally:
            browser.close()


def wait_for_text(
    page: Page,
    text: str,
    deadline: float,
    *,
    frame: str | None = None,
    exact: bool = False,
    refresh: Callable[[], object] | None = None,
    refresh_after: float = REFRESH_AFTER,
) -> Locator:
    """The first element showing `text` (in the iframe matching the selector `frame`, if
    given), once visible: Playwright's auto-waiting until `deadline` (time.monotonic()).
    `refresh`, for views that do not update by themselves, is done after each `refresh_after`
    seconds without it; make it an action on the drawn page (clicking the UI's own Refresh
    button auto-waits until the page has drawn it): a reload would restart a slow render."""
    scope = page.frame_locator(frame) if frame else page
    locator = scope.get_by_text(text, exact=exact).first
    while True:
        left = ms_left(deadline)
        try:
            expect(locator).to_be_visible(
                timeout=min(left, refresh_after * 1000) if refresh else left
            )
            return locator
        except AssertionError:
            if not refresh or deadline - time.monotonic() < 1:
                where = f" in {frame}" if frame else ""
                pytest.fail(f"not shown{where} by the deadline: {text!r} ({page.url})")
        refresh()


def page_text(page: Page) -> str:
    """The page's text, frames included (the UI renders user metadata as markdown in
    sandboxed frames)."""
    return "\n".join(f.locator("body").inner_text() for f in page.frames if f.url)
