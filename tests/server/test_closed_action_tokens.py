"""No path of the server hands a decision token for an action its agent's closure ended
(SQLite and PostgreSQL).

Since suspensions close by epoch (``agents.closed_epoch``; each SDK action records the epoch
it was decided under), ``POST /actions/{id}/execute`` refuses an action from an earlier
epoch (409 ``not_allowed``). But ``GET /actions/{id}/wait`` and the replay of
``POST /actions`` with the same ``Idempotency-Key`` still answered such an action
``"status": "allowed"`` with a fresh signed token: an agent that acts itself with its token
(Mode B) took it as leave to act, and the SDKs reported it allowed (``wait_for_approval``
returned ``Approved``). Both now answer ``"status": "denied"`` without a token, the reason
saying that the agent's suspension or removal closed the action and to request it again
with a new ``Idempotency-Key``; the stored action is not rewritten (``GET /actions/{id}``,
the agent's history, is unchanged).

An action is closed in every way a closure can reach one that was allowed and not run: a
rule allowed it before a suspension (heard by this replica, or written by another replica
this one has not heard from yet, the agent still authenticating here), or before a removal;
an approval allowed it after the suspension and activation, on a replica that decided it
under the epoch before them; an admin released its stuck execution for a retry after the
suspension. Each is asked both ways, also while the closure happens (a long-poll in
flight, waits and replays racing the suspension), and through the Python SDK.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, update

from agentfirewall.errors import ActionDenied
from agentfirewall_server.routes.agents import _set_status
from agentfirewall_server.routes.stuck import stuck_after
from agentfirewall_server.store.schema import action_requests
from tests.server.conftest import SPEC, Harness
from tests.server.test_agent_status_races import _race
from tests.server.test_exactly_once import _sdk
from tests.server.test_execute import _execute
from tests.server.test_suspend_closes_allowed import _cycle, _merge, github

__all__ = ["github"]  # (the fixture, used here)

CLOSED = "request the action again"
NEW_KEY = "new `Idempotency-Key`"
_numbers = itertools.count(9000)  # a pull request number per action, an agent name per case
_HOLD = {"connector": "github", "action_pattern": "github.pr.merge", "decision": "require_approval"}


def _hold_merges(agent: Agent) -> None:
    rule = {**_HOLD, "agent": agent.name}
    assert agent.h.admin("POST", "/v1/permissions", json=rule).status_code == 200


class Agent:
    """An agent of the harness, with what it asked for (spec by Idempotency-Key)."""

    def __init__(self, h: Harness, name: str) -> None:
        self.h, self.name = h, name
        self.key = h.create_agent(name, rate_limit_per_minute=100_000)
        self.specs: dict[str, dict[str, Any]] = {}

    def request(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A new action (under a new Idempotency-Key), as `POST /actions` answered."""
        idem = f"k-{next(_numbers)}"
        self.specs[idem] = spec
        answer = self.post(idem)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        body["idempotency_key"] = idem
        return body

    def post(self, idem: str) -> Any:
        return self.h.agent(self.key, "POST", "/v1/actions", json={"action_spec": self.specs[idem]},
                            headers={"Idempotency-Key": idem})  # fmt: skip

    def wait(self, action_id: str, timeout: float = 0) -> Any:
        return self.h.agent(self.key, "GET", f"/v1/actions/{action_id}/wait?timeout={timeout}")

    def change(self, status: str) -> None:
        """Suspend, activate or remove it as a replica this one has not heard from yet:
        stored, while this replica's snapshot (its authentication) still has it as it was."""
        record = self.h.state.snapshot.agent(self.name)
        self.h.state.db.write_sync(_set_status(record, status, "user:other-replica"))


def _assert_closed_answer(answer: Any, action_id: str) -> dict[str, Any]:
    """A closed action's answer: denied, no token, saying why and what to do."""
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert (body["action_request_id"], body["status"]) == (action_id, "denied"), body
    assert body["decision_token"] is None
    decision = body["decision"]
    assert decision["outcome"] == "deny"
    assert "suspended or removed" in decision["reason"]
    assert CLOSED in decision["reason"]
    assert NEW_KEY in decision["reason"]
    return body


def _assert_closed_everywhere(agent: Agent, body: dict[str, Any]) -> None:
    """Neither `/wait` nor the replay hands the action (`body`: its first answer) a token;
    its record is as it was. (A replay answers the first answer: a held action's is
    `pending_approval` with no token, whatever came after; `/wait` says what did.)"""
    action_id = body["action_request_id"]
    before = agent.h.admin("GET", f"/v1/actions/{action_id}").json()
    _assert_closed_answer(agent.wait(action_id), action_id)
    replayed = agent.post(body["idempotency_key"])
    assert replayed.headers["Idempotent-Replayed"] == "true"
    if body["status"] == "pending_approval":
        shown = replayed.json()
        assert (shown["status"], shown["decision_token"]) == ("pending_approval", None), shown
    else:
        _assert_closed_answer(replayed, action_id)
    assert agent.h.admin("GET", f"/v1/actions/{action_id}").json() == before


