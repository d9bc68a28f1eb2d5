"""A pending approval with no Slack message yet is posted later, once, by one server.

Given up for a transient reason (Slack down, rate limited, the server stopping), created
while Slack was unreachable or not set up: the sweep (at the start, at each configuration
change and every ``AGENTFIREWALL_SLACK_SWEEP_SECONDS``) posts it once Slack answers. Slack
refusing it keeps it given up until the Slack settings change; a decided approval is never
posted; several replicas on one PostgreSQL post it once (the claim in its row). Real
servers (uvicorn subprocesses) against the fake Slack of `test_slack_delivery` over HTTP,
and a Hypothesis property over random interleavings of two replicas' tries, give-ups,
decisions, crashes and settings changes against the claim functions themselves.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.pool import StaticPool

from agentfirewall_server.notify.claims import (
    CLAIM_SECONDS,
    claim_post,
    refused_mark,
    release_claims,
    unposted,
)
from agentfirewall_server.notify.slack import store_message
from agentfirewall_server.store.schema import approvals, metadata
from tests.livesrv import LiveServer
from tests.server.test_gateway_api import _approval_body
from tests.server.test_slack_delivery import (
    LIMITED_NO_WAIT,
    POST,
    TOKEN,
    Answer,
    FakeSlack,
    _until,
    slack,
)

__all__ = ["slack"]  # the fake Slack fixture, shared with test_slack_delivery

SWEEP = 0.3  # seconds between two sweeps here (a server's default: 300)
SETTINGS = {"slack_bot_token": TOKEN, "slack_signing_secret": "s", "slack_channel": "C0FAKE"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    """The servers a test starts (stopped afterwards)."""
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.stop()


def _start(
    started: list[LiveServer],
    data_dir: Path,
    database_url: str,
    api_url: str,
    sweep: float = SWEEP,
) -> LiveServer:
    env = {
        "AGENTFIREWALL_DATABASE_URL": database_url,
        "AGENTFIREWALL_SLACK_API_URL": api_url,
        "AGENTFIREWALL_SLACK_SWEEP_SECONDS": str(sweep),
    }
    server = LiveServer.start(data_dir, env=env)
    started.append(server)
    return server


def _configure(server: LiveServer, **changes: str) -> None:
    r = server.admin("PATCH", "/v1/settings", json={**SETTINGS, **changes})
    assert r.status_code == 200, r.text


def _hold(server: LiveServer, count: int = 1) -> list[str]:
    ids = []
    for n in range(count):
        body = {**_approval_body(f"{n:064x}"), "timeout_seconds": 600}
        r = server.gateway("POST", "/v1/gateway/approvals", json=body)
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])
    return ids


def _failed(server: LiveServer) -> list[dict[str, Any]]:
    r = server.admin("GET", "/v1/audit?event_type=approval.slack_failed&limit=1000")
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def _a_few_sweeps() -> None:
    """Time for several sweeps to run (what they must not do is then checked)."""
    time.sleep(SWEEP * 8)


def _posts(fake: FakeSlack, approval_id: str) -> int:
    with fake.lock:
        return list(fake.posted.values()).count(approval_id)


def test_a_post_given_up_while_slack_is_down_is_posted_once_slack_is_back(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    fake, url = slack
    fake.reset(always={POST: LIMITED_NO_WAIT})  # every try refused at once: given up fast
    server = _start(servers, tmp_path / "tf", database_url, url)
    _configure(server)
    server.create_agent("Bot")
    (apv,) = _hold(server)
    _until("given up", lambda: _failed(server))
    _a_few_sweeps()  # each tries it again while Slack is still down: audited once
    assert [e["subject"] for e in _failed(server)] == [apv]
    assert {e["data"]["reason"] for e in _failed(server)} == {"ratelimited"}
    fake.reset()  # Slack is back
    _until("posted by a sweep", lambda: fake.message_of(apv))
    _a_few_sweeps()
    assert _posts(fake, apv) == 1
    assert server.admin("GET", f"/v1/approvals/{apv}").json()["status"] == "pending"
    assert TOKEN not in server.log()


def test_an_approval_created_while_slack_was_unreachable_is_posted_after_a_restart(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    """Unreachable (nothing listens), the server stopped with the post still being tried:
    the next start posts it (no sweep interval passes: 300 s)."""
    fake, url = slack
    fake.reset()
    unreachable = f"http://127.0.0.1:{_closed_port()}/api"
    server = _start(servers, tmp_path / "tf", database_url, unreachable, sweep=300)
    _configure(server)
    server.create_agent("Bot")
    (apv,) = _hold(server)
    server.stop()
    server.env["AGENTFIREWALL_SLACK_API_URL"] = url
    server.launch(port=0)
    _until("posted at the start", lambda: fake.message_of(apv))
    assert _posts(fake, apv) == 1
    assert [e["data"]["reason"] for e in _failed(server)] == ["shutdown"]


def test_an_approval_created_before_slack_was_set_up_is_posted_when_it_is(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    fake, url = slack
    fake.reset()
    server = _start(servers, tmp_path / "tf", database_url, url, sweep=300)
    server.create_agent("Bot")
    (apv,) = _hold(server)
    _configure(server)  # a configuration change: a sweep now
    _until("posted", lambda: fake.message_of(apv))
    assert _posts(fake, apv) == 1


def test_a_decided_approval_is_never_posted(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    """Given up, or created before Slack was set up, then decided: neither posted nor
    updated (it has no message) by any later sweep or start; a pending one is."""
    fake, url = slack
    fake.reset()
    server = _start(servers, tmp_path / "tf", database_url, url)
    server.create_agent("Bot")
    early, late, pending = _hold(server, 3)  # Slack not set up yet: no post
    for apv in (early, late):
        assert server.admin("POST", f"/v1/approvals/{apv}/deny").status_code == 200
    _configure(server)
    _until("the pending one posted", lambda: fake.message_of(pending))
    server.stop()
    server.launch(port=0)
    _a_few_sweeps()
    with fake.lock:
        assert [apv for _, apv in fake.calls] == [pending]


def test_a_post_slack_refused_waits_for_the_settings_to_change(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    """``channel_not_found`` will not pass by itself: no sweep tries it again, until the
    channel (a Slack setting) changes."""
    fake, url = slack
    fake.reset(script={POST: [Answer(200, {"ok": False, "error": "channel_not_found"})]})
    server = _start(servers, tmp_path / "tf", database_url, url)
    _configure(server)
    server.create_agent("Bot")
    (apv,) = _hold(server)
    _until("given up", lambda: _failed(server))
    _a_few_sweeps()
    assert fake.tries(POST, apv) == 1
    assert fake.message_of(apv) is None
    _configure(server, slack_channel="C0OTHER")
    _until("posted to the new channel", lambda: fake.message_of(apv))
    assert _posts(fake, apv) == 1


@pytest.mark.postgres
def test_two_replicas_post_a_pending_approval_once(
    tmp_path: Path, database_url: str, slack: tuple[FakeSlack, str], servers: list[LiveServer]
) -> None:
    """Two replicas sweep the same approvals at the same moment (Slack set up: both hear
    the configuration change) and again every sweep while Slack holds the first post: each
    approval is posted by exactly one of them, once."""
    if database_url.startswith("sqlite"):
        pytest.skip("one SQLite database serves one server (datalock.py): replicas need PostgreSQL")
    fake, url = slack
    fake.reset(hold_posts=True)
    first = _start(servers, tmp_path / "tf", database_url, url)
    first.create_agent("Bot")
    ids = _hold(first, 5)  # Slack not set up yet: no post
    shutil.copytree(tmp_path / "tf", tmp_path / "tf2")
    _start(servers, tmp_path / "tf2", database_url, url)
    _configure(first)
    assert fake.post_arrived.wait(30)
    _a_few_sweeps()  # the other replica sweeps while the first post is held
    fake.gate.set()
    _until("every approval posted", lambda: all(fake.message_of(apv) for apv in ids))
    _a_few_sweeps()
    for apv in ids:
        assert fake.tries(POST, apv) == 1, apv
        assert _posts(fake, apv) == 1, apv


# the claims, interleaved at random -----------------------------------------------------

REPLICAS, APPROVALS = ("a", "b"), 3
ON_ONE = ["posted", "failed", "given_up", "refused"]
STEP = st.one_of(
    st.tuples(st.sampled_from(ON_ONE), st.sampled_from(REPLICAS), st.integers(0, APPROVALS - 1)),
    st.tuples(st.just("decide"), st.just(""), st.integers(0, APPROVALS - 1)),
    st.tuples(
        st.sampled_from(["crash", "settings", "lapse"]), st.sampled_from(REPLICAS), st.just(0)
    ),
)
ROW = {"status": "pending", "agent": "Bot", "source": "gateway", "action_spec": "{}",
       "action_hash": "0" * 64, "risk_score": 1.0, "reason": "r",
       "required_approver_roles": "[]", "created_at": 0.0, "expires_at": 1e12}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_each_approval_is_posted_at_most_once_and_none_is_lost(
    steps: list[tuple[str, str, int]],
) -> None:
    """Two replicas try posts (each try claims first: `posted` reaches Slack, `failed`
    does not and keeps the claim), give them up (transient or refused), crash (a restart
    is a new notifier; its claims are left to lapse), approvals get decided, the Slack
    settings change, time passes a claim's life. Always: no approval is posted twice, or
    once decided; and a sweep finds exactly the pending approvals with no message that no
    live replica is posting, no dead one's claim still holds, and Slack did not refuse
    under the current settings."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine, tables=[approvals])
    ids = [f"apv_{n}" for n in range(APPROVALS)]
    clock, channel = 1000.0, 0
    posts = dict.fromkeys(ids, 0)
    generation = dict.fromkeys(REPLICAS, 0)
    holding: dict[str, set[str]] = {r: set() for r in REPLICAS}  # live replicas' claims
    orphaned: set[str] = set()  # claims of crashed replicas, not lapsed yet
    refused: set[tuple[str, str]] = set()  # (approval, the settings' mark it was refused under)
    with engine.begin() as conn:
        conn.execute(insert(approvals), [{**ROW, "id": apv} for apv in ids])
    for op, replica, n in steps:
        apv, mark = ids[n], refused_mark("u", f"C{channel}", "sealed")
        mine = f"{replica}{generation.get(replica, 0)}"
        with engine.begin() as conn:
            status = conn.execute(select(approvals.c.status).where(approvals.c.id == apv))
            pending = status.scalar() == "pending"
            if op in ("posted", "failed") and claim_post(conn, apv, mine, mark, clock):
                assert pending
                assert apv not in orphaned
                assert all(apv not in held for r, held in holding.items() if r != replica)
                holding[replica].add(apv)
                if op == "posted":
                    posts[apv] += 1
                    store_message(conn, apv, "C", f"ts{n}")
                    holding[replica].discard(apv)
            elif op in ("given_up", "refused") and apv in holding[replica]:
                claim = mark if op == "refused" else None
                release_claims(conn, [(apv, claim)], mine, clock)
                holding[replica].discard(apv)
                if claim is not None:
                    refused.add((apv, mark))
            elif op == "decide":
                conn.execute(update(approvals).where(approvals.c.id == apv)
                             .values(status="denied"))  # fmt: skip
            elif op == "crash":
                orphaned |= holding[replica]
                holding[replica] = set()
                generation[replica] += 1
            elif op == "settings":
                channel += 1
            elif op == "lapse":  # no live replica waits that long between two tries
                clock += CLAIM_SECONDS + 1
                orphaned = set()
                for r in REPLICAS:
                    holding[r] = set()
                    generation[r] += 1
            mark = refused_mark("u", f"C{channel}", "sealed")
            found = {r["id"] for r in unposted(conn, mark, clock, limit=APPROVALS)}
            stored = conn.execute(select(approvals.c.id, approvals.c.status,
                                         approvals.c.slack_ts)).all()  # fmt: skip
        assert all(count <= 1 for count in posts.values()), posts
        busy = orphaned.union(*holding.values())
        for apv, status, ts in stored:
            expected = status == "pending" and ts is None and apv not in busy
            expected = expected and (apv, mark) not in refused
            assert (apv in found) == expected, (apv, status, ts, busy, found)
    engine.dispose()
