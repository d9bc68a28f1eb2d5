"""An agent's life in any order, against a model of what may run (SQLite and PostgreSQL).

Actions requested, the agent suspended and activated (again and again), actions executed
(Mode A) with the token each was given: an action runs once at most, and only when it was
decided after the agent's last suspension; a suspended agent runs nothing. The model
counts the suspensions an action has seen (`epoch`); the upstream counts what ran.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness
from tests.server.test_execute import _execute, _github

_numbers = itertools.count(1000)  # a pull request number per action: what ran is counted


def _machine(h: Harness, github: Any) -> type[RuleBasedStateMachine]:
    class Lifecycle(RuleBasedStateMachine):
        decided = Bundle("decided")

        def __init__(self) -> None:
            super().__init__()
            self.name = f"bot{next(_numbers)}"
            self.key = h.create_agent(self.name)
            self.active, self.epoch = True, 0
            self.executed: set[str] = set()
            self.paths: list[str] = []

        @rule(target=decided)
        def request(self) -> tuple[str, str, int] | None:
            number = next(_numbers)
            spec = {**SPEC, "parameters": {"pull_number": number}}
            answer = h.agent(self.key, "POST", "/v1/actions", json={"action_spec": spec})
            if not self.active:
                assert answer.status_code == 401, answer.text
                return None
            body = answer.json()
            assert body["status"] == "allowed", body
            self.paths.append(f"/repos/acme/api/pulls/{number}/merge")
            return body["action_request_id"], body["decision_token"], self.epoch

        @rule()
        def suspend(self) -> None:
            assert h.admin("POST", f"/v1/agents/{self.name}/suspend").status_code == 200
            if self.active:
                self.active, self.epoch = False, self.epoch + 1

        @rule()
        def activate(self) -> None:
            assert h.admin("POST", f"/v1/agents/{self.name}/activate").status_code == 200
            if not self.active:
                self.active, self.epoch = True, self.epoch + 1

        @rule(action=decided)
        def execute(self, action: tuple[str, str, int] | None) -> None:
            if action is None:  # (requested while suspended: refused)
                return
            action_id, token, epoch = action
            answer = _execute(h, self.key, action_id, token)
            if not self.active:
                assert answer.status_code == 401, answer.text
            elif action_id in self.executed:
                assert (answer.status_code, answer.json().get("error")) == (409, "token_used")
            elif epoch != self.epoch:  # decided before a suspension: closed
                assert (answer.status_code, answer.json().get("error")) == (409, "not_allowed")
            else:
                assert answer.status_code == 200, answer.text
                self.executed.add(action_id)

        @invariant()
        def ran_what_the_model_ran(self) -> None:
            sent = sum(len(github.received("PUT", path)) for path in self.paths)
            assert sent == len(self.executed)

    return Lifecycle


def test_an_action_runs_only_when_decided_after_the_last_suspension(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    github = fakes["github"]
    github.clear()
    _github(harness, fakes)
    run_state_machine_as_test(
        _machine(harness, github),
        settings=settings(
            max_examples=30,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    github.clear()