# -- how an allowed action, not run, is closed ---------------------------------------------


def _allowed_then_suspended_and_active_again(agent: Agent) -> dict[str, Any]:
    body = agent.request(_merge(next(_numbers)))
    _cycle(agent.h, agent.name, "suspend", "activate")
    return body


def _allowed_then_suspended_unheard(agent: Agent) -> dict[str, Any]:
    body = agent.request(_merge(next(_numbers)))
    agent.change("suspended")
    return body


def _allowed_then_removed_unheard(agent: Agent) -> dict[str, Any]:
    body = agent.request(_merge(next(_numbers)))
    agent.change("revoked")
    return body


def _approved_after_a_suspension_this_replica_decided_before(agent: Agent) -> dict[str, Any]:
    """Suspended and activated again by another replica; this one, not having heard,
    decides a held action under the epoch before, and an approver approves it after."""
    h = agent.h
    assert (
        h.admin("POST", "/v1/permissions", json={**_HOLD, "agent": agent.name}).status_code == 200
    )
    agent.change("suspended")
    agent.change("active")
    body = agent.request(_merge(next(_numbers)))
    assert body["status"] == "pending_approval", body
    approved = h.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
    assert approved.status_code == 200, approved.text
    return body


def _released_for_a_retry_after_a_suspension(agent: Agent) -> dict[str, Any]:
    """A crash left the execution stuck; after a suspension an admin released it."""
    h = agent.h
    body = agent.request(_merge(next(_numbers)))
    aged = time.time() - stuck_after(h.state.settings) - 60

    def crashed_after_its_claim(conn: Connection) -> None:
        conn.execute(
            update(action_requests)
            .where(action_requests.c.id == body["action_request_id"])
            .values(execution_state="executing", updated_at=aged)
        )

    h.state.db.write_sync(crashed_after_its_claim)
    _cycle(h, agent.name, "suspend", "activate")
    path = f"/v1/actions/{body['action_request_id']}/resolve"
    assert h.admin("POST", path, json={"outcome": "retry"}).status_code == 200
    return body


CLOSURES: dict[str, Callable[[Agent], dict[str, Any]]] = {
    "suspended-and-active-again": _allowed_then_suspended_and_active_again,
    "suspended-unheard": _allowed_then_suspended_unheard,
    "removed-unheard": _allowed_then_removed_unheard,
    "approved-after-a-closure-unheard": _approved_after_a_suspension_this_replica_decided_before,
    "released-for-a-retry": _released_for_a_retry_after_a_suspension,
}


def test_a_closed_action_is_handed_no_token(harness: Harness, github: Any) -> None:
    """Every closure, each on an agent of its own (one server: they do not meet)."""
    for closure, close in CLOSURES.items():
        agent = Agent(harness, f"bot{next(_numbers)}")
        body = close(agent)
        try:
            _assert_closed_everywhere(agent, body)
        except AssertionError as exc:
            raise AssertionError(f"{closure}: {exc}") from exc
    assert github.received("PUT") == []


def test_an_action_decided_after_the_closure_is_handed_its_token(
    harness: Harness, github: Any
) -> None:
    """The closure ends the epoch before it, no more: what is decided after it is handed
    a fresh token by `/wait` and by the replay, and runs once."""
    agent = Agent(harness, "Bot")
    _cycle(harness, "Bot", "suspend", "activate")
    body = agent.request(_merge(next(_numbers)))
    waited, replayed = agent.wait(body["action_request_id"]), agent.post(body["idempotency_key"])
    for answer in (waited, replayed):
        assert answer.json()["status"] == "allowed", answer.text
        assert answer.json()["decision_token"]
    done = _execute(harness, agent.key, body["action_request_id"], waited.json()["decision_token"])
    assert done.status_code == 200, done.text


