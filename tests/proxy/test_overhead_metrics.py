"""The gateway's own time per request, apart from its upstream and any approval hold
(tameflare-facts.md 7.3: ``aaf_proxy_overhead_seconds``, ``aaf_request_duration_seconds``).

Each traffic record carries ``overhead_ms`` (until the request is about to go upstream or
the gateway's own answer to be written, the hold excepted) and ``held_ms`` (the hold; null
when not held); the control plane observes both histograms from them (docs/server.md,
"Observability"). No assertion here is about speed: only that the hold is not counted as
the gateway's own time, and that the server observes exactly what the gateway reported.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.pipeline import traffic_record
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import (
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    gateway_options,
    github_bot,
)

MERGE = "https://api.github.com/repos/acme/api/pulls/9/merge"
#: How long the held request waits for its approver, at least.
HOLD = 1.2


# -- the record's fields (no sockets) --------------------------------------------------------


def _flow(**fields: Any) -> Flow:
    return Flow(request_id="gw_1", method="GET", host="api.github.com", **fields)


def test_a_forwarded_request_reports_its_time_until_handed_off() -> None:
    start = time.monotonic() - 5.0
    record = traffic_record(_flow(started=start, handed_off=start + 0.25, status=200))
    assert record["overhead_ms"] == 250.0
    assert record["held_ms"] is None
    assert record["latency_ms"] >= 5000.0  # the whole exchange, upstream included


def test_a_held_request_reports_its_hold_apart_from_its_overhead() -> None:
    start = time.monotonic() - 10.0
    flow = _flow(started=start, hold=(start + 1.0, start + 4.0), handed_off=start + 4.5)
    record = traffic_record(flow)
    assert record["held_ms"] == 3000.0
    assert record["overhead_ms"] == 1500.0  # 1 s before the hold, 0.5 s after it
    assert record["latency_ms"] >= 10000.0


def test_a_request_that_ends_while_held_is_held_until_its_record() -> None:
    """The client left, or the gateway stopped, during the hold: held until now, and its
    overhead is what came before the hold."""
    start = time.monotonic() - 10.0
    record = traffic_record(_flow(started=start, hold=(start + 2.0, 0.0), status=499))
    assert record["held_ms"] == pytest.approx(8000.0, abs=500.0)
    assert record["overhead_ms"] == pytest.approx(2000.0, abs=1.0)


def test_a_request_the_gateway_answers_itself_counts_until_its_record() -> None:
    start = time.monotonic() - 1.0
    record = traffic_record(_flow(started=start, status=403))
    assert record["overhead_ms"] == pytest.approx(record["latency_ms"], abs=1.0)
    assert record["held_ms"] is None


def test_a_passthrough_tunnel_reports_no_overhead() -> None:
    """Its record is made when the tunnel closes: its latency is the tunnel's life."""
    flow = Flow(request_id="gw_2", method="CONNECT", scheme="https", host="example.com",
                started=time.monotonic() - 60.0, status=200, reason="passthrough")  # fmt: skip
    record = traffic_record(flow)
    assert record["overhead_ms"] is None
    assert record["held_ms"] is None


# -- through a real gateway and control plane ------------------------------------------------


class Records:
    """An addon keeping what the gateway reports for each flow (as its traffic recorder)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def done(self, flow: Flow) -> None:
        self.records.append(traffic_record(flow))


@pytest.fixture
def setup(live_server: LiveServer, fakes: FakeUpstreams) -> str:
    return github_bot(live_server, fakes)


@pytest.fixture
def gateway(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> Iterator[tuple[RunningGateway, Records]]:
    records = Records()
    control = HttpControl(live_server.url, live_server.gateway_token)
    running = RunningGateway(gateway_options(tmp_path, fakes), control, [records]).start()
    try:
        yield running, records
    finally:
        running.stop()


def _client(running: RunningGateway, key: str) -> httpx.Client:
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    return httpx.Client(proxy=running.proxy_url(key), trust_env=False, timeout=30,
                        verify=ssl.create_default_context(cafile=str(bundle)))  # fmt: skip


def _poll(fn: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _samples(server: LiveServer) -> dict[str, float]:
    """The two histograms' `_count` and `_sum` samples from `/metrics`."""
    text = server.admin("GET", "/metrics").text
    found = re.findall(
        r"^(aaf_(?:proxy_overhead|request_duration)_seconds_(?:count|sum)) (\S+)$", text, re.M
    )
    return {name: float(value) for name, value in found}


def _grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def _pending(server: LiveServer) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.admin(
        "GET", "/v1/approvals", params={"status": "pending"}
    ).json()["approvals"]
    return found


