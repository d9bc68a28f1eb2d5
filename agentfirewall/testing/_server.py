"""The in-memory agent API behind :class:`agentfirewall.testing.FirewallTransport`.

It answers the agent endpoints of docs/api.md with the real policy engine and real
ES256 decision tokens. Not thread-safe by itself: the transport serialises calls.

An action is decided as the control plane decides it (``agentfirewall_server.decide``):
when a policy reads ``content.*``, the action's strings are scanned (the parameters its
connector declares base64-encoded decoded too, ``connectors.encoded_parameters``) and a
``redact`` rule that matched refuses; a build alias is decided under the name of the
action it runs as too (``connectors.performed_as``); both by the core's
``agentfirewall.policy.replay.evaluate_sdk``. Budgets are the server's: ``budget.*``
conditions read nothing here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import JsonValue

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import encoded_parameters, performed_as
from agentfirewall.content import content_attributes
from agentfirewall.decisions import Decision, Outcome, normalize_level
from agentfirewall.errors import ActionSpecError, TokenError
from agentfirewall.policy import Engine, EvaluationContext
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk
from agentfirewall.tokens import (
    generate_signing_key,
    jwks_from_keys,
    sign_decision_token,
    verify_decision_token,
)

__all__ = ["ActionRecord", "MemoryServer"]

_ROUTE = re.compile(r"^/api/v1/actions(?:/(?P<id>[^/]+))?(?:/(?P<verb>wait|execute))?$")


@dataclass(slots=True)
class ActionRecord:
    """One action request as the in-memory server holds it."""

    id: str
    spec: ActionSpec
    decision: Decision
    status: str
    created_at: str
    approval_id: str | None = None
    execution: dict[str, Any] | None = None


def _answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _error(status: int, code: str, message: str) -> httpx.Response:
    return _answer(status, {"error": code, "message": message})


class MemoryServer:
    """State and handlers; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        agent: str,
        api_key: str,
        enforcement_level: str,
        sdk_default: Outcome,
        executor: Callable[[ActionSpec], JsonValue] | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine, self.agent, self._key = engine, agent, api_key
        self.guard = guard_plan(engine.policies)  # the content guardrails (decide.py's)
        self.level, self.sdk_default = normalize_level(enforcement_level), sdk_default
        self.executor, self.clock = executor, clock
        self.signing_key = generate_signing_key()
        self.actions: dict[str, ActionRecord] = {}
        self._replies: dict[str, dict[str, Any]] = {}
        self._used: set[str] = set()
        self._ids = itertools.count(1)

    # -- approvals ------------------------------------------------------------------

    def decide(self, action_request_id: str | None, status: str) -> None:
        if action_request_id is None:
            pending = [a.id for a in self.actions.values() if a.status == "pending_approval"]
            if len(pending) != 1:
                raise ValueError(f"expected one pending action, found {len(pending)}")
            action_request_id = pending[0]
        record = self.actions[action_request_id]
        if record.status != "pending_approval":
            raise ValueError(f"action `{action_request_id}` is not pending: {record.status}")
        record.status = status

    def wait_seconds(self, request: httpx.Request) -> float:
        match = _ROUTE.match(request.url.path)
        if request.method != "GET" or not match or match["verb"] != "wait":
            return 0.0
        try:
            return min(60.0, max(0.0, float(request.url.params.get("timeout", "30"))))
        except ValueError:
            return 0.0

    def still_pending(self, request: httpx.Request) -> bool:
        match = _ROUTE.match(request.url.path)
        record = self.actions.get(match["id"]) if match and match["id"] else None
        return record is not None and record.status == "pending_approval"

    # -- dispatch -------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/.well-known/jwks.json":
            return _answer(200, jwks_from_keys([self.signing_key]))
        supplied = request.headers.get("Authorization", "")
        if not secrets.compare_digest(supplied.encode(), f"Bearer {self._key}".encode()):
            return _error(401, "unauthorized", "invalid or missing API key")
        match = _ROUTE.match(request.url.path)
        if match is None:
            return _error(404, "not_found", f"no route `{request.url.path}`")
        ident, verb = match["id"], match["verb"]
        if request.method == "POST" and ident in (None, "dry-run") and verb is None:
            return self._post_action(request, dry_run=ident == "dry-run")
        record = self.actions.get(ident or "")
        if record is None:
            return _error(404, "not_found", f"no action `{ident}`")
        if request.method == "GET" and verb is None:
            return _answer(200, self._state(record))
        if request.method == "GET" and verb == "wait":
            return _answer(200, self._state(record, with_token=True))
        if request.method == "POST" and verb == "execute":
            return self._execute(request, record)
        return _error(404, "not_found", f"no route `{request.method} {request.url.path}`")

    # -- handlers -------------------------------------------------------------------

    def _post_action(self, request: httpx.Request, *, dry_run: bool) -> httpx.Response:
        key = request.headers.get("Idempotency-Key")
        if key and key in self._replies and not dry_run:
            return _answer(200, self._replies[key], {"Idempotent-Replayed": "true"})
        try:
            spec = parse_action_spec(json.loads(request.content or b"{}").get("action_spec"))
        except (ActionSpecError, ValueError, AttributeError) as exc:
            return _error(422, "invalid_request", str(exc))
        found = action_findings(self.guard, spec, encoded_parameters(spec.provider, spec.type))
        ctx = EvaluationContext(
            agent=self.agent,
            mode="sdk",
            now=self.clock(),
            connector=spec.provider,
            enforcement_level=self.level,
            sdk_default=self.sdk_default,
            attributes=content_attributes(found),
        )
        decision = evaluate_sdk(self.engine, spec, ctx, performed_as(spec), plan=self.guard,
                                findings=found)  # fmt: skip
        if dry_run:  # the steps, with the decision request_action gives (as dry-run's)
            explanation = dataclasses.replace(self.engine.explain(spec, ctx), decision=decision)
            return _answer(200, {"status": decision.status, **explanation.to_dict()})
        record = self._record(spec, decision)
        reply = self._reply(record)
        if key:
            self._replies[key] = reply
        return _answer(200, reply)

    def _record(self, spec: ActionSpec, decision: Decision) -> ActionRecord:
        number = next(self._ids)
        record = ActionRecord(
            id=f"act_{number:06d}",
            spec=spec,
            decision=decision,
            status=decision.status,
            created_at=self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if record.status == "pending_approval":
            record.approval_id = f"apv_{number:06d}"
        self.actions[record.id] = record
        return record

    def _token(self, record: ActionRecord) -> str:
        return sign_decision_token(
            self.signing_key,
            agent=self.agent,
            action_request_id=record.id,
            action_hash=record.spec.action_hash,
            now=int(self.clock().timestamp()),
        )

    def _approval(self, record: ActionRecord) -> dict[str, Any] | None:
        if record.approval_id is None:
            return None
        requirement = record.decision.approval
        return {
            "id": record.approval_id,
            "expires_at": None,
            "required_approver_roles": list(requirement.approver_roles)
            if requirement
            else ["owner", "admin", "member"],
        }

    def _reply(self, record: ActionRecord) -> dict[str, Any]:
        return {
            "action_request_id": record.id,
            "status": record.status,
            "decision": record.decision.to_dict(),
            "decision_token": self._token(record) if record.status == "allowed" else None,
            "approval": self._approval(record),
        }

    def _state(self, record: ActionRecord, *, with_token: bool = False) -> dict[str, Any]:
        state: dict[str, Any] = {
            "action_request_id": record.id,
            "status": record.status,
            "decision": record.decision.to_dict(),
            "action_spec": record.spec.to_dict(),
            "agent": self.agent,
            "created_at": record.created_at,
            "approval": self._approval(record),
            "executed": record.execution is not None,
            "execution": record.execution,
        }
        if with_token and record.status == "allowed":
            state["decision_token"] = self._token(record)
        return state

    def _execute(self, request: httpx.Request, record: ActionRecord) -> httpx.Response:
        try:
            token = str(json.loads(request.content or b"{}")["decision_token"])
            claims = verify_decision_token(
                token,
                self.signing_key.public_key,
                now=int(self.clock().timestamp()),
                action_request_id=record.id,
                action_hash=record.spec.action_hash,
                agent=self.agent,
            )
        except TokenError as exc:
            return _error(401, "invalid_token", str(exc))
        except (ValueError, KeyError, TypeError):
            return _error(422, "invalid_request", "body needs a `decision_token`")
        if claims.jti in self._used:
            return _error(409, "token_used", "decision token already used")
        if record.status != "allowed":
            return _error(409, "not_allowed", f"action `{record.id}` is {record.status}")
        if self.executor is None:
            return _error(
                422,
                "not_executable",
                f"no executor for `{record.spec.type}` in this FirewallTransport",
            )
        self._used.add(claims.jti)
        result = {"status_code": 200, "headers": {}, "body": self.executor(record.spec)}
        record.execution, record.status = result, "executed"
        return _answer(
            200, {"action_request_id": record.id, "status": "executed", "result": result}
        )
