"""Real-browser test helpers: daphne (pages + API + WebSockets on one origin) plus the `live_quota`
broadcaster as separate processes on the test database, and Debian's chromium driven by Playwright.

Playwright cannot download browsers here; it drives /usr/bin/chromium. Without it the browser tests
skip, unless REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.live import ROOT, free_port, served, server_env, stop_process

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = ROOT / "artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but there is no browser at {CHROMIUM}")
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")


@contextmanager
def daphne_server(*, port: int | None = None, **env: str) -> Iterator[str]:
    """daphne serving wartiket.asgi (the way `make run` serves) on a free port; yields the base URL."""
    port = port or free_port()
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wartiket.asgi:application"]
    with served(argv, port, quiet=True, **env) as base:
        yield base


@contextmanager
def live_quota_process(**env: str) -> Iterator[subprocess.Popen]:
    """`manage.py live_quota`, running once it has printed its first line."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "live_quota"],
        cwd=ROOT,
        env=server_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        if "pushing changed slots" not in line:
            raise RuntimeError(f"live_quota did not start: {line!r}")
        yield proc
    finally:
        stop_process(proc)
        proc.stdout.close()


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian chromium under Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django would then refuse ORM calls in
    # the test body as if they were made from async code. They are not.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def shifted_clock_script(offset_ms: int) -> str:
    """An init script that sets the page's Date ``offset_ms`` off, as a wrongly set device clock would.

    performance.now() stays as it is: it counts from page load and a wrong wall clock does not move it.
    """
    return f"""
    (() => {{
      const offset = {int(offset_ms)};
      const RealDate = Date;
      class ShiftedDate extends RealDate {{
        constructor(...args) {{
          if (args.length === 0) super(RealDate.now() + offset); else super(...args);
        }}
        static now() {{ return RealDate.now() + offset; }}
      }}
      ShiftedDate.UTC = RealDate.UTC;
      ShiftedDate.parse = RealDate.parse;
      globalThis.Date = ShiftedDate;
    }})();
    """


def session_cookie(base: str, user) -> dict:
    """A logged-in session for ``user`` (sessions live in the Redis the server shares with the test)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base,
    }


class Recorder:
    """Screenshots of each state a test passes through, written to artifacts/<test>/ only if it fails."""

    def __init__(self, test_name: str):
        self.test_name = test_name
        self.shots: list[tuple[str, bytes]] = []
        self.pages: dict[str, object] = {}

    def watch(self, label: str, page) -> None:
        self.pages[label] = page

    def shot(self, label: str, page) -> None:
        self.shots.append((label, page.screenshot(full_page=True)))

    @contextmanager
    def on_failure(self) -> Iterator[Recorder]:
        try:
            yield self
        except BaseException:
            self.save()
            raise

    def save(self) -> Path:
        folder = ARTIFACTS / self.test_name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for index, (label, png) in enumerate(self.shots):
            (folder / f"{index:02d}-{label}.png").write_bytes(png)
        for label, page in self.pages.items():
            with contextlib.suppress(Exception):
                page.screenshot(path=str(folder / f"final-{label}.png"), full_page=True)
        return folder


@contextmanager
def phone_page(browser, site: str, recorder, *, user=None, init_script: str | None = None) -> Iterator[object]:
    """A phone-sized page in a browser context of its own, signed in as ``user`` if given; closed after."""
    context = browser.new_context(viewport=PHONE, locale="id-ID")
    try:
        if init_script:
            context.add_init_script(init_script)
        if user is not None:
            context.add_cookies([session_cookie(site, user)])
        page = context.new_page()
        recorder.watch("page", page)
        yield page
    finally:
        context.close()