def test_overhead_excludes_the_hold_and_the_upstream(
    live_server: LiveServer, setup: str, gateway: tuple[RunningGateway, Records]
) -> None:
    running, reported = gateway
    before = _samples(live_server)
    assert "aaf_proxy_overhead_seconds_count" in before
    out: list[httpx.Response] = []
    with _client(running, setup) as http:
        auth = {"Authorization": PLACEHOLDER}
        allowed = [http.get("https://api.github.com/user", headers=auth) for _ in range(2)]
        denied = http.delete("https://api.github.com/repos/acme/api")
        thread = threading.Thread(target=lambda: out.append(http.put(MERGE, json={})))
        thread.start()
        (approval,) = _poll(lambda: _pending(live_server))  # (held from before this)
        time.sleep(HOLD)  # a person takes a while
        answer = live_server.admin("POST", f"/v1/approvals/{approval['id']}/approve", json={})
        assert answer.status_code == 200, answer.text
        thread.join(30)
    assert [a.status_code for a in allowed] == [200, 200]
    assert denied.status_code == 403
    assert out[0].status_code == 200

    grown = _poll(lambda: (g := _grown(before, _samples(live_server)))
                  ["aaf_proxy_overhead_seconds_count"] >= 4 and g)  # fmt: skip
    records = _poll(lambda: len(reported.records) >= 4 and list(reported.records))
    assert len(records) == 4
    (held,) = [r for r in records if r["held_ms"] is not None]
    assert held["action"] == "github.pr.merge"
    assert held["held_ms"] >= HOLD * 1000
    assert held["latency_ms"] >= held["held_ms"] + held["overhead_ms"] - 0.01
    assert all(r["overhead_ms"] is not None for r in records)

    # every proxied request is observed once, with what its gateway reported
    assert grown["aaf_proxy_overhead_seconds_count"] == 4
    assert grown["aaf_request_duration_seconds_count"] == 4
    overhead = sum(r["overhead_ms"] for r in records) / 1000
    assert grown["aaf_proxy_overhead_seconds_sum"] == pytest.approx(overhead, abs=1e-6)
    through = sum(r["latency_ms"] - (r["held_ms"] or 0.0) for r in records) / 1000
    assert grown["aaf_request_duration_seconds_sum"] == pytest.approx(through, abs=0.05)
    # the hold is neither the gateway's own time nor the request's way through
    assert grown["aaf_proxy_overhead_seconds_sum"] < held["held_ms"] / 1000
    assert grown["aaf_request_duration_seconds_sum"] < held["latency_ms"] / 1000


# -- the traffic route ------------------------------------------------------------------------


def _record(**fields: Any) -> dict[str, Any]:
    return {"request_id": "r1", "agent": "Bot", "connector": "github", "method": "GET",
            "host": "api.github.com", "path": "/user", "decision": "allow",
            "status_code": 200, "latency_ms": 12.5, **fields}  # fmt: skip


def _ship(server: LiveServer, *records: dict[str, Any]) -> httpx.Response:
    return server.gateway("POST", "/v1/gateway/traffic", json={"records": list(records)})


def test_an_older_gateways_record_is_accepted_and_not_observed(
    shared_live_server: LiveServer,
) -> None:
    """No `overhead_ms`: its `latency_ms` may hold a person's wait, so neither histogram."""
    server = shared_live_server
    before = _samples(server)
    answer = _ship(server, _record())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 1}
    grown = _grown(before, _samples(server))
    assert grown["aaf_proxy_overhead_seconds_count"] == 0
    assert grown["aaf_request_duration_seconds_count"] == 0


def test_a_record_with_its_timings_is_observed_without_its_hold(live_server: LiveServer) -> None:
    before = _samples(live_server)
    held = _record(request_id="r2", latency_ms=60_250.0, overhead_ms=0.5, held_ms=60_000.0)
    mcp = _record(request_id="r3", method="MCP", latency_ms=0.4, overhead_ms=0.4)
    assert _ship(live_server, held, mcp).status_code == 200
    grown = _grown(before, _samples(live_server))
    assert grown["aaf_proxy_overhead_seconds_count"] == 2
    assert grown["aaf_proxy_overhead_seconds_sum"] == pytest.approx(0.0009)
    # a `tf mcp wrap` record has no upstream part: not a request's duration
    assert grown["aaf_request_duration_seconds_count"] == 1
    assert grown["aaf_request_duration_seconds_sum"] == pytest.approx(0.25)
    rows = live_server.admin("GET", "/v1/traffic").json()["traffic"]
    assert {r["request_id"] for r in rows} == {"r2", "r3"}
    assert all("overhead_ms" not in r and "held_ms" not in r for r in rows)  # not stored


@pytest.mark.parametrize("name", ["overhead_ms", "held_ms"])
@pytest.mark.parametrize("value", [-1.0, "1.5", True, [1]])
def test_a_timing_that_is_no_duration_is_refused(
    shared_live_server: LiveServer, name: str, value: object
) -> None:
    answer = _ship(shared_live_server, _record(**{name: value}))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"records.0.{name}"
