"""The gateway against the real control plane (``live_server``): config, traffic,
heartbeats, approvals decided through the admin API, the kill switch, restarts."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.cli.monitor import decision_text
from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import (
    CREDENTIALS,
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    gateway_options,
    github_bot,
)

MERGE = "https://api.github.com/repos/acme/api/pulls/9/merge"


@pytest.fixture
def setup(live_server: LiveServer, fakes: FakeUpstreams) -> str:
    return github_bot(live_server, fakes)


@pytest.fixture
def start(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[Callable[[], RunningGateway]]:
    started: list[RunningGateway] = []

    def run() -> RunningGateway:
        control = HttpControl(live_server.url, live_server.gateway_token)
        running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop()


def client(running: RunningGateway, key: str, timeout: float = 30) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    return httpx.Client(proxy=running.proxy_url(key), trust_env=False, timeout=timeout,
                        verify=ssl.create_default_context(cafile=str(bundle)))  # fmt: skip


def poll(fn: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def refused_by_kill_switch(http: httpx.Client) -> httpx.Response | None:
    try:
        answer = http.get("http://api.github.com/user")
    except httpx.TransportError:
        return None  # an in-flight request cut by the switch
    return answer if answer.status_code == 403 else None


def pending(live_server: LiveServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = live_server.admin(
        "GET", "/v1/approvals", params={"status": "pending"}
    ).json()["approvals"]
    return found


def test_allow_deny_traffic_and_heartbeat(
    live_server: LiveServer, setup: str, start: Callable[[], RunningGateway], fakes: FakeUpstreams
) -> None:
    running = start()
    with client(running, setup) as http:
        ok = http.get("https://api.github.com/user", headers={"Authorization": PLACEHOLDER})
        denied = http.delete("https://api.github.com/repos/acme/api")
    assert ok.status_code == 200
    assert denied.status_code == 403
    assert fakes["github"].last().header("authorization") == f"token {CREDENTIALS['github']}"
    rows = poll(lambda: live_server.admin("GET", "/v1/traffic").json()["traffic"])
    rows = poll(lambda: len(live_server.admin("GET", "/v1/traffic").json()["traffic"]) >= 2
                and live_server.admin("GET", "/v1/traffic").json()["traffic"])  # fmt: skip
    assert {r["decision"] for r in rows} >= {"allow", "deny"}
    status = poll(
        lambda: (s := live_server.admin("GET", "/v1/status").json())["gateway"]["online"] and s
    )
    assert status["gateway"]["online"] is True


def test_held_request_approved_through_the_api(
    live_server: LiveServer, setup: str, start: Callable[[], RunningGateway], fakes: FakeUpstreams
) -> None:
    running = start()
    out: list[httpx.Response] = []
    with client(running, setup) as http:
        thread = threading.Thread(target=lambda: out.append(http.put(MERGE, json={})))
        thread.start()
        (approval,) = poll(lambda: pending(live_server))
        assert approval["source"] == "proxy"
        assert approval["request"]["host"] == "api.github.com"
        answer = live_server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
        assert answer.status_code == 200, answer.text
        thread.join(30)
    assert out[0].status_code == 200
    assert len(fakes["github"].received("PUT")) == 1


def test_an_approved_request_whose_upstream_fails_is_recorded_as_approved(
    live_server: LiveServer, setup: str, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    """Approved, then GitHub cannot be reached: the agent gets 502 and the traffic record
    says both (`tf logs`: held → approved, status 502), not the upstream error alone."""
    with socket.socket() as closed:  # a port that was just free: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    options = gateway_options(
        tmp_path, fakes, resolve=parse_resolve([f"api.github.com=127.0.0.1:{port}"])
    )
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(options, control).start()
    try:
        out: list[httpx.Response] = []
        with client(running, setup) as http:
            thread = threading.Thread(target=lambda: out.append(http.put(MERGE, json={})))
            thread.start()
            (approval,) = poll(lambda: pending(live_server))
            live_server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
            thread.join(30)
        assert out[0].status_code == 502

        def failed_merges() -> list[dict[str, Any]]:
            rows = live_server.admin("GET", "/v1/traffic").json()["traffic"]
            return [t for t in rows if t.get("action") == "github.pr.merge"
                    and t.get("status_code") == 502]  # fmt: skip

        records = poll(failed_merges)
        assert records[0]["status_code"] == 502
        assert records[0]["reason"].startswith("approved; ")
        assert decision_text(records[0]) == "held → approved"
    finally:
        running.stop()


def test_many_held_requests_share_batched_long_polls(
    live_server: LiveServer, setup: str, start: Callable[[], RunningGateway], fakes: FakeUpstreams
) -> None:
    running = start()
    assert running.gateway is not None
    running.gateway.holds.chunk = 4  # 12 held requests: three long-polls of four ids
    out: dict[int, int] = {}

    def merge(http: httpx.Client, number: int) -> None:
        url = f"https://api.github.com/repos/acme/api/pulls/{number}/merge"
        out[number] = http.put(url, json={}).status_code

    with client(running, setup) as http:
        threads = [threading.Thread(target=merge, args=(http, n)) for n in range(1, 13)]
        for thread in threads:
            thread.start()
        held = poll(lambda: len(found := pending(live_server)) == 12 and found, timeout=20)
        for approval in held:
            number = int(approval["action_spec"]["parameters"]["pull_number"])
            verb = "approve" if number % 2 else "deny"
            live_server.admin("POST", f"/v1/approvals/{approval['id']}/{verb}", json={})
        for thread in threads:
            thread.join(30)
    assert out == {n: 200 if n % 2 else 403 for n in range(1, 13)}
    merged = {r.path for r in fakes["github"].received("PUT")}
    assert merged == {f"/repos/acme/api/pulls/{n}/merge" for n in range(1, 13, 2)}


def test_approval_survives_a_gateway_restart_and_the_retry_goes_through_once(
    live_server: LiveServer, setup: str, start: Callable[[], RunningGateway], fakes: FakeUpstreams
) -> None:
    first = start()
    with client(first, setup, timeout=1.0) as http, pytest.raises(httpx.ReadTimeout):
        http.put(MERGE, json={"merge_method": "squash"})
    first.stop()
    (approval,) = poll(lambda: pending(live_server))
    live_server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
    second = start()
    with client(second, setup) as http:
        assert http.put(MERGE, json={"merge_method": "squash"}).status_code == 200
    assert len(fakes["github"].received("PUT")) == 1
    assert pending(live_server) == []


def test_kill_switch_from_the_api_applies_within_a_second(
    live_server: LiveServer, setup: str, start: Callable[[], RunningGateway]
) -> None:
    running = start()
    with client(running, setup) as http:
        assert http.get("http://api.github.com/user").status_code == 200
        answer = live_server.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
        assert answer.status_code in (200, 201), answer.text
        refused = poll(lambda: refused_by_kill_switch(http), timeout=1.5)
    assert refused.headers["x-tameflare-kill-switch"] == "active"