def test_a_long_poll_in_flight_when_the_closure_comes_hands_no_token(
    harness: Harness, github: Any
) -> None:
    """The agent waits for an approval; meanwhile another replica suspends and activates
    it (unheard here), and the approver approves: the wait wakes to a denial."""
    agent = Agent(harness, "Bot")
    _hold_merges(agent)
    agent.change("suspended")
    agent.change("active")
    body = agent.request(_merge(next(_numbers)))
    answers: list[Any] = []
    waiting = threading.Thread(
        target=lambda: answers.append(agent.wait(body["action_request_id"], timeout=30))
    )
    waiting.start()
    try:
        approved = harness.admin("POST", f"/v1/approvals/{body['approval']['id']}/approve")
        assert approved.status_code == 200, approved.text
    finally:
        waiting.join(60)
    _assert_closed_answer(answers[0], body["action_request_id"])


ROUNDS = 4
ACTIONS = 3


def test_waits_and_replays_racing_a_suspension_never_hand_a_token_after_it(
    harness: Harness, github: Any
) -> None:
    """Waits and replays of allowed actions at once with a suspension and activation,
    round after round: each answer is either allowed with a token (read before the
    closure, and refused at execution) or the closure's denial; none is a 5xx, and once the
    closure is done every answer is the denial."""
    for _ in range(ROUNDS):
        _race_round(Agent(harness, f"bot{next(_numbers)}"))
    assert github.received("PUT") == []


def _race_round(agent: Agent) -> None:
    h = agent.h
    bodies = [agent.request(_merge(next(_numbers))) for _ in range(ACTIONS)]
    calls: list[Callable[[], Any]] = [lambda: _cycle(h, agent.name, "suspend", "activate")]
    for body in bodies:
        calls.append(lambda b=body: agent.wait(b["action_request_id"]))
        calls.append(lambda b=body: agent.post(b["idempotency_key"]))
    raced = _race(*calls)[1:]
    for body, answer in zip([b for b in bodies for _ in range(2)], raced, strict=True):
        if answer.status_code == 401:  # authenticated after the suspension was heard
            continue
        shown = answer.json()
        if shown["decision_token"] is None:
            _assert_closed_answer(answer, body["action_request_id"])
            continue
        assert shown["status"] == "allowed", shown
        late = _execute(h, agent.key, body["action_request_id"], shown["decision_token"])
        assert (late.status_code, late.json()["error"]) == (409, "not_allowed")
    for body in bodies:
        _assert_closed_everywhere(agent, body)


def test_the_python_sdk_reports_a_closed_action_as_denied(harness: Harness) -> None:
    """`request_action` replayed and `wait_for_approval` say denied, and why: no token, a
    falsy outcome, `raise_for_denial` raises (not `Approved`, not "already executed")."""
    agent = Agent(harness, "Bot")
    resource = SPEC["resource"]
    assert isinstance(resource, dict)
    fields: dict[str, Any] = {key: resource[key] for key in ("provider", "account", "target")}
    with _sdk(harness, agent.key) as firewall:
        first = firewall.request_action("github.pr.merge", **fields, idempotency_key="merge-1",
                                        parameters={"pull_number": 1})  # fmt: skip
        assert first.allowed
        assert first.decision_token
        _cycle(harness, "Bot", "suspend", "activate")
        again = firewall.request_action("github.pr.merge", **fields, idempotency_key="merge-1",
                                        parameters={"pull_number": 1})  # fmt: skip
        waited = firewall.wait_for_approval(first.action_request_id, timeout_seconds=1)
    assert (again.action_request_id, again.replayed) == (first.action_request_id, True)
    assert (again.status, again.decision_token) == ("denied", None)
    with pytest.raises(ActionDenied, match=CLOSED):
        again.raise_for_denial()
    assert not waited
    assert waited.status == "denied"
    assert CLOSED in waited.reason
    assert "already executed" not in waited.reason


# -- a model: any sequence of decisions, closures, approvals, waits and replays -------------


