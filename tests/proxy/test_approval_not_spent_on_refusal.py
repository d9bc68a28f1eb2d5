"""An approval is spent only on a request that goes (DESIGN.md 7.3, 7.4): one the gateway
refuses unsent, for what it knows before it confirms the approval's use, leaves it unused.

A request is held; while it waits an admin removes its connector, narrows the connector's
domains, or hands the host to a connector of another type; then a person approves it. The
gateway refuses it, 403 ``no_connector`` or ``connector_changed``, nothing reaching the
upstream, and it must do so *before* it claims the approval (``POST …/consume``): the
approval stays approved and unused, as the API shows it, the audit log records no use, and
the identical request sent again once the connector is back goes through on it, once.
A rotation meanwhile (the same type: the new credential) is no refusal: the request goes,
and its approval is spent.

1. A real control plane (``LiveServer``, on SQLite and PostgreSQL), a real gateway
   (``HttpControl``) and the fake GitHub; a request parked (plain HTTP, read whole) and one
   waiting inside an intercepted tunnel.
2. A property over a ``--config-file`` gateway (``StaticControl``, whose approvals the test
   reads): whatever changed before the approval (connectors, a kill switch, the agent
   suspended), the approval is spent if and only if the request reached the upstream.
3. A held request a ``redact`` rule cannot rewrite (a card number in its query) is refused
   before any approval is asked for: none is spent, however it would be approved.

What changes while the use is being confirmed (between the check and the claim) is refused
as the request is sent, the approval spent then: a race, not covered here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.control import HttpControl, StaticControl
from agentfirewall_server.store.db import normalize_url
from tests.fakes import FakeUpstreams
from tests.fuzzscale import examples
from tests.livesrv import LiveServer
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import (
    CREDENTIALS,
    KEY,
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    gateway_options,
    rule,
    snapshot,
    start_gateway,
)
from tests.proxy.test_approval_spent_once import _until

AGENT = "Bot"
HOST = "api.github.com"
NEW = "ghp_credentialAfterTheChange0000000000"
BODY = b'{"merge_method":"squash"}'
_numbers = iter(range(1000, 1_000_000))


def _path(n: int) -> str:
    return f"/repos/acme/api/pulls/{n}/merge"


Answer = Callable[[], tuple[int, dict[str, Any]]]


def send_parked(running: RunningGateway, key: str, n: int, target: str = "") -> Answer:
    """A plain ``http://`` PUT, read whole: held, it is parked without its coroutine."""
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=20)
    sock.sendall(f"PUT http://{HOST}{target or _path(n)} HTTP/1.1\r\nHost: {HOST}\r\n".encode()
                 + auth_header(key, AGENT) + f"Authorization: token {PLACEHOLDER}\r\n".encode()
                 + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)
                 + BODY)  # fmt: skip

    def answer() -> tuple[int, dict[str, Any]]:
        with sock:
            response = read_response(sock, timeout=30)
        return status_of(response), json.loads(response.partition(b"\r\n\r\n")[2] or b"{}")

    return answer


def send_tunnelled(running: RunningGateway, key: str, n: int, target: str = "") -> Answer:
    """The same PUT over https inside a CONNECT tunnel: held, it waits in its coroutine."""
    bundle = ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    out: list[httpx.Response | Exception] = []

    def put() -> None:
        with httpx.Client(proxy=running.proxy_url(key, AGENT), verify=verify, trust_env=False,
                          timeout=30) as http:  # fmt: skip
            headers = {"Authorization": f"token {PLACEHOLDER}",
                       "Content-Type": "application/json"}  # fmt: skip
            try:
                url = f"https://{HOST}{target or _path(n)}"
                out.append(http.put(url, content=BODY, headers=headers))
            except httpx.HTTPError as exc:
                out.append(exc)

    thread = threading.Thread(target=put, daemon=True)
    thread.start()

    def answer() -> tuple[int, dict[str, Any]]:
        thread.join(30)
        (response,) = out
        assert isinstance(response, httpx.Response), response
        return response.status_code, response.json() if response.content else {}

    return answer


SENDERS = {"parked": send_parked, "in its tunnel": send_tunnelled}


def reached(fakes: FakeUpstreams, n: int) -> int:
    """How many times request `n` reached the fake GitHub."""
    return len(fakes["github"].received("PUT", _path(n)))


