"""No credential is stored in a traffic record: not in its path, query, host, reason or
decision input, whoever reads it (``GET /api/v1/traffic``, the ``traffic`` events,
``tf logs --json``).

The defect: a traffic row's ``path`` was stored as the gateway sent it (masked only where a
content rule had scanned the request), so a GitHub token in a path, an AWS key, a Stripe
key, or the value after ``?access_token=`` or a percent-encoded ``?api%5Fkey=`` reached
every member and admin; the generic connector's decision input (``resource.target``,
``path``) held the same text, and a refusal quoting the request (``Host header `ghp_…` does
not match``) held it in the reason. Now the control plane masks each record before it
stores it (``agentfirewall_server.routes.trafficrows.masked_record``: the path as its
approver is shown one, host and reason masked, a decision-input value holding a credential
withheld by ``agentfirewall.policy.record.withheld_credentials``), whatever a gateway sent.
The path's shape and its non-secret query fields stay
readable.

An attacker's test: every encoding of each credential the content detectors know (an
escape anywhere, the decisive byte last), in a path segment, a query value, after a secret
query name, through the plain-HTTP generic connector, the intercepted GitHub one and a
host with no connector, sent concurrently; and records posted to the control plane as an
older or a hostile gateway would write them.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.policy.record import withheld_credentials
from agentfirewall_proxy.control import HttpControl
from agentfirewall_server.routes.trafficrows import masked_record
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import (
    CREDENTIALS,
    RunningGateway,
    ca_bundle,
    gateway_options,
)
from tests.proxy.test_grants_live import poll, tf

GITHUB = "ghp_" + "6m0H4S30hpw3JKmxSF6wUpXRWH3xYVtAhQQf"
GITHUB_PAT = "github_pat_" + "uPtYphOkIGjTceTr5fdTXl_SmZMgs2P5XfcNVeQxtldLk6BlxXBcJqzwpmaj55o"
AWS = "AKIA" + "XXJMSTLWKBT5O52E"
STRIPE = "sk_live_" + "cS0uGVmUZkbEmfuUZzMkNC7N"
SLACK = "xoxb-" + "36257472245-2418296898725-MxmGxpaDUZADMLHhRo7VU0Xn"
OPENAI = "sk-proj-" + "b9F0O0gC1gynCwmn16LctCI50oE2WvKqOynVsrNq"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiJib3QiLCJleHAiOjQxMDI0NDQ4MDB9."
       + "vLMGdBPqeaIt6CrO8LdXcNV9oNdWm7LbSlGcTnhixUl")  # fmt: skip
#: The content detectors know each of these by its format.
KNOWN = (GITHUB, GITHUB_PAT, AWS, STRIPE, SLACK, OPENAI, JWT)
#: A value no detector knows: secret only by the name before it.
NAMED = "Corr3ct-Horse-B4ttery"
#: Names that say their value is secret, as a query writes them.
SECRET_NAMES = ("access_token", "api_key", "apiKey", "client_secret", "password", "token",
                "X-Api-Key", "refresh_token", "sessionId")  # fmt: skip


def _never(text: str, secrets: tuple[str, ...] = (*KNOWN, NAMED)) -> None:
    """No secret in `text`, as written or decoded, nor its tail or head (a secret written
    with an escape first or last)."""
    for shown in (text, unquote(text), unquote_plus(text)):
        for secret in secrets:
            for part in (secret, secret[1:], secret[:-1]):
                assert part not in shown, f"`{part}` in {shown[:2000]}"


def _escaped(text: str, which: list[bool], upper: bool) -> str:
    """`text` with the characters `which` marks percent-encoded."""
    form = "%{:02X}" if upper else "%{:02x}"
    return "".join(form.format(ord(c)) if e else c for c, e in zip(text, which, strict=True))


@st.composite
def _written(draw: st.DrawFn, text: str) -> str:
    """`text` with some of its characters escaped (upper- or lowercase hex): none, all, the
    first or the last alone (the decisive byte), or any others."""
    size = len(text)
    bits = draw(st.sampled_from([0, 2**size - 1, 1, 1 << (size - 1)]) | st.integers(0, 2**size - 1))
    return _escaped(text, [bool(bits >> i & 1) for i in range(size)], draw(st.booleans()))


@st.composite
def _targets(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    """A request target holding a secret, written in some encoding; the secrets."""
    where = draw(st.sampled_from(["segment", "last", "value", "named", "named_path"]))
    if where.startswith("named"):
        secret = draw(st.text("abcdefghijkLMNOP0123456789-._~", min_size=6, max_size=40))
        secret = "Q" + secret + "Z"  # (distinct from the rest of the target)
        name = draw(_written(draw(st.sampled_from(SECRET_NAMES))))
        pair = f"{name}={draw(_written(secret))}"
        target = (f"/repos/acme/widgets;{pair}" if where == "named_path"
                  else f"/repos/acme/widgets?per_page=10&{pair}")  # fmt: skip
        return target, (secret,)
    secret = draw(st.sampled_from(KNOWN))
    written = draw(_written(secret))
    target = {
        "segment": f"/repos/acme/widgets/{written}/read",
        "last": f"/repos/acme/widgets/{written}",
        "value": f"/repos/acme/widgets?per_page=10&q={written}",
    }[where]
    return target, (secret,)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_targets())
def test_no_credential_is_stored_in_a_path_in_any_encoding(
    case: tuple[str, tuple[str, ...]],
) -> None:
    target, secrets = case
    record = {"request_id": "r1", "method": "GET", "host": "api.example.org", "path": target,
              "decision": "allow"}  # fmt: skip
    stored = masked_record(record)
    _never(stored["path"], secrets)
    path = str(stored["path"])
    assert path.startswith("/repos/acme/widgets"), path  # the shape is kept
    if "?" in target:
        assert "per_page=10" in path.partition("?")[2], path  # a plain field is kept
    assert masked_record(stored) == stored  # masking what is masked changes nothing


@settings(max_examples=100, deadline=None)
@given(secret=st.sampled_from([*KNOWN, NAMED]), where=st.sampled_from(["r", "p", "h", "x"]))
def test_a_decision_input_value_holding_a_credential_is_withheld(secret: str, where: str) -> None:
    """Withheld as when content detectors fired (``agentfirewall.policy.record``): the
    value gone, its name under ``w``; the other values kept."""
    value = f"https://api.example.org/files/{secret}" if secret in KNOWN else f"token={secret}"
    action = {"t": "http.get", "r": {"provider": "generic", "target": "/ok"},
              "p": {"host": "api.example.org", "per_page": 10}}  # fmt: skip
    named = {"r": "resource.leak", "p": "leak", "h": "risk_hints.leak", "x": "x0.leak"}[where]
    if where == "x":
        data = {"v": 1, "m": "proxy", **action, "x": [{"t": "http.get", "p": {"leak": value}}]}
    else:
        data = {"v": 1, "m": "proxy", **action}
        data[where] = {**data.get(where, {}), "leak": value}
    shown = masked_record({"request_id": "r1", "path": "/", "input": data})["input"]
    _never(json.dumps(shown), (secret,))
    assert named in shown["w"], shown
    assert shown["p"]["per_page"] == 10, shown  # the other values kept
    assert shown["r"]["target"] == "/ok", shown
    assert withheld_credentials(shown) == shown  # withholding what is withheld: the same


# -- end to end: a real gateway and a real control plane ------------------------------------


class _World:
    def __init__(self, server: LiveServer, running: RunningGateway, key: str, bundle: Path,
                 plain: str) -> None:  # fmt: skip
        self.server, self.running, self.key, self.bundle = server, running, key, bundle
        self.plain = plain  # the generic connector's upstream (plain HTTP)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fakes: FakeUpstreams) -> Iterator[_World]:
    """A control plane with the agent `Leak-Bot` allowed everything through a generic
    connector (plain HTTP to the fake GitHub) and the GitHub one (intercepted TLS), and a
    gateway attached to it."""
    tmp = tmp_path_factory.mktemp("leak")
    server = LiveServer.start(tmp / "tf")
    running: RunningGateway | None = None
    try:
        key = server.create_agent("Leak-Bot")
        plain = fakes["github"].http_url
        for body in (
            {"type": "generic", "name": "plain", "token": "upstream-secret",
             "domains": ["127.0.0.1"], "base_url": plain},
            {"type": "github", "token": CREDENTIALS["github"]},
        ):  # fmt: skip
            answer = server.admin("POST", "/v1/connectors", json=body)
            assert answer.status_code == 201, answer.text
        for connector, pattern in (("generic", "http.*"), ("github", "github.*")):
            rule = {"agent": "Leak-Bot", "connector": connector, "action_pattern": pattern,
                    "decision": "allow"}  # fmt: skip
            assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
        control = HttpControl(server.url, server.gateway_token)
        running = RunningGateway(gateway_options(tmp, fakes), control).start()
        poll(lambda: _knows(running, "Leak-Bot"))
        bundle = ca_bundle(running.ca_path, tmp / "bundle.pem")
        yield _World(server, running, key, bundle, plain)
    finally:
        if running is not None:
            running.stop()
        server.stop()


def _knows(running: RunningGateway, agent: str) -> bool:
    config = running.gateway.config if running.gateway else None
    return config is not None and any(a.name == agent for a in config.agents.values())


class _Events:
    """The admin event stream, read in a thread from the moment it connects: the data of
    each ``traffic`` event until one names `last`."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.traffic: list[dict[str, Any]] = []
        self.last = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> _Events:
        self._thread.start()
        assert self._ready.wait(20), "the event stream did not connect"
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(30)

    def _listen(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.admin_token}"}
        with httpx.stream("GET", self.server.url + "/api/v1/events", headers=headers,
                          timeout=30) as stream:  # fmt: skip
            kind = ""
            for line in stream.iter_lines():
                if line.startswith(": connected"):
                    self._ready.set()
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind == "traffic":
                    self.traffic.append(json.loads(line.removeprefix("data: ")))
                    if self.last and self.traffic[-1]["request_id"] == self.last:
                        return


