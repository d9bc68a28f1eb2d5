"""Executions a crash left ``executing``: listed, and settled by an admin (routes/stuck.py).

The crash is real: the server (uvicorn in a subprocess) is killed with SIGKILL while the
upstream holds the executed request, on SQLite and PostgreSQL. Time is not waited out: the
claim is aged in the store while the server is down (its deadline is minutes of settings,
not of the test). `tf actions` drives the settlement, as an admin would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select, update
from starlette.responses import StreamingResponse

from agentfirewall_server.routes.stuck import GRACE_SECONDS
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import action_requests, used_nonces
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.fakes.gate import Gate
from tests.livesrv import LiveServer
from tests.server.conftest import SPEC, Harness

_A = action_requests.c
MERGE = ("PUT", "/repos/acme/api/pulls/42/merge")


@pytest.fixture(scope="module")
def held() -> Iterator[tuple[FakeUpstream, Gate]]:
    gate = Gate()
    fake = FakeUpstream(name="held", hostnames=("held.example.com",), app=gate.app)
    with FakeUpstreams([fake]):
        yield fake, gate


def _age(conn: Connection, action_id: str, seconds: float) -> None:
    """Move the action's claim `seconds` into the past (as if that much time went by)."""
    claimed = conn.execute(select(_A.updated_at).where(_A.id == action_id)).scalar_one()
    conn.execute(
        update(action_requests).where(_A.id == action_id).values(updated_at=claimed - seconds)
    )