# -- 1. a real control plane -----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What an admin does while the request is held: the connectors it leaves serving
    (bodies of ``POST /v1/connectors``), and the refusal the request then gets (None: it
    goes, on its approval)."""

    connectors: tuple[dict[str, Any], ...]
    error: str | None


GITHUB = {"type": "github", "token": CREDENTIALS["github"]}
CHANGES = {
    "removed": Change((), "no_connector"),
    "domains narrowed": Change(({**GITHUB, "domains": ["github.com"]},), "no_connector"),
    "another type": Change(({"type": "generic", "token": NEW, "domains": [HOST],
                             "base_url": f"https://{HOST}"},), "connector_changed"),
    "rotated": Change(({**GITHUB, "token": NEW},), None),
}  # fmt: skip


PG_ENV = "AGENTFIREWALL_TEST_POSTGRES_URL"


@contextmanager
def _database(engine: str) -> Iterator[dict[str, str]]:
    """The server's environment for `engine`: SQLite in its data directory, or a fresh
    PostgreSQL database (dropped after)."""
    if engine == "sqlite":
        yield {}
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV}")
    import psycopg

    admin = normalize_url(base).replace("postgresql+psycopg://", "postgresql://")
    name = f"af_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield {"AGENTFIREWALL_DATABASE_URL": f"{base.rpartition('/')[0]}/{name}"}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    """A real control plane (on each engine): the agent (its key) and its rule holding a
    merge."""
    with _database(request.param) as env:
        yield from _server(tmp_path_factory.mktemp("unspent") / "tf", env)


def _server(data_dir: Path, env: dict[str, str]) -> Iterator[tuple[LiveServer, str]]:
    live = LiveServer.start(data_dir, env=env)
    try:
        key = live.create_agent(AGENT)
        held = {"agent": AGENT, "connector": "github", "action_pattern": "github.pr.merge",
                "decision": "require_approval"}  # fmt: skip
        answer = live.admin("POST", "/v1/permissions", json=held)
        assert answer.status_code in (200, 201), answer.text
        yield live, key
    finally:
        live.stop()


def put_connectors(live: LiveServer, bodies: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Remove every connector, then add `bodies`: the connectors made."""
    for found in live.admin("GET", "/v1/connectors").json()["connectors"]:
        answer = live.admin("DELETE", f"/v1/connectors/{found['id']}")
        assert answer.status_code == 204, answer.text
    made = []
    for body in bodies:
        answer = live.admin("POST", "/v1/connectors", json=body)
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    return made


def serving_now(running: RunningGateway, made: list[dict[str, Any]]) -> None:
    """Return once the gateway's config routes the host as `made` says (its connector's id,
    or none)."""
    expected = next((c["id"] for c in made if HOST in c["domains"]), None)

    def applied() -> bool:
        config = running.gateway.config if running.gateway is not None else None
        found = config.route(HOST) if config is not None else None
        return config is not None and (found.id if found is not None else None) == expected

    _until(applied, "the gateway applying the change")


def approval_of(live: LiveServer, approval_id: str) -> dict[str, Any]:
    answer = live.admin("GET", f"/v1/approvals/{approval_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def pending_ids(live: LiveServer) -> list[str]:
    answer = live.admin("GET", "/v1/approvals", params={"status": "pending"})
    return [a["id"] for a in answer.json()["approvals"] if a["agent"] == AGENT]


def audited(live: LiveServer, approval_id: str) -> list[dict[str, Any]]:
    """The audit log's events about `approval_id`, oldest first."""
    answer = live.admin("GET", "/v1/audit", params={"limit": 500})
    return [e for e in reversed(answer.json()["events"]) if e["subject"] == approval_id]


def traffic_row(live: LiveServer, request_id: str) -> dict[str, Any]:
    def found() -> list[dict[str, Any]]:
        answer = live.admin("GET", "/v1/traffic", params={"agent": AGENT, "limit": 200})
        return [r for r in answer.json()["traffic"] if r["request_id"] == request_id]

    rows: list[dict[str, Any]] = _until(found, "the request's traffic record")
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("sender", list(SENDERS))
def test_an_approval_is_not_spent_on_a_request_refused_unsent(
    server: tuple[LiveServer, str], fakes: FakeUpstreams, tmp_path: Path, sender: str,
    change: str,
) -> None:  # fmt: skip
    live, key = server
    send = SENDERS[sender]
    made = put_connectors(live, (GITHUB,))
    running = RunningGateway(gateway_options(tmp_path, fakes),
                             HttpControl(live.url, live.gateway_token)).start()  # fmt: skip
    n = next(_numbers)
    try:
        serving_now(running, made)
        seen = set(pending_ids(live))
        answer = send(running, key, n)
        (approval_id,) = _until(lambda: [i for i in pending_ids(live) if i not in seen], "held")
        serving_now(running, put_connectors(live, CHANGES[change].connectors))
        answer_ = live.admin("POST", f"/v1/approvals/{approval_id}/approve", json={})
        assert answer_.status_code == 200, answer_.text
        status, body = answer()
        error = CHANGES[change].error
        if error is None:  # it went, on its approval: spent
            assert status == 200, body
            assert reached(fakes, n) == 1
            assert approval_of(live, approval_id)["used"] is True
            return
        assert status == 403, body
        assert body["error"] == error
        assert "was not sent" in body["reason"]
        assert reached(fakes, n) == 0
        # the approval is as the approver left it: approved, unused, usable
        approval = approval_of(live, approval_id)
        assert (approval["status"], approval["used"]) == ("approved", False)
        events = audited(live, approval_id)  # asked for and approved, nothing else
        assert [e["event_type"] for e in events] == ["approval.created", "approval.responded"]
        assert not any((e["data"] or {}).get("used") for e in events)
        row = traffic_row(live, body["request_id"])
        assert row["status_code"] == 403
        assert "was not sent" in row["reason"]
        # the connector back, the identical request goes through on that approval, once
        serving_now(running, put_connectors(live, (GITHUB,)))
        status, body = send(running, key, n)()
        assert status == 200, body
        assert reached(fakes, n) == 1
        assert set(pending_ids(live)) <= seen  # no other approval was asked for
        assert approval_of(live, approval_id)["used"] is True
    finally:
        running.stop()
        put_connectors(live, (GITHUB,))


# -- 2. whatever changed before the approval: spent if and only if sent ------------------------


def _github(**changed: Any) -> dict[str, Any]:
    return {**connector("github"), **changed}


HELD = [rule("github.pr.merge", "require_approval")]
#: What changed while the request was held: (connectors, kill switches, agent status).
BEFORE: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], str]] = {
    "nothing": ([_github()], [], "active"),
    "removed": ([], [], "active"),
    "domains narrowed": ([_github(domains=["github.com"])], [], "active"),
    "another type": ([connector("generic", domains=[HOST], credential=NEW,
                                base_url=f"https://{HOST}")], [], "active"),
    "rotated": ([_github(credential=NEW)], [], "active"),
    "replaced": ([_github(credential=NEW, id="conn_github_2")], [], "active"),
    "kill switch": ([_github()], [{"scope": "connector", "target": "github", "reason": "x"}],
                    "active"),
    "agent suspended": ([_github()], [], "suspended"),
}  # fmt: skip


