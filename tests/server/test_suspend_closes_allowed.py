"""Nothing decided before an agent's suspension or removal runs after it (SQLite and
PostgreSQL): the agent asks again.

The suspension closed what approvals had allowed (``routes/agents.py``, `_close_approved`),
but an action the rules allowed has no approval: allowed, not executed, its token still
valid, it was executed by ``POST /actions/{id}/execute`` (Mode A) once the agent was active
again, and so was one whose send had failed (nothing sent) across the suspension. The agent
now keeps when it was last closed (``agents.closed_before``: stamped at its suspension or
removal, and again when it is activated after one), and the execute claim refuses an action
decided before that moment (409 ``not_allowed``). Nothing is rewritten: an agent that acts
itself (Mode B) reads its history as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, select, update

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.approvals import create_approval
from agentfirewall_server.routes.agents import _set_status
from agentfirewall_server.routes.stuck import stuck_after
from agentfirewall_server.store.schema import action_requests, agents, approvals
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness
from tests.server.test_agent_status_races import _race
from tests.server.test_execute import _execute, _github
from tests.server.test_suspended_approvals import _execute_while, _Stall, stall

__all__ = ["stall"]  # (the fixture, used by a test here)

CLOSED = "request the action again"


def _merge(number: int) -> dict[str, Any]:
    return {**SPEC, "parameters": {"pull_number": number}}


def _allowed(h: Harness, key: str, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert body["status"] == "allowed", body
    return body


def _waited(h: Harness, key: str, action_id: str) -> dict[str, Any]:
    answer = h.agent(key, "GET", f"/v1/actions/{action_id}/wait?timeout=0")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _assert_closed(answer: Any) -> None:
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "not_allowed"
    assert "was decided before its agent" in body["message"]
    assert CLOSED in body["message"]


def _shown(h: Harness, action_id: str) -> tuple[str, str | None]:
    body = h.admin("GET", f"/v1/actions/{action_id}").json()
    return body["status"], body["execution_state"]


def _cycle(h: Harness, agent: str, *changes: str) -> None:
    for change in changes:
        assert h.admin("POST", f"/v1/agents/{agent}/{change}").status_code == 200


@pytest.fixture
def github(harness: Harness, fakes: FakeUpstreams) -> Iterator[Any]:
    upstream = fakes["github"]
    upstream.clear()
    _github(harness, fakes)
    yield upstream
    upstream.clear()


def test_an_action_allowed_before_a_suspension_is_not_executed_after_it(
    harness: Harness, github: Any
) -> None:
    """The reported defect: allowed, suspended, active again, executed with its token."""
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action = body["action_request_id"]
    _cycle(harness, "Bot", "suspend", "activate")

    _assert_closed(_execute(harness, key, action, body["decision_token"]))
    fresh = _waited(harness, key, action)["decision_token"]  # (a token /wait hands out)
    if fresh is not None:
        _assert_closed(_execute(harness, key, action, fresh))
    assert github.received("PUT") == []
    assert _shown(harness, action) == ("allowed", None)  # not rewritten: it was allowed

    again = _allowed(harness, key)  # decided after: executes
    done = _execute(harness, key, again["action_request_id"], again["decision_token"])
    assert done.status_code == 200, done.text
    assert len(github.received("PUT")) == 1


def test_an_action_decided_while_a_replica_had_not_heard_of_the_suspension_stays_closed(
    harness: Harness, github: Any
) -> None:
    """A replica whose snapshot still had the agent active allowed an action during the
    suspension (the suspension written as another replica writes it): the activation
    closes it too, as it was decided before the agent was active again."""
    key = harness.create_agent("Bot")
    record = harness.state.snapshot.agent("Bot")
    harness.state.db.write_sync(_set_status(record, "suspended", "user:other-replica"))
    assert harness.state.snapshot.agent("Bot").status == "active"  # (not heard yet)
    body = _allowed(harness, key)  # decided during the suspension
    _cycle(harness, "Bot", "activate")

    _assert_closed(_execute(harness, key, body["action_request_id"], body["decision_token"]))
    assert github.received("PUT") == []


def test_an_agent_acting_itself_reads_its_history_unchanged(harness: Harness, github: Any) -> None:
    """Mode B: the agent acts itself with its decisions; suspension and activation rewrite
    none of them (status, decision, execution), only Mode A execution is closed."""
    key = harness.create_agent("Bot")
    deny = {"agent": "Bot", "connector": "github", "action_pattern": "github.repo.delete",
            "decision": "deny"}  # fmt: skip
    assert harness.admin("POST", "/v1/permissions", json=deny).status_code == 200
    transfer = {"type": "payment.transfer.initiate", "resource": {"provider": "bank"},
                "parameters": {"amount": 5}}  # fmt: skip
    delete = {**SPEC, "type": "github.repo.delete"}
    specs = [transfer, _merge(1), delete, _merge(2)]
    ids = [
        harness.agent(key, "POST", "/v1/actions", json={"action_spec": s}).json()[
            "action_request_id"
        ]
        for s in specs
    ]
    executed = _waited(harness, key, ids[3])["decision_token"]
    assert _execute(harness, key, ids[3], executed).status_code == 200

    def history() -> list[dict[str, Any]]:
        return [harness.agent(key, "GET", f"/v1/actions/{i}").json() for i in ids]

    before = history()
    assert [a["status"] for a in before] == ["allowed", "allowed", "denied", "executed"]
    _cycle(harness, "Bot", "suspend", "activate")
    assert history() == before
    events = harness.admin("GET", "/v1/audit?limit=1000").json()["events"]
    suspended = next(e["id"] for e in events if e["event_type"] == "agent.suspended")
    assert [e for e in events if e["id"] > suspended and e["subject"] in ids] == []


@pytest.mark.parametrize(
    "changes",
    [("suspend", "activate"), ("revoke",)],
    ids=["suspended-and-active-again", "removed"],
)
def test_a_rule_allowed_action_whose_send_failed_across_a_suspension_is_denied(
    harness: Harness, stall: _Stall, changes: tuple[str, ...]
) -> None:
    """Sent while the agent was suspended and activated again (or removed), nothing sent
    (the upstream hung up in the TLS handshake): denied, not decided again, so the token
    from before the suspension never reaches the upstream."""
    connector = {"type": "github", "token": "ghp_x", "base_url": stall.url}
    assert harness.admin("POST", "/v1/connectors", json=connector).status_code == 201
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    path = f"/v1/actions/{body['action_request_id']}"

    answer = _execute_while(harness, stall, key, path, body["decision_token"], changes)
    assert answer.status_code == 502, answer.text
    assert (answer.json()["error"], answer.json()["retryable"]) == ("upstream_unreachable", False)
    assert _shown(harness, body["action_request_id"]) == ("denied", None)
    if "revoke" in changes:
        return
    stall.arrived.clear()
    again = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert (again.status_code, again.json()["error"]) == (409, "not_allowed")
    assert not stall.arrived.is_set()


def test_a_removed_agents_allowed_action_never_executes(harness: Harness, github: Any) -> None:
    """Removed: its key is refused, and a new agent under its name cannot reach the old
    agent's action (it starts with nothing); the removal is kept as the agent's closure."""
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action = body["action_request_id"]
    agent_id = harness.state.snapshot.agent("Bot").id
    _cycle(harness, "Bot", "revoke")
    assert _execute(harness, key, action, body["decision_token"]).status_code == 401
    newcomer = harness.create_agent("Bot")
    assert _execute(harness, newcomer, action, body["decision_token"]).status_code == 404
    stored = harness.state.db.read_sync(
        lambda c: c.execute(select(agents.c.closed_before).where(agents.c.id == agent_id)).scalar()
    )
    created = harness.state.db.read_sync(
        lambda c: c.execute(
            select(action_requests.c.created_at).where(action_requests.c.id == action)
        ).scalar()
    )
    assert stored is not None
    assert stored >= created
    assert github.received("PUT") == []
    mine = _allowed(harness, newcomer)
    done = _execute(harness, newcomer, mine["action_request_id"], mine["decision_token"])
    assert done.status_code == 200, done.text


def test_a_pending_approval_asked_while_suspended_is_denied_by_the_activation(
    harness: Harness,
) -> None:
    """A gateway on an outdated configuration held a request of the suspended agent (the
    approval was created after the suspension): activating the agent denies it, so it is
    never approved after the activation."""
    harness.create_agent("Bot")
    harness.create_agent("Other")
    _cycle(harness, "Bot", "suspend")
    spec = parse_action_spec(SPEC)

    def held(agent: str) -> Any:
        def job(conn: Connection) -> str:
            row = create_approval(
                conn, agent=agent, connector="github", action_request_id=None, source="proxy",
                spec=spec.to_dict(), action_hash=spec.action_hash, risk_score=0.0,
                reason="held", request=None, roles=(), timeout_seconds=600, now=time.time(),
            )  # fmt: skip
            return str(row["id"])

        return job

    stale, other = (
        harness.state.db.write_sync(held("Bot")),
        harness.state.db.write_sync(held("Other")),
    )
    _cycle(harness, "Bot", "activate")
    shown = harness.admin("GET", f"/v1/approvals/{stale}").json()
    note = "asked while agent `Bot` was suspended: it asks again"
    assert (shown["status"], shown["note"]) == ("denied", note)
    assert harness.admin("POST", f"/v1/approvals/{stale}/approve").status_code == 409
    assert harness.admin("GET", f"/v1/approvals/{other}").json()["status"] == "pending"
    events = harness.admin("GET", "/v1/audit?event_type=agent.activated").json()["events"]
    assert events[0]["data"]["approvals_denied"] == [stale]


def test_activating_an_active_agent_closes_nothing(harness: Harness, github: Any) -> None:
    """Activate on an agent that is active changes nothing: its allowed action runs."""
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    _cycle(harness, "Bot", "activate")
    done = _execute(harness, key, body["action_request_id"], body["decision_token"])
    assert done.status_code == 200, done.text


def test_a_stuck_execution_released_after_a_suspension_stays_closed(
    harness: Harness, github: Any
) -> None:
    """A crash left the action `executing` (its claim stored, its outcome never written);
    the agent was suspended and activated again, then an admin released it for a retry:
    released, it is not executed with a token, as it was decided before the suspension."""
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action = body["action_request_id"]
    aged = time.time() - stuck_after(harness.state.settings) - 60

    def crashed_after_its_claim(conn: Connection) -> None:
        conn.execute(
            update(action_requests)
            .where(action_requests.c.id == action)
            .values(execution_state="executing", updated_at=aged)
        )

    harness.state.db.write_sync(crashed_after_its_claim)
    _cycle(harness, "Bot", "suspend", "activate")
    resolved = harness.admin("POST", f"/v1/actions/{action}/resolve", json={"outcome": "retry"})
    assert resolved.status_code == 200, resolved.text
    _assert_closed(_execute(harness, key, action, body["decision_token"]))
    assert github.received("PUT") == []


ROUNDS = 8


def test_a_suspension_racing_an_execute_never_lets_it_run_after(
    harness: Harness, github: Any
) -> None:
    """An execute and a suspension (then an activation) at once, round after round: either
    the claim came first and the action ran once, or it is refused, and then no token runs
    it after the agent is active again."""
    for i in range(ROUNDS):
        name, number = f"bot{i}", 100 + i
        key = harness.create_agent(name)
        body = _allowed(harness, key, _merge(number))
        action = body["action_request_id"]
        ran, _ = _race(
            lambda: _execute(harness, key, action, body["decision_token"]),  # noqa: B023
            lambda: _cycle(harness, name, "suspend"),  # noqa: B023
        )
        _cycle(harness, name, "activate")
        sent = github.received("PUT", f"/repos/acme/api/pulls/{number}/merge")
        if ran.status_code == 200:
            assert len(sent) == 1
            assert _shown(harness, action) == ("executed", "executed")
        else:
            assert ran.status_code == 401, ran.text  # claimed after the suspension
            assert sent == []
        fresh = _waited(harness, key, action)["decision_token"] or body["decision_token"]
        late = _execute(harness, key, action, fresh)
        assert late.status_code == 409, late.text
        assert late.json()["error"] == ("token_used" if ran.status_code == 200 else "not_allowed")
        assert len(github.received("PUT", f"/repos/acme/api/pulls/{number}/merge")) == len(sent)


def test_an_approved_action_closed_by_the_suspension_is_still_denied(harness: Harness) -> None:
    """The approvals' closure is as it was: the action denied, its approval marked used."""
    key = harness.create_agent("Bot")
    rule = {"agent": "Bot", "connector": "github", "action_pattern": "github.pr.merge",
            "decision": "require_approval"}  # fmt: skip
    assert harness.admin("POST", "/v1/permissions", json=rule).status_code == 200
    body = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    harness.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
    token = _waited(harness, key, body["action_request_id"])["decision_token"]
    _cycle(harness, "Bot", "suspend", "activate")
    refused = _execute(harness, key, body["action_request_id"], token)
    assert (refused.status_code, refused.json()["error"]) == (409, "not_allowed")
    assert _shown(harness, body["action_request_id"]) == ("denied", None)
    used = harness.state.db.read_sync(
        lambda c: c.execute(
            select(approvals.c.used).where(approvals.c.id == body["approval"]["id"])
        ).scalar()
    )
    assert used is True