def _tf(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_SERVER": server.url, "TF_ADMIN_TOKEN": server.admin_token}
    return subprocess.run(
        [sys.executable, "-m", "agentfirewall_proxy.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_crash_mid_execution_is_listed_and_released_for_a_retry(
    tmp_path: Path, database_url: str, held: tuple[FakeUpstream, Gate]
) -> None:
    fake, gate = held
    fake.clear()
    gate.reset()
    env = {"AGENTFIREWALL_DATABASE_URL": database_url}
    server = LiveServer.start(tmp_path / "tf", env=env)
    try:
        server.admin(
            "POST",
            "/v1/connectors",
            json={"type": "github", "token": "ghp_stuck", "base_url": fake.http_url},
        ).raise_for_status()
        key = server.create_agent("Bot")
        body = server.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
        action_id, token = body["action_request_id"], body["decision_token"]

        def execute() -> None:
            path = f"/v1/actions/{action_id}/execute"
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                server.agent(key, "POST", path, json={"decision_token": token}, timeout=30)

        caller = threading.Thread(target=execute)
        caller.start()
        assert gate.arrived.wait(20), "the execute never reached the upstream"
        server.kill()  # SIGKILL: the outcome is never recorded
        caller.join(30)
        server.launch()

        # just restarted: the claim is recent, so it may still be running somewhere
        early = server.admin("POST", f"/v1/actions/{action_id}/resolve", json={"outcome": "retry"})
        assert early.status_code == 409, early.text
        assert early.json()["error"] == "execution_in_progress"
        assert int(early.headers["Retry-After"]) >= GRACE_SECONDS
        assert server.admin("GET", "/v1/actions/stuck").json()["actions"] == []
        state = server.agent(key, "GET", f"/v1/actions/{action_id}").json()
        assert state["execution_state"] == "executing"
        refused = server.agent(
            key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token}
        )
        assert refused.json()["error"] == "execution_in_progress"

        database = Database(database_url)
        try:
            with database.writer_engine.begin() as conn:
                _age(conn, action_id, 3600)
        finally:
            database.close()

        listed = _tf(server, "actions", "stuck", "--json")
        assert listed.returncode == 0, listed.stderr
        stuck = json.loads(listed.stdout)
        assert [a["action_request_id"] for a in stuck["actions"]] == [action_id]
        assert stuck["actions"][0]["action_type"] == "github.pr.merge"
        assert stuck["actions"][0]["stuck_seconds"] >= 3600
        table = _tf(server, "actions", "stuck")
        assert action_id[:8] in table.stdout
        assert "github.pr.merge" in table.stdout

        # an agent cannot settle its own execution
        path = f"/v1/actions/{action_id}/resolve"
        assert server.agent(key, "POST", path, json={"outcome": "retry"}).status_code in (401, 403)

        prefix = action_id[: len("act_") + 6]  # a unique prefix, as `tf actions stuck` shows
        note = "no merge in the PR's timeline"
        done = _tf(server, "actions", "resolve", prefix, "--outcome", "retry", "--note", note)
        assert done.returncode == 0, done.stderr
        assert "may execute it again" in done.stdout

        again = _tf(server, "actions", "resolve", action_id, "--outcome", "failed")
        assert again.returncode != 0
        assert "nothing to resolve" in again.stderr

        # decided again: the agent gets a new token (the old one is free too) and runs it once
        waited = server.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0").json()
        assert (waited["status"], waited["execution_state"]) == ("allowed", None)
        assert waited["decision_token"]
        gate.open.set()
        ran = server.agent(
            key,
            "POST",
            f"/v1/actions/{action_id}/execute",
            json={"decision_token": waited["decision_token"]},
        )
        assert ran.status_code == 200, ran.text
        assert len(fake.received(*MERGE)) == 2  # the one cut short, and the retry
        events = server.admin("GET", "/v1/audit?event_type=action.execution_resolved").json()
        [event] = events["events"]
        assert event["subject"] == action_id
        assert event["data"] == {"action_type": "github.pr.merge", "outcome": "retry", "note": note}
        assert event["actor"] != "Bot"
        assert server.admin("GET", "/v1/audit/verify").json()["ok"] is True
    finally:
        gate.open.set()
        server.stop()


STUCK_AFTER = 3 * 1.0 + GRACE_SECONDS  # execute timeout 1 s


@pytest.fixture
def stuck_harness(harness_factory: Any, held: tuple[FakeUpstream, Gate]) -> Harness:
    fake, _ = held
    h: Harness = harness_factory(execute_timeout_seconds=1.0)
    h.admin(
        "POST",
        "/v1/connectors",
        json={"type": "github", "token": "ghp_x", "base_url": fake.http_url},
    )
    return h


def _claimed(h: Harness, key: str, age: float) -> str:
    """An allowed action claimed `age` seconds ago (its token spent) that never ended."""
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id: str = body["action_request_id"]
    stamp = time.time() - age

    def job(conn: Connection) -> None:
        conn.execute(
            update(action_requests)
            .where(_A.id == action_id)
            .values(execution_state="executing", updated_at=stamp)
        )
        conn.execute(
            used_nonces.insert().values(
                jti=f"jti-{action_id}", action_request_id=action_id, used_at=stamp,
                expires_at=time.time() + 60,
            )
        )  # fmt: skip

    h.state.db.write_sync(job)
    return action_id


def _nonces(h: Harness, action_id: str) -> int:
    def job(conn: Connection) -> int:
        rows = conn.execute(
            select(used_nonces.c.jti).where(used_nonces.c.action_request_id == action_id)
        )
        return len(list(rows))

    return int(h.state.db.write_sync(job))


@pytest.mark.parametrize(
    ("outcome", "status", "execution_state", "nonces"),
    [
        ("executed", "executed", "executed", 1),
        ("failed", "executed", "failed", 1),
        ("retry", "allowed", None, 0),
    ],
)
def test_each_outcome_settles_only_a_stuck_action(
    stuck_harness: Harness, outcome: str, status: str, execution_state: str | None, nonces: int
) -> None:
    h = stuck_harness
    key = h.create_agent("Bot")
    stuck = _claimed(h, key, STUCK_AFTER + 1)
    recent = _claimed(h, key, STUCK_AFTER - 5)
    listed = h.admin("GET", "/v1/actions/stuck").json()
    assert [a["action_request_id"] for a in listed["actions"]] == [stuck]
    assert listed["stuck_after_seconds"] == STUCK_AFTER

    early = h.admin("POST", f"/v1/actions/{recent}/resolve", json={"outcome": outcome})
    assert (early.status_code, early.json()["error"]) == (409, "execution_in_progress")
    assert 1 <= int(early.headers["Retry-After"]) <= 6
    done = h.admin("POST", f"/v1/actions/{stuck}/resolve", json={"outcome": outcome})
    assert done.status_code == 200, done.text
    assert done.json() == {
        "action_request_id": stuck,
        "outcome": outcome,
        "status": status,
        "execution_state": execution_state,
    }
    state = h.agent(key, "GET", f"/v1/actions/{stuck}").json()
    assert (state["status"], state["execution_state"]) == (status, execution_state)
    assert _nonces(h, stuck) == nonces
    waited = h.agent(key, "GET", f"/v1/actions/{stuck}/wait?timeout=0").json()
    assert bool(waited["decision_token"]) is (outcome == "retry")
    twice = h.admin("POST", f"/v1/actions/{stuck}/resolve", json={"outcome": outcome})
    assert (twice.status_code, twice.json()["error"]) == (409, "not_stuck")
    assert h.admin("GET", "/v1/actions/stuck").json()["actions"] == []
    [event] = h.admin("GET", "/v1/audit?event_type=action.execution_resolved").json()["events"]
    assert (event["subject"], event["data"]["outcome"]) == (stuck, outcome)
    assert "note" not in event["data"]


def test_resolve_refuses_what_it_cannot_settle(stuck_harness: Harness) -> None:
    h = stuck_harness
    key = h.create_agent("Bot")
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id = decided["action_request_id"]
    path = f"/v1/actions/{action_id}/resolve"
    never = h.admin("POST", path, json={"outcome": "retry"})
    assert (never.status_code, never.json()["error"]) == (409, "not_stuck")
    assert "not executed" in never.json()["message"]
    unknown = h.admin("POST", "/v1/actions/act_nope/resolve", json={"outcome": "retry"})
    assert unknown.status_code == 404
    for bad in ({"outcome": "done"}, {}, {"outcome": "retry", "note": "x" * 2001}):
        assert h.admin("POST", path, json=bad).status_code == 422, bad
    assert h.agent(key, "POST", path, json={"outcome": "retry"}).status_code in (401, 403)
    assert h.agent(key, "GET", "/v1/actions/stuck").status_code in (401, 403)
    assert h.admin("GET", "/v1/audit?event_type=action.execution_resolved").json()["events"] == []


def test_a_late_outcome_leaves_the_admins_resolution(
    stuck_harness: Harness, held: tuple[FakeUpstream, Gate]
) -> None:
    """An execution that ends after it was resolved (only a clock gone wrong allows this)
    records its audit event, marked, and changes nothing else."""
    fake, gate = held
    fake.clear()
    gate.reset()
    h = stuck_harness
    key = h.create_agent("Bot")
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id = body["action_request_id"]
    answers: list[Any] = []
    path = f"/v1/actions/{action_id}/execute"
    caller = threading.Thread(
        target=lambda: answers.append(
            h.agent(key, "POST", path, json={"decision_token": body["decision_token"]})
        )
    )
    caller.start()
    try:
        assert gate.arrived.wait(20)
        h.state.db.write_sync(lambda conn: _age(conn, action_id, 3600))
        done = h.admin("POST", f"/v1/actions/{action_id}/resolve", json={"outcome": "failed"})
        assert done.status_code == 200, done.text
    finally:
        gate.open.set()
        caller.join(30)
    assert answers[0].status_code == 200, answers[0].text
    state = h.agent(key, "GET", f"/v1/actions/{action_id}").json()
    assert (state["status"], state["execution_state"]) == ("executed", "failed")
    assert state["execution"]["resolved"] == "failed"
    assert str(state["execution"]["executed_at"]).endswith("Z")  # RFC 3339, as every time
    [late] = h.admin("GET", "/v1/audit?event_type=action.executed").json()["events"]
    assert late["data"]["already_resolved"] is True


async def _drip(scope: Any, receive: Any, send: Any) -> None:
    """A 200 whose body comes a byte every 0.2 s for 6 s: no read ever times out."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b" "
            await asyncio.sleep(0.2)

    await StreamingResponse(body(), media_type="application/json")(scope, receive, send)


def test_the_whole_send_has_a_deadline(harness_factory: Any) -> None:
    """Every execution ends within three execute timeouts: what makes "stuck" knowable."""
    fake = FakeUpstream(name="drip", hostnames=("drip.example.com",), app=_drip)
    with FakeUpstreams([fake]):
        h: Harness = harness_factory(execute_timeout_seconds=0.5)
        h.admin(
            "POST",
            "/v1/connectors",
            json={"type": "github", "token": "ghp_x", "base_url": fake.http_url},
        )
        key = h.create_agent("Bot")
        body = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
        action_id = body["action_request_id"]
        path = f"/v1/actions/{action_id}/execute"
        cut = h.agent(key, "POST", path, json={"decision_token": body["decision_token"]})
    assert cut.status_code == 504, cut.text
    assert (cut.json()["error"], cut.json()["retryable"]) == ("upstream_timeout", False)
    state = h.agent(key, "GET", f"/v1/actions/{action_id}").json()
    assert (state["status"], state["execution_state"]) == ("executed", "failed")