def _send_last(world: _World, events: _Events, prefix: str, rows: int) -> list[dict[str, Any]]:
    """Once `rows` traffic rows whose request id starts with `prefix` are stored, one more
    record (an older gateway's): the events published before it are all there when it is.
    Those rows, newest first."""

    def stored() -> list[dict[str, Any]]:
        answer = world.server.admin("GET", "/v1/traffic", params={"limit": 200})
        found = [r for r in answer.json()["traffic"] if r["request_id"].startswith(prefix)]
        return found if len(found) >= rows else []

    found = poll(stored)
    events.last = f"last-{time.monotonic_ns()}"
    answer = world.server.gateway("POST", "/api/v1/gateway/traffic",
                                  json={"records": [{"request_id": events.last}]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return found


def _plain_get(world: _World, url: str, host: str | None = None) -> int:
    """A plain-HTTP request through the gateway, written as is (no client re-encodes it);
    `host`: another Host header than the URL's."""
    authority = url.split("/")[2]
    target = url.encode("latin-1")
    head = b"GET " + target + b" HTTP/1.1\r\nHost: " + (host or authority).encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", world.running.port)) as sock:
        sock.sendall(head + auth_header(world.key, "Leak-Bot") + b"Connection: close\r\n\r\n")
        answer = read_all(sock)
    return int(answer.split(b" ", 2)[1])


def _github_get(world: _World, path: str) -> int:
    context = ssl.create_default_context(cafile=str(world.bundle))
    with httpx.Client(proxy=world.running.proxy_url(world.key, "Leak-Bot"), verify=context,
                      trust_env=False, timeout=30) as client:  # fmt: skip
        # (httpx sends a URL's path and query as written: `httpx.URL` keeps its escapes)
        return client.get(httpx.URL("https://api.github.com" + path)).status_code


def test_no_credential_reaches_the_traffic_log_the_event_stream_or_tf_logs(
    world: _World,
) -> None:
    named = f"per_page=10&access_token={NAMED}"
    plain = [
        f"/files/{GITHUB}",  # the token last
        f"/files/{AWS}/read",
        f"/v1/customers/{STRIPE}?expand=default_source",
        f"/search?{named}",
        f"/search?per_page=10&api%5Fkey={NAMED}",  # the secret name escaped
        "/search?per_page=10&q=" + _escaped(SLACK, [True] * len(SLACK), True),
        "/files/ghp%5F" + GITHUB[4:],
        f"/files/{GITHUB[:-1]}%{ord(GITHUB[-1]):02x}",  # the decisive byte last, escaped
        f"/x%3Faccess_token%3D{NAMED}",
        f"/jwt/{JWT}",
        f"/keys/{OPENAI}/{GITHUB_PAT}",
        f"/x;token={NAMED}",  # refused by the connector, recorded
    ]
    calls: list[Any] = [(_plain_get, f"{world.plain}{path}") for path in plain]
    calls += [
        (_plain_get, f"http://evil.example.net/files/{AWS}"),  # no connector: refused
        (_github_get, f"/repos/acme/{GITHUB}/pulls"),  # owner/repo: parameters
        (_github_get, f"/repos/acme/widgets/issues?per_page=5&client_secret={NAMED}"),
    ]
    with _Events(world.server) as events:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda call: call[0](world, call[1]), calls))
            # a refusal that quotes the request (the Host header it names)
            statuses.append(_plain_get(world, f"{world.plain}/x", host=GITHUB))
        assert 421 in statuses, statuses
        rows = _send_last(world, events, "req_", len(calls) + 1)
    logs = tf(world.server, "logs", "--last", "200")
    for read in (rows, events.traffic, logs):
        _never(json.dumps(read))
    paths = {row["path"] for row in rows}
    assert "/files/[REDACTED:github_token]" in paths, paths  # the shape is kept
    assert "/x%3Faccess_token%3D[REDACTED:generic_secret]" in paths, paths
    assert any(row["reason"].startswith("Host header `[REDACTED:") for row in rows), rows


