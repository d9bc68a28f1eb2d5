"""Browser fixtures: Debian's chromium through Playwright (sync API), against a live server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

import agentfirewall_server.dashboard as dashboard

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"
USERS = {
    "owner": "owner@example.com",
    "member": "member@example.com",
    "viewer": "viewer@example.com",
}


def artifacts_dir() -> Path:
    root = Path(os.environ.get("TF_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
    path = root / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shell_url() -> Iterator[str]:
    """Only the dashboard's own routes, served by uvicorn on an ephemeral port."""
    app = Starlette(routes=[Mount("/dashboard", routes=dashboard.routes())])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/dashboard"
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture(scope="module")
def module_page(browser: Any, shell_url: str) -> Iterator[Any]:
    """A page of the dashboard (no API behind it) to import its modules in: `run_module`."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{shell_url}/login")
    yield page
    context.close()


def run_module(page: Any, module: str, body: str, arg: Any = None) -> Any:
    """Run `body` with the module `static/js/<module>` as `m` and `arg` as `arg`."""
    script = f"async (arg) => {{ const m = await import('/dashboard/static/js/{module}'); {body} }}"
    return page.evaluate(script, arg)


@dataclass
class Watched:
    """A page and everything that went wrong in it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def assert_clean(self, *allowed: str) -> None:
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert unexpected == [], unexpected
        assert self.dialogs == [], self.dialogs


@dataclass
class Dashboard:
    """A live server with an owner, a member and a viewer, and a browser to drive it."""

    url: str
    admin: httpx.Client
    browser: Any
    data_dir: Path
    contexts: list[Any] = field(default_factory=list)

    def open(self, role: str | None = "owner", viewport: dict[str, int] | None = None) -> Watched:
        context = self.browser.new_context(viewport=viewport or DESKTOP)
        self.contexts.append(context)
        watched = Watched(context.new_page())
        page = watched.page
        page.set_default_timeout(15_000)
        page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
        page.on("pageerror", lambda e: watched.errors.append(f"page error: {e}"))

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        if role is not None:
            self.sign_in(page, USERS[role])
        return watched

    def sign_in(self, page: Any, email: str) -> None:
        page.goto(f"{self.url}/dashboard/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{self.url}/dashboard/overview")
        wait_ready(page)

    def goto(self, page: Any, path: str) -> None:
        page.goto(f"{self.url}/dashboard{path}")
        wait_ready(page)

    password = PASSWORD
    phone = PHONE

    @staticmethod
    def wait_ready(page: Any) -> None:
        wait_ready(page)

    @staticmethod
    def screenshot(page: Any, name: str) -> Path:
        return screenshot(page, name)

    def api(self, method: str, path: str, json: Any = None) -> Any:
        response = self.admin.request(method, f"/api/v1{path}", json=json)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


def wait_ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='yes']", state="attached")


def screenshot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _create_people(url: str, admin: httpx.Client, data_dir: Path) -> None:
    setup_token = (data_dir / "setup.token").read_text().strip()
    answer = httpx.post(
        f"{url}/api/v1/auth/setup",
        json={"setup_token": setup_token, "email": USERS["owner"], "password": PASSWORD},
    )
    assert answer.status_code < 300, answer.text
    for role in ("member", "viewer"):
        response = admin.post(
            "/api/v1/users", json={"email": USERS[role], "password": PASSWORD, "role": role}
        )
        assert response.status_code < 300, response.text


@pytest.fixture
def shots() -> type[Dashboard]:
    """The screenshot and readiness helpers, for tests without a `dash`."""
    return Dashboard


def admin_client(url: str, headers: dict[str, str]) -> httpx.Client:
    """The tests' own API client beside the browser. An idle connection is not reused past
    1 s: the server closes one idle for 5 s, and a request sent on it as it does (after a
    slow browser step) would get no answer."""
    limits = httpx.Limits(keepalive_expiry=1.0)
    return httpx.Client(base_url=url, headers=headers, timeout=30, limits=limits)


@pytest.fixture
def dash(live_server: Any, browser: Any) -> Iterator[Dashboard]:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with admin_client(live_server.url, headers) as admin:
        _create_people(live_server.url, admin, Path(live_server.data_dir))
        board = Dashboard(live_server.url, admin, browser, Path(live_server.data_dir))
        yield board
        for context in board.contexts:
            context.close()


@dataclass
class GatewayProcess:
    """`python -m agentfirewall_proxy` against the live server, upstreams pointed at fakes."""

    process: subprocess.Popen[bytes]
    port: int
    ca_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)

    def proxy_url(self, name: str, key: str) -> str:
        return f"http://{quote(name, safe='')}:{key}@127.0.0.1:{self.port}"


_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="package")
def github_fake() -> Iterator[Any]:
    from tests.fakes import start_fakes

    running = start_fakes(["github"])
    try:
        yield running
    finally:
        running.stop()


def _start_gateway(live_server: Any, github_fake: Any, tmp_path: Path) -> GatewayProcess:
    log_path = tmp_path / "gateway.log"
    resolve = [arg for entry in github_fake.resolve_entries() for arg in ("--resolve", entry)]
    command = [
        sys.executable, "-m", "agentfirewall_proxy",
        "--control-plane", live_server.url, "--token", live_server.gateway_token,
        "--listen", "127.0.0.1:0", "--ca-dir", str(tmp_path / "gateway-ca"),
        "--upstream-ca", str(github_fake.ca_path), *resolve,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(process, 0, tmp_path / "gateway-ca" / "ca.crt")
    deadline = time.monotonic() + 30
    found = None
    while found is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        found = _LISTENING.search(log_path.read_bytes())
    if found is None:
        gateway.stop()
        raise AssertionError(f"the gateway did not start: {log_path.read_text()}")
    gateway.port = int(found.group(1))
    return gateway


@pytest.fixture
def start_gateway(
    live_server: Any, github_fake: Any, tmp_path: Path
) -> Iterator[Callable[[], GatewayProcess]]:
    """Start the gateway once the test has configured the server (its first config pull)."""
    started: list[GatewayProcess] = []

    def start() -> GatewayProcess:
        started.append(_start_gateway(live_server, github_fake, tmp_path))
        return started[-1]

    yield start
    for gateway in started:
        gateway.stop()
