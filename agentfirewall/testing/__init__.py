"""Helpers for testing your own agent code against TameFlare, without a server.

* :func:`make_decision` and :func:`make_action_result` build the objects the SDK returns,
  for unit tests of code that branches on them.
* :class:`FirewallTransport` is an in-memory TameFlare agent API: an httpx transport that
  speaks the real wire format (docs/api.md) and decides with the real policy engine, your
  policies and access rules, as the control plane does (content guardrails, a ``redact``
  rule refusing, build aliases: ``_server.py``; budgets: ``_budgets.py``), signs real
  decision tokens, holds actions for approval until your test calls
  :meth:`~FirewallTransport.approve` or :meth:`~FirewallTransport.deny`, and executes
  allowed actions with an executor you supply (Mode A)::

      from agentfirewall.testing import FirewallTransport

      firewall = FirewallTransport(policies=[open("policies/payments.yaml").read()])
      with firewall.client() as tf:              # an AgentFirewall
          result = tf.request_action(action_type="payment.transfer.initiate", ...)
          assert result.status == "pending_approval"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from pydantic import JsonValue

from agentfirewall.actions import ActionSpec
from agentfirewall.client import ActionResult, AgentFirewall, ApprovalInfo, AsyncAgentFirewall
from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.decisions import Decision, Outcome, Status
from agentfirewall.policy import AccessRule, Engine, KillSwitch, Policy, load_policy
from agentfirewall.testing._budgets import Budgets
from agentfirewall.testing._server import ActionRecord, MemoryServer

__all__ = [
    "TEST_API_KEY",
    "TEST_BASE_URL",
    "ActionRecord",
    "FirewallTransport",
    "make_action_result",
    "make_decision",
]

TEST_API_KEY = "aaf_test_" + "0" * 32
TEST_BASE_URL = "http://tameflare.test/api"
_OUTCOME_FOR: dict[str, Outcome] = {
    "allowed": "allow",
    "denied": "deny",
    "pending_approval": "require_approval",
}


def make_decision(
    outcome: Outcome = "allow",
    reason: str | None = None,
    *,
    risk_score: float = 0.0,
    matched_policies: Iterable[str] = (),
    matched_rules: Iterable[str] = (),
) -> Decision:
    """A Decision as the server would send it (reason defaults to the seed's wording)."""
    default = {"allow": "No deny rules matched", "deny": "denied by policy"}
    return Decision(
        outcome=outcome,
        reason=reason or default.get(outcome, "requires approval"),
        risk_score=risk_score,
        matched_policies=tuple(matched_policies),
        matched_rules=tuple(matched_rules),
    )


def make_action_result(
    status: Status = "allowed",
    reason: str | None = None,
    *,
    action_request_id: str = "act_test",
    decision_token: str | None = None,
    risk_score: float = 0.0,
    matched_policies: Iterable[str] = (),
) -> ActionResult:
    """An ActionResult like ``request_action`` returns; allowed ones carry a token."""
    decision = make_decision(
        _OUTCOME_FOR[status], reason, risk_score=risk_score, matched_policies=matched_policies
    )
    token = decision_token or ("test-token" if status == "allowed" else None)
    approval = ApprovalInfo(id="apv_test") if status == "pending_approval" else None
    return ActionResult(action_request_id, status, decision, token, approval)


def _policy(item: Policy | str | Mapping[str, Any]) -> Policy:
    return item if isinstance(item, Policy) else load_policy(item)


class FirewallTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An in-memory TameFlare agent API for ``AgentFirewall(transport=...)``.

    `policies` are Policy objects, YAML/JSON texts or mappings; `access_rules` and
    `kill_switches` are the core's. `budgets` maps a budget's name to its definition, the
    body ``PUT /api/v1/budgets/{name}`` takes (``{"connector": "stripe", "measure": "sum",
    "limit": 100000, ...}``: docs/budgets.md), validated as the server validates it; their
    usage starts at nothing. A held action expires after its rule's
    ``approval.timeout_seconds``, else `approval_timeout_seconds` (300, the server's
    default; 0 expires it at once).
    `executor` performs allowed actions on ``execute`` and returns the upstream's JSON
    answer; without one, ``execute`` answers 422 ``not_executable`` as a server with no
    connector for the action would.
    A request is read as the control plane reads it (routes, query parameters, strict
    bodies): one the server refuses is refused here with the server's status and error.
    """

    def __init__(
        self,
        *,
        policies: Iterable[Policy | str | Mapping[str, Any]] = (),
        access_rules: Iterable[AccessRule] = (),
        kill_switches: Iterable[KillSwitch] = (),
        budgets: Mapping[str, Mapping[str, Any]] | None = None,
        agent: str = "test-agent",
        api_key: str = TEST_API_KEY,
        enforcement_level: str = "full_enforce",
        sdk_default: Outcome = "allow",
        executor: Callable[[ActionSpec], JsonValue] | None = None,
        approval_timeout_seconds: int = 300,
    ) -> None:
        engine = Engine(
            access_rules=alias_rules(access_rules),  # as the control plane compiles them
            policies=tuple(_policy(p) for p in policies),
            kill_switches=tuple(kill_switches),
        )
        self.api_key = api_key
        self._changed = threading.Condition()
        self._server = MemoryServer(
            engine,
            agent=agent,
            api_key=api_key,
            enforcement_level=enforcement_level,
            sdk_default=sdk_default,
            executor=executor,
            clock=lambda: datetime.now(UTC),
            budgets=Budgets(budgets or {}),
            approval_timeout_seconds=approval_timeout_seconds,
        )

    # -- for tests ----------------------------------------------------------------

    def client(self, **kwargs: Any) -> AgentFirewall:
        """An AgentFirewall wired to this transport."""
        return AgentFirewall(api_key=self.api_key, base_url=TEST_BASE_URL, transport=self, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncAgentFirewall:
        """An AsyncAgentFirewall wired to this transport."""
        return AsyncAgentFirewall(
            api_key=self.api_key, base_url=TEST_BASE_URL, transport=self, **kwargs
        )

    @property
    def actions(self) -> list[ActionRecord]:
        """Every action requested so far, oldest first."""
        return list(self._server.actions.values())

    @property
    def pending(self) -> list[str]:
        """Ids of the actions waiting for a human."""
        with self._changed:
            self._server.expire()
        return [a.id for a in self.actions if a.status == "pending_approval"]

    def approve(self, action_request_id: str | None = None) -> None:
        """Approve a held action (the only one pending when no id is given)."""
        self._decide(action_request_id, "allowed")

    def deny(self, action_request_id: str | None = None) -> None:
        """Deny a held action (the only one pending when no id is given)."""
        self._decide(action_request_id, "denied")

    def _decide(self, action_request_id: str | None, status: str) -> None:
        with self._changed:
            self._server.decide(action_request_id, status)
            self._changed.notify_all()

    # -- transport ----------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self._hold(request)
        with self._changed:
            return self._server.handle(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self._server.wait_seconds(request):
            await anyio.to_thread.run_sync(self._hold, request)
        with self._changed:
            return self._server.handle(request)

    def _hold(self, request: httpx.Request) -> None:
        """Block a long-poll until its action is decided or its timeout passes."""
        wait = self._server.wait_seconds(request)
        deadline = time.monotonic() + wait
        with self._changed:
            while self._server.still_pending(request) and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
