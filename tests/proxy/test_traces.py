"""Traces reach an OTLP collector from a real gateway and a real control plane, with the
decision's names as attributes; no secret is in any span or log line.

The server (``python -m agentfirewall_server``) and the gateway (``python -m
agentfirewall_proxy``) run as processes with ``--otlp-endpoint`` set to an in-process
OTLP/HTTP receiver and ``--log-format json``. Through the gateway: a request held for
approval and approved, then one denied; through the SDK API: an allowed decision that is
executed, and a held one. Each carries the agent's ``traceparent``; the upstream gets one
naming TameFlare's span. Then every exported byte and every log line is scanned for the
agent keys, the gateway and admin tokens and the connector credentials.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeUpstreams
from tests.fakes.otlp import OtlpReceiver, ReceivedSpan
from tests.livesrv import LiveServer
from tests.proxy.support import CREDENTIALS, ca_bundle
from tests.server.conftest import SPEC

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
_GITHUB_TOKEN = "ghp_traceTestExecutorToken00000000000"
_TRACE = {"gateway": "4bf92f3577b34da6a3ce929d0e0e4736", "sdk": "0af7651916cd43dd8448eb211c80319c"}
_PARENT = "00f067aa0ba902b7"
_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


def _traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{_PARENT}-01"


@dataclass
class World:
    server: LiveServer
    otlp: OtlpReceiver
    gateway: subprocess.Popen[bytes]
    gateway_log: Path
    port: int
    bundle: Path
    keys: dict[str, str]
    #: secrets seen during the tests (decision tokens), scanned for too
    seen: list[str] = field(default_factory=list)

    def proxy_client(self, timeout: float = 30) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.bundle))
        proxy = f"http://Gateway%20Bot:{self.keys['Gateway Bot']}@127.0.0.1:{self.port}"
        return httpx.Client(proxy=proxy, verify=context, trust_env=False, timeout=timeout)

    def secrets(self) -> list[str]:
        basic = [base64.b64encode(f"{n}:{k}".encode()).decode() for n, k in self.keys.items()]
        return [
            *self.keys.values(),
            *basic,
            *self.seen,
            self.server.admin_token,
            self.server.gateway_token,
            _GITHUB_TOKEN,
            *CREDENTIALS.values(),
        ]


def _start_gateway(server: LiveServer, fakes: FakeUpstreams, tmp: Path, otlp: str) -> Any:
    log = tmp / "gateway.log"
    resolve = [arg for entry in fakes.resolve_entries() for arg in ("--resolve", entry)]
    command = [
        sys.executable, "-m", "agentfirewall_proxy",
        "--control-plane", server.url, "--token", server.gateway_token,
        "--listen", "127.0.0.1:0", "--ca-dir", str(tmp / "ca"),
        "--upstream-ca", str(fakes.ca_path), *resolve,
        "--otlp-endpoint", otlp, "--log-format", "json", "--access-log",
    ]  # fmt: skip
    env = {**os.environ, **_ENV}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    deadline = time.monotonic() + 30
    found = None
    while found is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        found = _LISTENING.search(log.read_bytes())
    if found is None:
        process.kill()
        raise AssertionError(f"the gateway did not start: {log.read_text()}")
    return process, log, int(found.group(1))


def _setup(server: LiveServer, fakes: FakeUpstreams) -> dict[str, str]:
    keys = {name: server.create_agent(name) for name in ("Gateway Bot", "Sdk Bot", "Held Bot")}
    connectors = [
        {"type": "stripe", "token": CREDENTIALS["stripe"]},
        {"type": "slack", "token": CREDENTIALS["slack"]},
        {"type": "github", "token": _GITHUB_TOKEN, "base_url": fakes["github"].http_url},
    ]
    for body in connectors:
        answer = server.admin("POST", "/v1/connectors", json=body)
        assert answer.status_code == 201, answer.text
    for agent, connector, decision in (
        ("Gateway Bot", "stripe", "require_approval"),
        ("Held Bot", "github", "require_approval"),
    ):
        rule = {"agent": agent, "connector": connector, "action_pattern": "*",
                "decision": decision}  # fmt: skip
        answer = server.admin("POST", "/v1/permissions", json=rule)
        assert answer.status_code in (200, 201), answer.text
    return keys


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fakes: FakeUpstreams) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("traces")
    with OtlpReceiver() as otlp:
        args = ("--otlp-endpoint", otlp.url, "--log-format", "json")
        server = LiveServer.start(tmp / "tf", args=args, env=_ENV)
        try:
            keys = _setup(server, fakes)
            process, log, port = _start_gateway(server, fakes, tmp, otlp.url)
            bundle = ca_bundle(tmp / "ca" / "ca.crt", tmp / "bundle.pem")
            try:
                yield World(server, otlp, process, log, port, bundle, keys)
            finally:
                process.terminate()
                process.wait(15)
        finally:
            server.stop()


def _poll(fn: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := fn():
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _in_trace(trace: str, name: str) -> Callable[[ReceivedSpan], bool]:
    return lambda s: s.trace_id == trace and s.name == name


def _held_then_approved(world: World) -> httpx.Response:
    server = world.server
    out: list[httpx.Response] = []
    headers = {"traceparent": _traceparent(_TRACE["gateway"])}

    def send() -> None:
        with world.proxy_client() as http:
            data = {"amount": "1", "currency": "usd"}
            url = "https://api.stripe.com/v1/payment_intents"
            out.append(http.post(url, data=data, headers=headers))

    thread = threading.Thread(target=send)
    thread.start()
    pending = _poll(lambda: server.admin("GET", "/v1/approvals?status=pending").json()["approvals"])
    answer = server.admin("POST", f"/v1/approvals/{pending[0]['id']}/approve", json={})
    assert answer.status_code == 200, answer.text
    thread.join(30)
    return out[0]


def test_gateway_spans_carry_the_decision_and_continue_the_agents_trace(
    world: World, fakes: FakeUpstreams
) -> None:
    stripe = fakes["stripe"]
    stripe.clear()
    answer = _held_then_approved(world)
    assert answer.status_code == 200, answer.text
    trace = _TRACE["gateway"]
    span = world.otlp.wait_for(_in_trace(trace, "tameflare.proxy"))
    assert span.service == "tameflare-gateway"
    assert span.parent_span_id == _PARENT  # the agent's span is the parent
    attrs = span.attributes
    assert attrs["tameflare.agent"] == "Gateway Bot"
    assert attrs["tameflare.connector"] == "stripe"
    assert attrs["tameflare.action"].startswith("stripe.")
    assert attrs["tameflare.decision"] == "require_approval"
    assert attrs["tameflare.rule"]
    assert attrs["tameflare.upstream.status_code"] == 200
    assert attrs["http.response.status_code"] == 200
    assert attrs["tameflare.latency_ms"] > 0
    hold = world.otlp.wait_for(_in_trace(trace, "tameflare.approval.hold"))
    assert hold.parent_span_id == span.span_id
    assert hold.attributes["tameflare.approval.outcome"] == "approved"
    # the control plane recorded the approval in a child span of the gateway's hold
    created = world.otlp.wait_for(_in_trace(trace, "tameflare.approval.create"))
    assert created.service == "tameflare-server"
    assert created.parent_span_id == hold.span_id
    assert created.attributes["tameflare.agent"] == "Gateway Bot"
    assert created.attributes["tameflare.approval_id"] == hold.attributes["tameflare.approval.id"]
    # the upstream's parent is the gateway's span, in the agent's trace
    (received,) = stripe.received("POST", "/v1/payment_intents")
    assert received.header("traceparent") == f"00-{trace}-{span.span_id}-01"

    with world.proxy_client() as http:  # no rule for this agent on Slack: the default deny
        headers = {"traceparent": _traceparent("1" * 32)}
        denied = http.post("https://slack.com/api/chat.postMessage", json={"channel": "C1"},
                           headers=headers)  # fmt: skip
    assert denied.status_code == 403
    span = world.otlp.wait_for(_in_trace("1" * 32, "tameflare.proxy"))
    assert span.attributes["tameflare.decision"] == "deny"
    assert span.attributes["tameflare.rule"] == "default_deny"
    assert span.attributes["http.response.status_code"] == 403
    assert "tameflare.upstream.status_code" not in span.attributes
    lines = [json.loads(line) for line in _poll(lambda: _access_lines(world.gateway_log, 2))]
    assert {line["trace_id"] for line in lines} >= {trace, "1" * 32}
    _assert_no_secret(world)


def _access_lines(log: Path, count: int) -> list[str]:
    lines = [
        line for line in log.read_text().splitlines() if '"agentfirewall_proxy.access"' in line
    ]
    return lines if len(lines) >= count else []


def test_sdk_decision_execution_and_approval_spans(world: World, fakes: FakeUpstreams) -> None:
    server, trace = world.server, _TRACE["sdk"]
    headers = {"traceparent": _traceparent(trace)}
    key = world.keys["Sdk Bot"]
    body = server.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}, headers=headers)
    assert body.status_code == 200, body.text
    decided = body.json()
    world.seen.append(decided["decision_token"])
    token = {"decision_token": decided["decision_token"]}
    path = f"/v1/actions/{decided['action_request_id']}/execute"
    run = server.agent(key, "POST", path, json=token, headers=headers)
    assert run.status_code == 200, run.text
    span = world.otlp.wait_for(_in_trace(trace, "tameflare.decide"))
    assert span.service == "tameflare-server"
    assert span.parent_span_id == _PARENT
    attrs = span.attributes
    assert attrs["tameflare.agent"] == "Sdk Bot"
    assert attrs["tameflare.connector"] == "github"
    assert attrs["tameflare.action"] == "github.pr.merge"
    assert attrs["tameflare.decision"] == "allowed"
    assert attrs["tameflare.rule"] == "default_allow"  # no rule for this agent: the default
    assert attrs["http.response.status_code"] == 200
    assert attrs["tameflare.latency_ms"] > 0
    execute = world.otlp.wait_for(_in_trace(trace, "tameflare.execute"))
    executor = world.otlp.wait_for(_in_trace(trace, "tameflare.executor"))
    assert executor.parent_span_id == execute.span_id
    assert executor.attributes["tameflare.upstream.status_code"] == 200
    (merged,) = fakes["github"].received("PUT", "/repos/acme/api/pulls/42/merge")
    assert merged.header("traceparent") == f"00-{trace}-{executor.span_id}-01"

    headers = {"traceparent": _traceparent("2" * 32)}
    spec = {"action_spec": SPEC}
    held = server.agent(world.keys["Held Bot"], "POST", "/v1/actions", json=spec, headers=headers)
    assert held.json()["status"] == "pending_approval"
    span = world.otlp.wait_for(_in_trace("2" * 32, "tameflare.decide"))
    assert span.attributes["tameflare.decision"] == "pending_approval"
    assert span.attributes["tameflare.rule"]
    child = world.otlp.wait_for(_in_trace("2" * 32, "tameflare.approval.create"))
    assert child.parent_span_id == span.span_id
    lines = [json.loads(line) for line in world.server.log().splitlines() if line.startswith("{")]
    assert trace in {line.get("trace_id") for line in lines}
    _assert_no_secret(world)


def _assert_no_secret(world: World) -> None:
    """No agent key, token or credential in an exported byte or a log line.

    The server's one-time first-start message (the admin token, on purpose) is not a log
    line: with ``--log-format json`` every log line is a JSON object, and those are scanned.
    """
    exported = b"".join(world.otlp.bodies)
    lines = [line for line in world.server.log().splitlines() if line.startswith("{")]
    lines += world.gateway_log.read_text().splitlines()
    assert exported
    assert lines
    for line in lines:
        json.loads(line)  # every gateway line is JSON too
    logs = "\n".join(lines)
    for secret in world.secrets():
        assert secret.encode() not in exported, "a secret in an exported span"
        assert secret not in logs, "a secret in a log line"
    for span in world.otlp.spans:
        assert not any("authorization" in key.lower() for key in span.attributes)


def test_the_sdk_sends_the_agents_trace_context(world: World) -> None:
    """An agent using OpenTelemetry: the SDK's request carries its current span."""
    from opentelemetry.sdk.trace import TracerProvider

    from agentfirewall import AgentFirewall

    tracer = TracerProvider().get_tracer("agent")  # a provider of its own: no global set
    client = AgentFirewall(api_key=world.keys["Sdk Bot"], base_url=world.server.api_url)
    with client, tracer.start_as_current_span("agent.step") as step:
        result = client.request_action("github.pr.merge", provider="github", target="acme/api",
                                       parameters={"pull_number": 7})  # fmt: skip
    assert result.status == "allowed"
    context = step.get_span_context()
    span = world.otlp.wait_for(_in_trace(f"{context.trace_id:032x}", "tameflare.decide"))
    assert span.parent_span_id == f"{context.span_id:016x}"
    assert span.attributes["tameflare.agent"] == "Sdk Bot"
    _assert_no_secret(world)
