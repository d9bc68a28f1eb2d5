"""A kill switch is in force at once, whatever the backlog of pending approvals it covers.

Activating one committed the switch and denied every pending approval it covered in one
writer job (an UPDATE and an audit append per row): with 20,000 held requests the switch
took 8 s to be served to the gateways, which forwarded meanwhile. Now the switch's own write
is published first; the approvals are denied after it, at most `CHUNK` per writer job; what
a restart leaves pending is denied by the expiry loop's sweep; and none of them can be
approved meanwhile (SQLite and PostgreSQL).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, update

from agentfirewall.actions import parse_action_spec
from agentfirewall_server import approvals as approvals_module
from agentfirewall_server.approvals import CHUNK, deny_covered
from agentfirewall_server.routes.killswitch import _activate
from agentfirewall_server.store.schema import approvals, kill_switches
from tests.server.conftest import Harness


def _hold(h: Harness, n: int, *, agent: str = "Bot", provider: str = "github") -> list[str]:
    """`n` requests of `agent` held by a gateway (pending approvals), their ids."""
    ids: list[str] = []
    while len(ids) < n:
        items = []
        for i in range(len(ids), min(len(ids) + 1000, n)):
            parameters = {"number": i, "note": "mentions github"}
            resource = {"provider": provider, "target": "acme/api"}
            spec = parse_action_spec(
                {"type": f"{provider}.thing.do", "resource": resource, "parameters": parameters}
            )
            item = {"agent": agent, "connector": provider, "action_spec": spec.to_dict()}
            items.append({**item, "action_hash": spec.action_hash})
        r = h.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": items})
        assert r.status_code == 200, r.text
        ids += [a["id"] for a in r.json()["approvals"]]
    return ids


def _statuses(h: Harness, ids: list[str]) -> dict[str, str]:
    def read(conn: Any) -> dict[str, str]:
        rows = conn.execute(select(approvals.c.id, approvals.c.status)).all()
        return {r.id: r.status for r in rows if r.id in set(ids)}

    found: dict[str, str] = h.state.db.read_sync(read)
    return found


def test_kill_switch_is_served_before_its_approvals_are_denied_in_chunks(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.create_agent("Bot")
    held = _hold(harness, 2 * CHUNK + 1)
    pages: list[tuple[int, bool]] = []  # (denied, switch already in the served snapshot)
    real = approvals_module.deny_covered

    def spy(conn: Any, now: float, **kw: Any) -> Any:
        denied, cursor = real(conn, now, **kw)
        pages.append((len(denied), bool(harness.state.snapshot.kill_switches)))
        return denied, cursor

    monkeypatch.setattr(approvals_module, "deny_covered", spy)
    r = harness.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
    assert r.status_code == 200, r.text
    assert r.json()["approvals_denied"] == len(held)
    denying = [p for p in pages if p[0]]
    assert len(denying) >= 3  # never all in one writer job
    assert all(count <= CHUNK and served for count, served in denying)
    assert set(_statuses(harness, held).values()) == {"denied"}
    events = harness.admin("GET", "/v1/audit?event_type=approval.responded&limit=1000").json()
    assert {e["data"]["note"] for e in events["events"]} == {"kill switch activated (all)"}
    assert harness.admin("GET", "/v1/audit/verify").json()["ok"] is True


def test_approvals_a_restart_left_pending_are_denied_and_never_approved(
    harness: Harness,
) -> None:
    """The switch committed, the server stopped before its sweep: its approvals cannot be
    approved (denying one still works), and the expiry loop's sweep denies the others."""
    harness.create_agent("Bot")
    harness.create_agent("Other")
    held = _hold(harness, 3)
    spared = _hold(harness, 1, agent="Other", provider="slack")
    harness.state.db.write_sync(_activate("connector", "github", "incident", "user:owner"))
    assert set(_statuses(harness, held).values()) == {"pending"}  # the sweep never ran

    refused = harness.admin("POST", f"/v1/approvals/{held[0]}/approve")
    assert refused.status_code == 409, refused.text
    assert refused.json()["kill_switch"] == "connector:github"
    assert harness.admin("POST", f"/v1/approvals/{held[0]}/deny").json()["status"] == "denied"

    past = time.time() - 60  # the backstop leaves a new switch to its request for 10 s
    harness.state.db.write_sync(
        lambda c: c.execute(update(kill_switches).values(activated_at=past))
    )
    deadline = time.monotonic() + 10
    while set(_statuses(harness, held).values()) != {"denied"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(_statuses(harness, held).values()) == {"denied"}
    assert _statuses(harness, spared) == {spared[0]: "pending"}  # slack, mentioning github
    ok = harness.admin("POST", f"/v1/approvals/{spared[0]}/approve")
    assert ok.json()["status"] == "approved"


def test_sweep_pages_reach_every_covered_approval_past_lookalikes(harness: Harness) -> None:
    """A connector switch finds its approvals by the action's provider in its JSON: the
    candidates that only mention it are skipped, never fill a page for good."""
    harness.create_agent("Bot")
    lookalikes = _hold(harness, 7, provider="slack")  # their parameters mention github
    covered = _hold(harness, 5)
    harness.state.db.write_sync(_activate("connector", "github", "", "user:owner"))
    after: str | None = ""
    while after is not None:
        _, after = harness.state.db.write_sync(
            lambda c, a=after: deny_covered(c, time.time(), after=a, limit=2)
        )
    assert set(_statuses(harness, covered).values()) == {"denied"}
    assert set(_statuses(harness, lookalikes).values()) == {"pending"}


def test_expiry_loop_writes_nothing_while_idle_and_one_job_a_tick_otherwise(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop ran two writer jobs a second (expire, then a sweep page) even with nothing
    pending: on PostgreSQL each took the advisory lock traffic waits on. Idle, it now only
    reads; with approvals pending, one job a tick does both."""
    time.sleep(1.2)  # past the first tick's hourly prune
    db = harness.state.db
    writes: list[str] = []
    real_write = db.write

    async def counting(fn: Any) -> Any:
        writes.append(getattr(fn, "__qualname__", ""))
        return await real_write(fn)

    expired: list[int] = []
    real_expire = approvals_module.expire_due

    def spy(conn: Any, now: float) -> Any:
        expired.append(1)
        return real_expire(conn, now)

    monkeypatch.setattr(db, "write", counting)
    monkeypatch.setattr(approvals_module, "expire_due", spy)
    time.sleep(2.5)
    assert writes == []  # idle: reads only
    assert expired == []

    harness.create_agent("Bot")
    _hold(harness, 1)
    writes.clear()
    deadline = time.monotonic() + 5
    while len(expired) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    ticks = [w for w in writes if "_expiry_tick" in w]
    assert len(expired) >= 2
    assert len(ticks) == len(expired), writes
    assert len(writes) == len(ticks)  # nothing else: expire and sweep share the job
