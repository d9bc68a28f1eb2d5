"""A traffic batch the control plane refuses for one record loses no other: the gateway's
shipper sends the refused batch's records again one by one, drops only those the control
plane refuses, and says each drop once with the control plane's answer and the record's
request id, never what the record holds (a real control plane; records of every shape its
traffic route refuses: ``TrafficRecord`` in agentfirewall_server/routes/gateway.py).

Before: a 4xx answer to a batch dropped the whole batch; every good record in it was lost.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.control import HttpControl
from agentfirewall_proxy.traffic import TrafficShipper
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, PLACEHOLDER, RunningGateway, ca_bundle, gateway_options

AGENT = "Chat-Bot"
SECRET = "sk-live-" + "s3cr3t" * 6
#: Ways a record is refused by the control plane (each holds the secret where it can).
BAD: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "reason_too_long": lambda r: {**r, "reason": SECRET + "x" * 2001},
    "unknown_decision": lambda r: {**r, "decision": "maybe", "reason": SECRET},
    "integer_past_64_bits": lambda r: {**r, "input": {"amount": 10**30, "key": SECRET}},
    "nul_in_path": lambda r: {**r, "path": f"/v1/{SECRET}\x00"},
    "unknown_field": lambda r: {**r, "token": SECRET},
    "method_too_long": lambda r: {**r, "method": "M" * 17, "host": SECRET},
    "negative_bytes": lambda r: {**r, "bytes_in": -1, "path": f"/{SECRET}"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = LiveServer.start(tmp_path_factory.mktemp("traffic") / "tf")
    yield started
    started.stop()


def _record(action: str, number: int) -> dict[str, Any]:
    return {
        "request_id": f"{action}-{number}",
        "agent": "Bot",
        "action": action,
        "method": "POST",
        "host": "api.example.com",
        "path": "/v1/things",
        "decision": "allow",
        "status_code": 200,
        "created_at": f"2026-12-06T09:00:00.{number:06d}Z",
    }


def _mixed(action: str, kinds: list[str | None]) -> list[dict[str, Any]]:
    """A record per kind: good (None), or refused that way."""
    return [_record(action, i) if kind is None else BAD[kind](_record(action, i))
            for i, kind in enumerate(kinds)]  # fmt: skip


def _stored(server: LiveServer, action: str) -> list[str]:
    answer = server.admin("GET", "/v1/traffic", params={"action": action, "limit": 1000})
    assert answer.status_code == 200
    return sorted(row["request_id"] for row in answer.json()["traffic"])


def _ship(
    server: LiveServer, records: list[dict[str, Any]], *, batch: int, token: str | None = None
) -> tuple[TrafficShipper, list[str]]:
    """`records` recorded and flushed by a shipper to `server` (with `token`, else the
    gateway token): the shipper, and what it said."""
    said: list[str] = []

    async def main() -> TrafficShipper:
        control = HttpControl(server.url, token or server.gateway_token)
        shipper = TrafficShipper(control, batch=batch, say=lambda m, _level="info": said.append(m))
        try:
            for record in records:
                shipper.record(record)
            await shipper.flush()
        finally:
            await control.aclose()
        return shipper

    return asyncio.run(main()), said


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_record_shape_refused_is_refused_alone(server: LiveServer, kind: str) -> None:
    """(The shapes the tests use are ones the control plane refuses.)"""
    action = f"test.alone.{uuid.uuid4().hex[:8]}"
    shipper, said = _ship(server, _mixed(action, [kind]), batch=10)
    assert (shipper.sent, shipper.dropped) == (0, 1)
    assert _stored(server, action) == []
    assert len(said) == 1
    assert f"traffic record `{action}-0` dropped: the control plane refused it" in said[0]
    assert "422" in said[0] or "400" in said[0]
    assert SECRET not in said[0]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.one_of(st.none(), st.sampled_from(sorted(BAD))), min_size=1, max_size=10),
    batch=st.integers(min_value=1, max_value=6),
)
def test_a_refused_record_loses_no_other(
    server: LiveServer, kinds: list[str | None], batch: int
) -> None:
    action = f"test.mixed.{uuid.uuid4().hex[:8]}"
    records = _mixed(action, kinds)
    shipper, said = _ship(server, records, batch=batch)
    good = sorted(r["request_id"] for r, kind in zip(records, kinds, strict=True) if kind is None)
    bad = [r["request_id"] for r, kind in zip(records, kinds, strict=True) if kind is not None]
    assert _stored(server, action) == good
    assert (shipper.sent, shipper.dropped) == (len(good), len(bad))
    assert len(said) == len(bad)  # each drop said once
    for ident, line in zip(bad, said, strict=True):
        assert f"traffic record `{ident}` dropped" in line
    assert not any(SECRET in line for line in said)


def test_records_refused_with_the_gateway_are_kept(server: LiveServer) -> None:
    """A wrong gateway token (401) refuses the gateway, not its records: none is dropped,
    and the next flush with the right token stores them all."""
    action = f"test.token.{uuid.uuid4().hex[:8]}"
    records = _mixed(action, [None, None, "unknown_field"])

    async def main() -> TrafficShipper:
        wrong = HttpControl(server.url, "tf_gw_" + "0" * 40)
        shipper = TrafficShipper(wrong, batch=10, say=lambda _m, _l="info": None)
        try:
            for record in records:
                shipper.record(record)
            await shipper.flush()
            assert (shipper.sent, shipper.dropped) == (0, 0)
        finally:
            await wrong.aclose()
        shipper.control = right = HttpControl(server.url, server.gateway_token)
        try:
            await shipper.flush()
        finally:
            await right.aclose()
        return shipper

    shipper = asyncio.run(main())
    assert (shipper.sent, shipper.dropped) == (2, 1)
    assert _stored(server, action) == [f"{action}-0", f"{action}-1"]


def test_records_kept_while_the_control_plane_is_unreachable(server: LiveServer) -> None:
    action = f"test.down.{uuid.uuid4().hex[:8]}"
    records = _mixed(action, [None, "reason_too_long", None])
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]

    async def main() -> TrafficShipper:
        down = HttpControl(f"http://127.0.0.1:{closed}", "tf_gw_" + "0" * 40)
        shipper = TrafficShipper(down, batch=10, say=lambda _m, _l="info": None)
        try:
            for record in records:
                shipper.record(record)
            await shipper.flush()
            assert (shipper.sent, shipper.dropped) == (0, 0)
        finally:
            await down.aclose()
        shipper.control = up = HttpControl(server.url, server.gateway_token)
        try:
            await shipper.flush()
        finally:
            await up.aclose()
        return shipper

    shipper = asyncio.run(main())
    assert (shipper.sent, shipper.dropped) == (2, 1)
    assert _stored(server, action) == [f"{action}-0", f"{action}-2"]


def test_an_agent_request_whose_record_is_refused_erases_no_other(
    live_server: LiveServer, fakes: FakeUpstreams, tmp_path: Path
) -> None:
    """Through the real gateway: an agent's call with a `max_tokens` past 64 bits makes a
    record the control plane refuses (its decision input holds the number); the calls
    shipped in the same batch with it are all listed."""
    key = live_server.create_agent(AGENT)
    body = {"type": "openai", "token": CREDENTIALS["openai"]}
    assert live_server.admin("POST", "/v1/connectors", json=body).status_code == 201
    rule = {"agent": AGENT, "connector": "openai", "action_pattern": "openai.*",
            "decision": "allow"}  # fmt: skip
    assert live_server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    # one batch of four records, shipped once it is full
    options = gateway_options(tmp_path, fakes, traffic_batch=4, traffic_interval=60.0)
    running = RunningGateway(options, HttpControl(live_server.url, live_server.gateway_token))
    running.start()
    try:
        bundle = ca_bundle(running.ca_path, tmp_path / "bundle.pem")
        verify = ssl.create_default_context(cafile=str(bundle))
        with httpx.Client(proxy=running.proxy_url(key, AGENT), trust_env=False, verify=verify,
                          timeout=20) as http:  # fmt: skip
            client = openai.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0)
            fakes["openai"].clear()
            messages: Any = [{"role": "user", "content": "hi"}]
            for limit in (10, 10**30, 10, 10):
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=limit,
                                               messages=messages)  # fmt: skip
        ids = [r.header("x-tameflare-request-id") for r in fakes["openai"].received()]
        good = sorted(str(i) for i in ids[:1] + ids[2:])

        def listed() -> list[str]:
            rows = live_server.admin("GET", "/v1/traffic", params={"agent": AGENT}).json()
            return sorted(row["request_id"] for row in rows["traffic"])

        deadline = time.monotonic() + 20
        while listed() != good and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listed() == good
        assert running.gateway is not None
        assert running.gateway.shipper.dropped == 1
    finally:
        running.stop()