def _snapshot(change: str, version: int) -> dict[str, Any]:
    connectors, switches, status = BEFORE[change]
    snap = snapshot(HELD, connectors=connectors, kill_switches=switches)
    snap["agents"][0]["status"] = status
    return {**snap, "version": version}


@pytest.fixture(scope="module")
def static_gateway(
    fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    running, control = start_gateway(tmp_path_factory.mktemp("static"), fakes,
                                     _snapshot("nothing", 1))  # fmt: skip
    yield running, control
    running.stop()


_versions = iter(range(2, 1_000_000))


def _apply(running: RunningGateway, control: StaticControl, change: str) -> None:
    control.update(_snapshot(change, version := next(_versions)))
    _until(lambda: running.gateway is not None and running.gateway.config is not None
           and running.gateway.config.version == version, "the gateway applying it")  # fmt: skip


@settings(max_examples=examples(16), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(change=st.sampled_from(list(BEFORE)), sender=st.sampled_from(list(SENDERS)))
def test_an_approval_is_spent_if_and_only_if_its_request_is_sent(
    static_gateway: tuple[RunningGateway, StaticControl], fakes: FakeUpstreams, change: str,
    sender: str,
) -> None:  # fmt: skip
    running, control = static_gateway
    _apply(running, control, "nothing")
    n = next(_numbers)
    answer = SENDERS[sender](running, KEY, n)
    (held,) = _until(lambda: [a for a in control.pending() if _path(n) in str(a["request"])],
                     "held")  # fmt: skip
    _apply(running, control, change)
    control.approve(held["id"])  # (a hold the change ended already is refused as it says)
    status, body = answer()
    approval = control.approvals[held["id"]]
    sent = reached(fakes, n)
    assert sent in (0, 1)
    assert approval["used"] is bool(sent), (change, status, body)
    assert status == (200 if sent else 403), body


# -- 3. a redaction that cannot be made: refused before anyone is asked ------------------------

CARD = "4242 4242 4242 4242"
REDACT_CARDS = {
    "name": "guardrails",
    "rules": [{"name": "redact-cards", "decision": "redact",
               "conditions": [{"field": "content.pii", "operator": "contains",
                               "value": "card_number"}]}],
}  # fmt: skip


@pytest.mark.parametrize("sender", list(SENDERS))
def test_a_held_request_a_redact_rule_cannot_rewrite_spends_no_approval(
    fakes: FakeUpstreams, tmp_path: Path, sender: str
) -> None:
    """A card number in the query, where a redact rule cannot rewrite it (only a body is
    rewritten), on a request held for approval: refused 403 however it is approved, and
    known from the start: no approval is asked for, none is spent."""
    snap = snapshot(HELD, connectors=[_github()],
                    policies=[{"name": "guardrails", "document": REDACT_CARDS}])  # fmt: skip
    running, control = start_gateway(tmp_path, fakes, snap)
    n = next(_numbers)
    try:
        path = f"{_path(n)}?note={CARD.replace(' ', '%20')}"
        answer = SENDERS[sender](running, KEY, n, path)
        answered: list[tuple[int, dict[str, Any]]] = []
        thread = threading.Thread(target=lambda: answered.append(answer()), daemon=True)
        thread.start()
        while not answered and thread.is_alive():
            for held in control.pending():  # (held, as before: approved, to see what it spends)
                control.approve(held["id"])
            time.sleep(0.02)
        thread.join(30)
    finally:
        running.stop()
    ((status, body),) = answered
    assert status == 403, body
    assert "a redact rule cannot rewrite" in body["reason"]
    assert reached(fakes, n) == 0
    assert not [a for a in control.approvals.values() if a["used"]]
    assert control.approvals == {}  # known before the hold: no one was asked