def test_records_posted_as_they_are_are_stored_masked(world: _World) -> None:
    """Records posted with credentials in every field (as a gateway sends them, or one that
    would not mask anything): the control plane masks what it stores of each (path, query,
    host, reason, decision input)."""
    target = f"http://127.0.0.1/files/{GITHUB}"
    records = [
        {"request_id": "old-1", "agent": "Leak-Bot", "connector": "generic",
         "action": "http.get", "method": "GET", "host": "127.0.0.1",
         "path": f"/files/{GITHUB}?per_page=10&api%5Fkey={NAMED}", "decision": "allow",
         "status_code": 200, "reason": f"upstream http://bot:{NAMED}@127.0.0.1/ said {AWS}",
         "input": {"v": 1, "t": "http.get", "m": "proxy", "l": "full_enforce", "n": 1.0,
                   "r": {"provider": "generic", "target": target},
                   "p": {"host": "127.0.0.1", "path": f"/files/{GITHUB}", "per_page": 10}}},
        {"request_id": "old-2", "agent": "Leak-Bot", "method": "CONNECT",
         "host": f"{AWS}.evil.example.net", "path": f"/x%3Faccess_token%3D{NAMED}",
         "decision": "deny", "status_code": 403,
         "reason": f"Host header `{STRIPE}` does not match `a:443`"},
    ]  # fmt: skip
    with _Events(world.server) as events:
        answer = world.server.gateway("POST", "/api/v1/gateway/traffic",
                                      json={"records": records})  # fmt: skip
        assert answer.status_code == 200, answer.text
        mine = _send_last(world, events, "old-", 2)
    logs = tf(world.server, "logs", "--last", "200")
    for read in (mine, events.traffic, logs):
        _never(json.dumps(read))
    old = next(row for row in mine if row["request_id"] == "old-1")
    masked = "/files/[REDACTED:github_token]?per_page=10&api_key=[REDACTED:generic_secret]"
    assert old["path"] == masked, old
    assert old["input"]["p"] == {"host": "127.0.0.1", "per_page": 10}, old["input"]
    assert {"path", "resource.target"} <= set(old["input"]["w"]), old["input"]
