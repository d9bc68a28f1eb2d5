"""A request's budget spend counts once the upstream answered it below 400, whatever then
became of the answer: the upstream connection dying mid-body, the gateway cutting the
response (a content rule, a response too large to check) or refusing what came (a 206 it
cannot scrub). The upstream acted; the spend is released only when it refused (4xx/5xx)
or the request never reached it (docs/budgets.md). Through the real gateway, a raw
upstream that sends a head and then closes, and a control plane in memory that leases
each request its own slice and records what the gateway reports of it.

Before: a response the gateway answered 502 after the upstream's head (its body ended
early, a content rule cut it) gave its amount back to the budget as if the call had never
happened: the status the gateway wrote, not the one the upstream sent, decided.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawupstream import RawUpstream, ask, http_answer, sse_answer, status_of
from tests.proxy.support import RunningGateway, connector, gateway_options, rule, snapshot

AWS_KEY = "AKIA" + "Q3V7WZ2MXK4PLRTY"
CREDENTIAL = "gen-plain-secret-00000000"
PLAIN, SCRUBBED, GUARDED = "plain.example.org", "scrub.example.org", "guarded.example.org"
#: A piece of an answer that ends the upstream's connection there (no more bytes).
CLOSE = b""
BUDGET = {"id": "bdg_calls", "name": "calls", "connector": "generic", "action": "*",
          "measure": "count", "agents": ["*"]}  # fmt: skip
CUT = {"name": "guard", "rules": [{"name": "cut", "decision": "deny", "conditions": [
    {"field": "response.secrets", "operator": "exists"}]}]}  # fmt: skip


class Breaking(RawUpstream):
    """The raw upstream, whose scripted answer may end its connection (`CLOSE`)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await super()._serve(reader, _Closing(writer))  # type: ignore[arg-type]


class _Closing:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        if data is CLOSE:  # (RawUpstream ends on a ConnectionError: the socket is closed)
            raise ConnectionError("scripted close")
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()


class Ledger(StaticControl):
    """The control plane's side of leased slices: each request gets a slice of exactly its
    own amount, expiring at once (so the next request leases its own), and what the
    gateway reports of each lease is kept (cumulative: the last report holds)."""

    def __init__(self, snap: dict[str, Any]) -> None:
        super().__init__(snap)
        self.leases: list[str] = []
        self.reports: dict[str, dict[str, Any]] = {}

    async def lease_budget(self, payload: dict[str, Any]) -> dict[str, Any]:
        await self.report_leases(payload["handback"])
        lease = f"lse_{len(self.leases)}"
        self.leases.append(lease)
        granted = {"lease": lease, "budget": BUDGET["id"], "amount": 1.0, "seconds": 0.01,
                   "request": 1.0}  # fmt: skip
        return {"leases": {BUDGET["name"]: granted}, "refused": None}

    async def report_leases(self, reports: list[dict[str, Any]]) -> None:
        for report in reports:
            self.reports[report["lease"]] = report

    def spent(self, lease: str) -> float:
        """What the gateway spent from `lease`, once it closed it (waits for the report)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report = self.reports.get(lease)
            if report is not None and report["done"]:
                return float(sum(report["spent"].values()))
            time.sleep(0.02)
        raise AssertionError(f"lease `{lease}` never closed: {self.reports.get(lease)}")


class World:
    def __init__(self, running: RunningGateway, control: Ledger, upstream: Breaking) -> None:
        self.running, self.control, self.upstream = running, control, upstream

    def spent(self, host: str, path: str, answer: list[bytes]) -> tuple[int, float]:
        """The status the agent got for `path` answered `answer`, and what it spent."""
        self.upstream.answers[path] = answer
        before = len(self.control.leases)
        status = status_of(ask(self.running, host, path))
        assert len(self.control.leases) == before + 1  # the request leased its own slice
        return status, self.control.spent(self.control.leases[-1])


def _world(tmp: Path, policies: list[dict[str, Any]]) -> Iterator[World]:
    upstream = Breaking()
    hosts = {PLAIN: None, SCRUBBED: CREDENTIAL, GUARDED: None}
    connectors = [connector("generic", id=f"c_{host[:5]}", name=host[:5], domains=[host],
                            credential=secret, base_url=f"http://{host}")
                  for host, secret in hosts.items()]  # fmt: skip
    snap = snapshot([rule("http.*", "allow")], connectors=connectors, policies=policies)
    snap["budgets"] = [BUDGET]
    control = Ledger(snap)
    resolve = parse_resolve([f"{host}:80=127.0.0.1:{upstream.port}" for host in hosts])
    running = RunningGateway(gateway_options(tmp, None, resolve=resolve), control).start()
    try:
        yield World(running, control, upstream)
    finally:
        running.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Responses relayed as they come (``respond.py``); scrubbed on `SCRUBBED`."""
    yield from _world(tmp_path_factory.mktemp("relayed"), [])


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A content rule reads every response (``guarded.py``): read whole, checked, relayed."""
    yield from _world(tmp_path_factory.mktemp("guarded"), [{"name": "guard", "document": CUT}])


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
REFUSED = [b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"]
PARTIAL = [b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/9\r\nContent-Length: 2"
           b"\r\n\r\n{}"]  # fmt: skip
SECRET = b'{"key": "' + AWS_KEY.encode() + b'"}'

#: (host, answer, status the agent gets, spent)
CASES = {
    "answered": (PLAIN, http_answer(b"{}"), 200, 1.0),
    "refused by the upstream": (PLAIN, REFUSED, 500, 0.0),
    "closed unanswered": (PLAIN, [CLOSE], 502, 1.0),  # sent: it may have happened
    "closed mid-body": (PLAIN, [HEAD, b'{"id": ', CLOSE], 200, 1.0),
    "closed mid-chunks": (PLAIN, [CHUNKED, b"2\r\n{}\r\n", CLOSE], 200, 1.0),
    "scrubbed, closed mid-body": (SCRUBBED, [HEAD, b'{"id": ', CLOSE], 200, 1.0),
    "a 206 it cannot scrub": (SCRUBBED, PARTIAL, 502, 1.0),
}
GUARDED_CASES = {
    "answered": (GUARDED, http_answer(b"{}"), 200, 1.0),
    "refused by the upstream": (GUARDED, REFUSED, 500, 0.0),
    "closed mid-body": (GUARDED, [HEAD, b'{"id": ', CLOSE], 502, 1.0),
    "cut by a content rule": (GUARDED, http_answer(SECRET), 502, 1.0),
    "event stream cut": (GUARDED, sse_answer([b"data: {}\n\n", b"data: " + SECRET + b"\n\n"]),
                         200, 1.0),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_an_answered_request_spends_whatever_became_of_its_response(
    relayed: World, case: str
) -> None:
    host, answer, status, spent = CASES[case]
    assert relayed.spent(host, f"/{case.replace(' ', '-')}", answer) == (status, spent)


@pytest.mark.parametrize("case", GUARDED_CASES)
def test_a_response_the_content_rules_read_spends_once_answered(guarded: World, case: str) -> None:
    host, answer, status, spent = GUARDED_CASES[case]
    assert guarded.spent(host, f"/{case.replace(' ', '-')}", answer) == (status, spent)
