"""Events cross replicas through PostgreSQL LISTEN/NOTIFY, and survive a dropped listener.

Two in-process replicas share one database. What a replica's hub publishes is collected
by subscribing on its own event loop (as ``GET /api/v1/events`` does): SSE has no
store re-check to fall back on, so an event seen there was relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from agentfirewall_server.pgevents import _messages
from tests.scale.conftest import Pair, listening, wait_for
from tests.server.conftest import PG_ENV, Harness, _admin_url
from tests.server.test_gateway_api import _approval_body

pytestmark = pytest.mark.postgres


class Collector:
    """Every event a replica's hub publishes, gathered on that replica's loop."""

    def __init__(self, harness: Harness) -> None:
        self.events: list[tuple[str, Any]] = []
        self.state = harness.state
        ready = asyncio.Event()

        async def collect() -> None:
            async with self.state.hub.subscribe() as queue:
                ready.set()
                while (item := await queue.get()) is not None:
                    self.events.append(item)

        async def started() -> None:
            await ready.wait()

        portal = harness.client.portal
        assert portal is not None
        portal.start_task_soon(collect)
        portal.call(started)

    def find(self, kind: str, test: Callable[[Any], bool]) -> Any:
        return next((d for k, d in list(self.events) if k == kind and test(d)), None)

    def wait(self, kind: str, test: Callable[[Any], bool], what: str) -> Any:
        return wait_for(lambda: self.find(kind, test), what=what)


def test_approvals_decisions_and_the_kill_switch_reach_the_other_replica(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    seen = Collector(b)
    created = a.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    apv = created["id"]
    got = seen.wait("approval.created", lambda d: d["id"] == apv, "approval.created on B")
    assert got["status"] == "pending"
    assert got["request"]["host"] == "api.github.com"  # the row, fetched by B
    assert a.admin("POST", f"/v1/approvals/{apv}/approve").status_code == 200
    decided = seen.wait("approval.decided", lambda d: d["id"] == apv, "approval.decided on B")
    assert decided["status"] == "approved"
    answer = a.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
    assert answer.status_code == 200, answer.text
    kill = seen.wait("kill_switch", lambda d: d["active"], "kill_switch on B")
    assert kill["active"][0]["scope"] == "all"
    # B serves the new configuration, kill switch included, to its own gateways
    config = b.gateway("GET", "/v1/gateway/config").json()
    assert config["kill_switches"] == [{"scope": "all", "target": None, "reason": "kill switch"}]
    assert a.admin("POST", "/v1/kill-switch", json={"active": False}).status_code == 200
    seen.wait("kill_switch", lambda d: not d["active"], "kill switch off on B")


def test_traffic_and_config_changes_reach_the_other_replica(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    seen = Collector(b)
    record = {"request_id": "req-relayed", "agent": "Bot", "decision": "allow"}
    assert a.gateway("POST", "/v1/gateway/traffic", json={"records": [record]}).status_code == 200
    seen.wait("traffic", lambda d: d["request_id"] == "req-relayed", "traffic on B")
    a.create_agent("Relayed")
    version = a.state.snapshot.version
    seen.wait("config", lambda d: d["version"] >= version, "config on B")
    assert "Relayed" in {agent.name for agent in b.state.snapshot.agents_by_id.values()}


def _terminate_listener(harness: Harness) -> None:
    name = f"tameflare-events-{harness.state.shared_events.origin}"
    with psycopg.connect(_admin_url(os.environ[PG_ENV]), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    assert killed == [(True,)]


@contextlib.contextmanager
def _listener_down(harness: Harness) -> Iterator[None]:
    """The replica's listener dropped and unable to come back (its connects fail) inside
    the block; back, and listening again, after it."""
    events = harness.state.shared_events
    good = events.listen_conninfo
    events.listen_conninfo = "host=127.0.0.1 port=1 connect_timeout=1"
    _terminate_listener(harness)
    wait_for(lambda: not listening(harness), what="the listener down")
    yield
    events.listen_conninfo = good
    wait_for(lambda: listening(harness), what="the listener back")


def test_events_missed_while_the_listen_connection_was_down_are_re_read(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    seen = Collector(b)
    events = b.state.shared_events
    with _listener_down(b):  # while A changes things
        created = a.gateway("POST", "/v1/gateway/approvals", json=_approval_body("e" * 64)).json()
        apv = created["id"]
        a.admin("POST", f"/v1/approvals/{apv}/deny")
        a.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "agent:Bot"})
        assert seen.find("approval.decided", lambda d: d["id"] == apv) is None
    assert events.resyncs >= 1
    seen.wait("approval.created", lambda d: d["id"] == apv, "missed approval.created re-read")
    denied = seen.wait("approval.decided", lambda d: d["id"] == apv, "missed decision re-read")
    assert denied["status"] == "denied"
    seen.wait("kill_switch", lambda d: any(k["scope"] == "agent" for k in d["active"]),
              "missed kill switch re-read")  # fmt: skip
    # B answers the long-poll of a held request decided while it was not listening
    waited = b.gateway("GET", f"/v1/gateway/approvals/{apv}/wait?timeout=0").json()
    assert waited["status"] == "denied"


def test_notification_payloads_stay_under_the_postgres_limit() -> None:
    items = [("approval.decided", f"apv_{n:030d}") for n in range(2000)]
    items.insert(700, ("config", "12"))
    messages = _messages("origin", items)
    assert all(len(payload.encode()) < 8000 for payload, _ in messages)  # PostgreSQL's limit
    assert sum(count for _, count in messages) == len(items)
    ids = [i for payload, _ in messages for i in json.loads(payload)["i"]]
    assert ids == [ident for _, ident in items]  # every id, in order


def test_a_snapshot_is_read_at_one_moment_while_another_replica_commits(pair: Pair) -> None:
    """A change committed between two of load_snapshot's reads must not leave a snapshot
    that carries the new version without the change (that replica would never reload it)."""
    from agentfirewall_server.snapshot import load_snapshot

    with pair.b.state.db.reader_engine.connect() as conn:
        execute = conn.execute
        fired: list[str] = []

        def execute_then_commit_elsewhere(*args: Any, **kwargs: Any) -> Any:
            result = execute(*args, **kwargs)
            if not fired:  # right after the first read: replica A commits a change
                fired.append(pair.a.create_agent("Sneaky"))
            return result

        conn.execute = execute_then_commit_elsewhere  # type: ignore[method-assign]
        snap = load_snapshot(conn)
    assert fired
    assert "Sneaky" not in snap.agents_by_name
    assert snap.version < pair.a.state.snapshot.version  # so B will reload it
    wait_for(lambda: "Sneaky" in pair.b.state.snapshot.agents_by_name, what="B reloads")


def test_traffic_missed_while_the_listen_connection_was_down_is_re_read_once(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    seen = Collector(b)
    events = b.state.shared_events

    def ingest(harness: Harness, *records: dict[str, Any]) -> None:
        answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": list(records)})
        assert answer.status_code == 200, answer.text

    def times(request_id: str) -> int:
        return sum(
            1 for k, d in list(seen.events) if k == "traffic" and d["request_id"] == request_id
        )

    ingest(a, {"request_id": "req-before", "agent": "Bot", "decision": "allow"})
    seen.wait("traffic", lambda d: d["request_id"] == "req-before", "live traffic on B")
    wait_for(lambda: events.traffic_mark is not None, what="B's traffic watermark")
    missed = [f"req-missed-{i}" for i in range(3)]
    with _listener_down(b):
        ingest(a, *({"request_id": r, "agent": "Bot", "decision": "deny"} for r in missed))
        # a record the gateway stamped long ago and shipped only now (it was offline)
        late = {"request_id": "req-late", "agent": "Bot", "decision": "allow",
                "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        ingest(a, late)
        ingest(b, {"request_id": "req-local", "agent": "Bot", "decision": "allow"})  # B's own
        assert all(times(r) == 0 for r in [*missed, "req-late"])
    for request_id in [*missed, "req-late"]:
        seen.wait("traffic", lambda d, r=request_id: d["request_id"] == r, f"{request_id} re-read")
    got = seen.find("traffic", lambda d: d["request_id"] == "req-missed-0")
    assert got["decision"] == "deny"
    assert "decision_input" not in got
    ingest(a, {"request_id": "req-after", "agent": "Bot", "decision": "allow"})
    seen.wait("traffic", lambda d: d["request_id"] == "req-after", "live traffic again")
    # each once: neither what B saw live before the drop nor its own records come again
    for request_id in ["req-before", *missed, "req-late", "req-local", "req-after"]:
        assert times(request_id) == 1, request_id