def test_no_sequence_hands_a_token_to_an_action_of_an_ended_epoch(harness: Harness) -> None:
    """Hypothesis plays requests (allowed or held), approvals, suspensions and activations
    heard here or only stored (another replica's), removals, waits and replays against a
    model of the agent's epochs: a token is handed exactly when the action is allowed, not
    run, and decided under the agent's stored epoch, the agent active."""
    run_state_machine_as_test(
        lambda: _Epochs(harness),
        settings=settings(max_examples=12, stateful_step_count=12, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )  # fmt: skip


class _Epochs(RuleBasedStateMachine):
    """One agent of the harness and a model of it: its status and epoch as stored and as
    this replica has heard them, and each action's first answer, state and epoch."""

    actions = Bundle("actions")

    def __init__(self, h: Harness) -> None:
        super().__init__()
        self.h = h
        self.agent = Agent(h, f"bot{next(_numbers)}")
        _hold_merges(self.agent)
        self.stored, self.heard = "active", "active"  # the agent's status: stored, here
        self.epoch, self.heard_epoch = 0, 0  # its closed_epoch: stored, here
        #: by action id: its first answer, its state (pending, allowed, refused: an
        #: approval denied by a closure), the epoch it was decided under, approval, key
        self.model: dict[str, dict[str, Any]] = {}

    def _close(self, to: str, *, heard: bool) -> None:
        """`_set_status`'s effect: a suspension, a removal and the activation that ends a
        suspension move the epoch on and deny the pending approvals."""
        if to != "active" or self.stored == "suspended":
            self.epoch += 1
            for action in self.model.values():
                if action["state"] == "pending":
                    action["state"] = "refused"
        self.stored = to
        if heard:  # (a route's change reloads the snapshot: all that is stored is heard)
            self.heard, self.heard_epoch = to, self.epoch

    def _closed(self, action: dict[str, Any]) -> bool:
        return action["epoch"] != self.epoch or self.stored != "active"

    @precondition(lambda self: self.heard == "active")
    @rule(target=actions, held=st.booleans())
    def request(self, held: bool) -> str:
        spec = _merge(next(_numbers)) if held else {"type": "email.send", "parameters": {}}
        body = self.agent.request(spec)
        first = "pending_approval" if held else "allowed"
        assert (body["status"], bool(body["decision_token"])) == (first, not held), body
        self.model[body["action_request_id"]] = {
            "first": first, "state": "pending" if held else "allowed",
            "epoch": self.heard_epoch, "approval": (body["approval"] or {}).get("id"),
            "key": body["idempotency_key"],
        }  # fmt: skip
        return str(body["action_request_id"])

    @rule(action_id=actions)
    def approve(self, action_id: str) -> None:
        action = self.model[action_id]
        if action["approval"] is None:
            return
        answer = self.h.admin("POST", f"/v1/approvals/{action['approval']}/approve")
        if action["state"] == "pending" and self.stored == "active":
            assert answer.status_code == 200, answer.text
            action["state"] = "allowed"
        else:
            assert answer.status_code == 409, answer.text

    @precondition(lambda self: self.stored == "active")
    @rule(heard=st.booleans())
    def suspend(self, heard: bool) -> None:
        if heard:
            _cycle(self.h, self.agent.name, "suspend")
        else:
            self.agent.change("suspended")
        self._close("suspended", heard=heard)

    @precondition(lambda self: self.stored == "suspended")
    @rule(heard=st.booleans())
    def activate(self, heard: bool) -> None:
        if heard:
            _cycle(self.h, self.agent.name, "activate")
        else:
            self.agent.change("active")
        self._close("active", heard=heard)

    @precondition(lambda self: self.heard == "active" and self.stored == "active")
    @rule()
    def remove_unheard(self) -> None:
        self.agent.change("revoked")
        self._close("revoked", heard=False)

    @precondition(lambda self: self.heard == "active")
    @rule(action_id=actions)
    def wait(self, action_id: str) -> None:
        action = self.model[action_id]
        answer = self.agent.wait(action_id)
        shown = answer.json()
        if action["state"] == "pending" and self.stored != "active" and shown["status"] == "denied":
            action["state"] = "refused"  # the sweep denies an inactive agent's, any moment
        state = action["state"]
        if state != "allowed":
            expected = {"pending": "pending_approval", "refused": "denied"}[state]
            assert (shown["status"], shown["decision_token"]) == (expected, None), shown
        else:
            self._check_allowed(action, action_id, answer)

    @precondition(lambda self: self.heard == "active")
    @rule(action_id=actions)
    def replay(self, action_id: str) -> None:
        """The replay answers the first answer: a held action's stays `pending_approval`
        (without a token: `/wait` hands it), an allowed one's is allowed while it may run."""
        action = self.model[action_id]
        answer = self.agent.post(action["key"])
        assert answer.headers["Idempotent-Replayed"] == "true"
        if action["first"] == "pending_approval":
            shown = answer.json()
            assert (shown["status"], shown["decision_token"]) == ("pending_approval", None)
        else:
            self._check_allowed(action, action_id, answer)

    def _check_allowed(self, action: dict[str, Any], action_id: str, answer: Any) -> None:
        """A token exactly when the action is of the agent's stored epoch, agent active."""
        if self._closed(action):
            _assert_closed_answer(answer, action_id)
            return
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        assert (shown["status"], bool(shown["decision_token"])) == ("allowed", True), shown

    @invariant()
    def the_snapshot_is_the_models(self) -> None:
        """(The model's own check: this replica has heard what the model says it has.)"""
        record = self.h.state.snapshot.agent(self.agent.name)
        assert record is not None
        assert (record.status, record.closed_epoch) == (self.heard, self.heard_epoch)
