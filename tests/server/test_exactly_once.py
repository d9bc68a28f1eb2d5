"""At most once: an action executes once, whatever tokens exist for it (DESIGN.md 7.4).

The race runs against the real server (uvicorn in a subprocess) on SQLite and PostgreSQL,
one server or two sharing the database.
The upstream holds the first request it receives until every other execute has been
answered, so the concurrent executes overlap by construction, not by timing: without the
claim in the store every one of them would reach the upstream.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from agentfirewall import AgentFirewall
from agentfirewall.errors import ServerError
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import action_requests
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.fakes.gate import Gate
from tests.livesrv import LiveServer
from tests.server.conftest import SPEC, Harness

CONCURRENT = 8


@pytest.fixture(scope="module")
def slow() -> Iterator[tuple[FakeUpstream, Gate]]:
    gate = Gate()
    fake = FakeUpstream(name="slow", hostnames=("slow.example.com",), app=gate.app)
    with FakeUpstreams([fake]):
        yield fake, gate


def _tokens(server: LiveServer, key: str) -> tuple[str, list[str]]:
    """T1 from the request, T2-T4 from /wait, T5 from an Idempotency-Key replay."""
    headers = {"Idempotency-Key": "merge-42"}
    first = server.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}, headers=headers)
    assert first.status_code == 200, first.text
    action_id = first.json()["action_request_id"]
    tokens = [first.json()["decision_token"]]
    for _ in range(3):
        waited = server.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0")
        tokens.append(waited.json()["decision_token"])
    replay = server.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    tokens.append(replay.json()["decision_token"])
    assert len(set(tokens)) == 5
    assert all(tokens)
    return action_id, tokens


@pytest.mark.parametrize("instances", [1, 2], ids=["one-server", "two-servers"])
def test_concurrent_executes_with_every_token_run_the_action_once(
    tmp_path: Path, database_url: str, slow: tuple[FakeUpstream, Gate], instances: int
) -> None:
    """Two servers share one database (and the data directory's keys) in the second case."""
    if instances == 2 and database_url.startswith("sqlite"):
        pytest.skip("one SQLite database serves one server (datalock.py): replicas need PostgreSQL")
    fake, gate = slow
    fake.clear()
    gate.open.clear()
    env = {"AGENTFIREWALL_DATABASE_URL": database_url}
    servers = [LiveServer.start(tmp_path / "tf", env=env)]
    try:
        server = servers[0]
        r = server.admin(
            "POST",
            "/v1/connectors",
            json={"type": "github", "token": "ghp_once", "base_url": fake.http_url},
        )
        assert r.status_code == 201, r.text
        key = server.create_agent("Bot")
        action_id, tokens = _tokens(server, key)
        if instances == 2:
            shutil.copytree(tmp_path / "tf", tmp_path / "tf2")
            servers.append(LiveServer.start(tmp_path / "tf2", env=env))
        answers: list[httpx.Response] = []
        done = threading.Condition()

        def execute(i: int) -> httpx.Response:
            path = f"/v1/actions/{action_id}/execute"
            token = tokens[i % len(tokens)]
            answer = servers[i % instances].agent(
                key, "POST", path, json={"decision_token": token}, timeout=60
            )
            with done:
                answers.append(answer)
                done.notify_all()
            return answer

        with ThreadPoolExecutor(CONCURRENT) as pool:
            futures = [pool.submit(execute, i) for i in range(CONCURRENT)]
            with done:  # all but the one the upstream holds are answered first
                done.wait_for(lambda: len(answers) >= CONCURRENT - 1, timeout=30)
            gate.open.set()
            results = [f.result() for f in futures]
        codes = sorted(r.status_code for r in results)
        assert codes == [200] + [409] * (CONCURRENT - 1), [r.text for r in results]
        for refused in (r for r in results if r.status_code == 409):
            body = refused.json()
            assert body["error"] in ("execution_in_progress", "token_used"), body
            assert action_id in body["message"]
        assert len(fake.received("PUT", "/repos/acme/api/pulls/42/merge")) == 1
        assert len(fake.received()) == 1
        events = server.admin("GET", "/v1/audit?event_type=action.executed").json()["events"]
        assert [e["subject"] for e in events] == [action_id]
        state = server.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0").json()
        assert state["status"] == "executed"
        assert state["execution_state"] == "executed"
        assert state["decision_token"] is None
        for token in tokens:  # afterwards, every token is refused and nothing is sent
            again = server.agent(
                key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token}
            )
            assert again.status_code == 409
            assert again.json()["error"] == "token_used"
        assert len(fake.received()) == 1
    finally:
        gate.open.set()
        for running in servers:
            running.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _sdk(h: Harness, key: str) -> AgentFirewall:
    """The Python SDK, talking to the in-process app (no retries: each call is seen)."""

    def forward(request: httpx.Request) -> httpx.Response:
        answer = h.client.request(request.method, str(request.url), headers=request.headers,
                                  content=request.content)  # fmt: skip
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return AgentFirewall(api_key=key, base_url="http://testserver/api", max_retries=0,
                         transport=httpx.MockTransport(forward))  # fmt: skip


def _execute(h: Harness, key: str, action_id: str, token: str) -> Any:
    return h.agent(key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token})


def test_connection_refused_leaves_the_action_retryable(
    harness: Harness, slow: tuple[FakeUpstream, Gate]
) -> None:
    fake, gate = slow
    fake.clear()
    gate.open.set()
    dead = f"http://127.0.0.1:{_closed_port()}"
    r = harness.admin(
        "POST", "/v1/connectors", json={"type": "github", "token": "ghp_x", "base_url": dead}
    )
    connector = r.json()["id"]
    key = harness.create_agent("Bot")
    body = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id, token = body["action_request_id"], body["decision_token"]
    refused = _execute(harness, key, action_id, token)
    assert refused.status_code == 502
    assert refused.json()["error"] == "upstream_unreachable"
    assert refused.json()["retryable"] is True
    with _sdk(harness, key) as tf, pytest.raises(ServerError) as raised:  # the SDK says so too
        tf.execute(action_id, token)
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_unreachable")
    assert raised.value.retryable is True
    state = harness.agent(key, "GET", f"/v1/actions/{action_id}").json()
    assert (state["status"], state["execution_state"], state["executed"]) == (
        "allowed",
        None,
        False,
    )
    failed = harness.admin("GET", "/v1/audit?event_type=action.execution_failed").json()
    assert [e["data"]["retryable"] for e in failed["events"]] == [True, True]  # raw, then SDK
    # the upstream comes back: the same token executes the action, once
    assert harness.admin("DELETE", f"/v1/connectors/{connector}").status_code in (200, 204)
    harness.admin(
        "POST",
        "/v1/connectors",
        json={"type": "github", "token": "ghp_x", "base_url": fake.http_url},
    )
    ok = _execute(harness, key, action_id, token)
    assert ok.status_code == 200, ok.text
    assert len(fake.received()) == 1
    assert _execute(harness, key, action_id, token).json()["error"] == "token_used"


def test_a_failure_after_the_request_was_sent_is_not_retried(
    harness_factory: Any, slow: tuple[FakeUpstream, Gate]
) -> None:
    fake, gate = slow
    fake.clear()
    gate.open.clear()  # the upstream holds the request past the execute timeout
    h: Harness = harness_factory(execute_timeout_seconds=0.5)
    h.admin(
        "POST",
        "/v1/connectors",
        json={"type": "github", "token": "ghp_x", "base_url": fake.http_url},
    )
    key = h.create_agent("Bot")
    body = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    action_id = body["action_request_id"]
    try:
        with _sdk(h, key) as tf, pytest.raises(ServerError) as timed_out:
            tf.execute(action_id, body["decision_token"])
    finally:
        gate.open.set()
    assert (timed_out.value.status_code, timed_out.value.code) == (504, "upstream_timeout")
    assert timed_out.value.retryable is False  # the server's word, surfaced by the SDK
    assert isinstance(timed_out.value.body, dict)
    assert timed_out.value.body["retryable"] is False
    state = h.agent(key, "GET", f"/v1/actions/{action_id}").json()
    assert (state["status"], state["execution_state"]) == ("executed", "failed")
    assert state["execution"]["retryable"] is False
    assert str(state["execution"]["executed_at"]).endswith("Z")  # RFC 3339, as every time
    waited = h.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0").json()
    assert waited["decision_token"] is None
    again = _execute(h, key, action_id, body["decision_token"])
    assert again.status_code == 409
    assert len(fake.received()) == 1


def test_migration_0003_marks_actions_executed_before_it(database_url: str) -> None:
    database = Database(database_url)
    columns = (
        "id, agent_id, agent, action_type, action_spec, action_hash, status, decision, "
        "risk_score, execution, created_at, updated_at"
    )
    rows = [
        ("act_ok", "executed", '{"status_code": 200, "executed_at": 1.0}'),
        ("act_err", "executed", '{"error": "upstream_timeout", "executed_at": 1.0}'),
        ("act_new", "allowed", None),
    ]
    try:
        with database.writer_engine.connect() as conn:
            upgrade(conn, "0002")
            for action_id, status, execution in rows:
                conn.execute(
                    text(
                        f"INSERT INTO action_requests ({columns}) VALUES (:id, 'agt_1', 'Bot', "  # noqa: S608
                        "'github.pr.merge', '{}', 'h', :status, '{}', 0.1, :execution, 1.0, 1.0)"
                    ),
                    {"id": action_id, "status": status, "execution": execution},
                )
            conn.commit()
        database.migrate()
        database.start()
        found = database.read_sync(
            lambda c: dict(
                c.execute(select(action_requests.c.id, action_requests.c.execution_state)).all()
            )
        )
        assert found == {"act_ok": "executed", "act_err": "failed", "act_new": None}
    finally:
        database.close()
