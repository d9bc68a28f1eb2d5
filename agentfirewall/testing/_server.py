"""The in-memory agent API behind :class:`agentfirewall.testing.FirewallTransport`.

It answers the agent endpoints of docs/api.md with the real policy engine and real
ES256 decision tokens, in the control plane's shapes (``agentfirewall_server.routes.actions``).
Not thread-safe by itself: the transport serialises calls.

An action is decided as the control plane decides it (``agentfirewall_server.decide``):
when a policy reads ``content.*``, the action's strings are scanned (the parameters its
connector declares base64-encoded decoded too, ``connectors.encoded_parameters``) and a
``redact`` rule that matched refuses; a build alias is decided under the name of the
action it runs as too (``connectors.performed_as``); both by the core's
``agentfirewall.policy.replay.evaluate_sdk``. Budgets then have their say as on the SDK
path (``_budgets.py``), and ``budget.<name>.*`` conditions read their usage.

``GET /actions/{id}`` shows the action as the server does: its canonical spec, or, when
content detectors fired on it, the spec with every detection replaced by its marker
(``agentfirewall.content.shown_action``: never the text); a held action's approval whole.
A held action expires as the server's do (its rule's ``approval.timeout_seconds``, else
`approval_timeout_seconds`), its reservation released.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import JsonValue

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import encoded_parameters, performed_as
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.content import content_attributes, shown_action
from agentfirewall.decisions import Decision, Outcome, normalize_level
from agentfirewall.errors import ActionSpecError, ConnectorError, TokenError
from agentfirewall.policy import Engine, EvaluationContext
from agentfirewall.policy.guard import action_findings, guard_plan
from agentfirewall.policy.replay import evaluate_sdk
from agentfirewall.testing._budgets import Budgets
from agentfirewall.tokens import (
    generate_signing_key,
    jwks_from_keys,
    sign_decision_token,
    verify_decision_token,
)

__all__ = ["ActionRecord", "MemoryServer"]

_ROUTE = re.compile(r"^/api/v1/actions(?:/(?P<id>[^/]+))?(?:/(?P<verb>wait|execute))?$")
_ROLES: tuple[str, ...] = ("owner", "admin", "member")
#: an approval's end -> the action's status (and what its budget reservation becomes)
_CLOSED = {"approved": ("allowed", "reserved"), "denied": ("denied", "released"),
           "expired": ("expired", "released")}  # fmt: skip
#: Connectors whose action's resource.target is the URL it is sent to.
_URL_TARGETED = ("webhook", "generic")


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
    execution_state: str | None = None
    #: the approval that held it, as ``GET /actions/{id}`` shows it
    approval: dict[str, Any] | None = None
    #: when its approval expires (unix seconds)
    expires: float | None = None
    #: the spec as shown when content detectors fired on it
    shown: dict[str, Any] | None = None
    #: its budgets' reservation
    reservation: str | None = None


def _answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _error(status: int, code: str, message: str, **extra: object) -> httpx.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _answer(status, {"error": code, "message": message, **extra}, headers)


def _rfc3339(stamp: float) -> str:
    """As the server writes times: milliseconds, UTC."""
    moment = datetime.fromtimestamp(stamp, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _parse(request: httpx.Request) -> ActionSpec | httpx.Response:
    """The action spec of a ``POST /actions`` body, or the server's error for it."""
    try:
        body = json.loads(request.content or b"{}")
    except ValueError as exc:
        return _error(400, "invalid_request", f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(422, "invalid_request", "request body must be a JSON object")
    if extra := sorted(set(body) - {"action_spec"}):
        return _error(422, "invalid_request", f"unknown field `{extra[0]}`", field=extra[0])
    if not isinstance(body.get("action_spec", {}), dict):
        return _error(422, "invalid_request", "invalid `action_spec`: Input should be an object",
                      field="action_spec")  # fmt: skip
    if "action_spec" not in body:
        return _error(422, "invalid_request", "missing field `action_spec`", field="action_spec")
    try:
        spec = parse_action_spec(body["action_spec"])
        targeted = spec.provider in _URL_TARGETED or spec.type.startswith("webhook.")
        if targeted and spec.resource.target is not None:
            HttpRequest.from_url("GET", spec.resource.target)
    except ActionSpecError as exc:
        field = f"action_spec.{exc.field}" if exc.field else "action_spec"
        return _error(422, "invalid_request", str(exc), field=field)
    except ConnectorError as exc:  # a target that is no http(s) URL: refused when requested
        return _error(422, "invalid_request", str(exc), field="action_spec.resource.target")
    return spec


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
        budgets: Budgets,
        approval_timeout_seconds: int,
    ) -> None:
        self.engine, self.agent, self._key = engine, agent, api_key
        self.guard = guard_plan(engine.policies)  # the content guardrails (decide.py's)
        self.level, self.sdk_default = normalize_level(enforcement_level), sdk_default
        self.executor, self.clock = executor, clock
        self.budgets, self.approval_timeout = budgets, approval_timeout_seconds
        self.signing_key = generate_signing_key()
        self.actions: dict[str, ActionRecord] = {}
        self._replies: dict[str, tuple[str, dict[str, Any]]] = {}
        self._used: set[str] = set()
        self._ids = itertools.count(1)

    # -- approvals ------------------------------------------------------------------

    def decide(self, action_request_id: str | None, status: str) -> None:
        """Approve (`status` ``allowed``) or deny a held action, as a person would."""
        self.expire()
        if action_request_id is None:
            pending = [a.id for a in self.actions.values() if a.status == "pending_approval"]
            if len(pending) != 1:
                raise ValueError(f"expected one pending action, found {len(pending)}")
            action_request_id = pending[0]
        record = self.actions[action_request_id]
        if record.status != "pending_approval":
            raise ValueError(f"action `{action_request_id}` is not pending: {record.status}")
        self._close(record, "approved" if status == "allowed" else "denied", by="test")

    def expire(self) -> None:
        """Close every held action whose approval has expired (the server's sweep)."""
        stamp = self.clock().timestamp()
        for record in self.actions.values():
            due = record.expires is not None and record.expires <= stamp
            if due and record.status == "pending_approval":
                self._close(record, "expired", by=None)

    def _close(self, record: ActionRecord, status: str, *, by: str | None) -> None:
        stamp = self.clock().timestamp()
        record.status, spent = _CLOSED[status]
        assert record.approval is not None
        record.approval.update(status=status, decided_at=_rfc3339(stamp), decided_by=by)
        self.budgets.finish(record.reservation, stamp, state=spent)

    def wait_seconds(self, request: httpx.Request) -> float:
        match = _ROUTE.match(request.url.path)
        if request.method != "GET" or not match or match["verb"] != "wait":
            return 0.0
        try:
            return min(60.0, max(0.0, float(request.url.params.get("timeout", "30"))))
        except ValueError:
            return 0.0

    def still_pending(self, request: httpx.Request) -> bool:
        self.expire()
        match = _ROUTE.match(request.url.path)
        record = self.actions.get(match["id"]) if match and match["id"] else None
        return record is not None and record.status == "pending_approval"

    # -- dispatch -------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/.well-known/jwks.json":
            return _answer(200, jwks_from_keys([self.signing_key]))
        supplied = request.headers.get("Authorization", "")
        if not supplied:
            message = "authentication required: send `Authorization: Bearer <key>`"
            return _error(401, "unauthorized", message)
        if not secrets.compare_digest(supplied.encode(), f"Bearer {self._key}".encode()):
            return _error(401, "unauthorized", "invalid API key: check AAF_API_KEY")
        match = _ROUTE.match(request.url.path)
        if match is None:
            return _error(404, "not_found", f"no route `{request.url.path}`")
        self.expire()
        ident, verb = match["id"], match["verb"]
        if request.method == "POST" and ident in (None, "dry-run") and verb is None:
            return self._post_action(request, dry_run=ident == "dry-run")
        record = self.actions.get(ident or "")
        if record is None:
            return _error(404, "not_found", f"no action request `{ident}`")
        if request.method == "GET" and verb is None:
            return _answer(200, self._state(record))
        if request.method == "GET" and verb == "wait":
            token = self._token(record) if record.status == "allowed" else None
            return _answer(200, {**self._state(record), "decision_token": token})
        if request.method == "POST" and verb == "execute":
            return self._execute(request, record)
        return _error(404, "not_found", f"no route `{request.method} {request.url.path}`")

    # -- handlers -------------------------------------------------------------------

    def _post_action(self, request: httpx.Request, *, dry_run: bool) -> httpx.Response:
        spec = _parse(request)
        if isinstance(spec, httpx.Response):
            return spec
        key = None if dry_run else request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 200:
            return _error(400, "invalid_request", "`Idempotency-Key` must be 1 to 200 characters",
                          field="Idempotency-Key")  # fmt: skip
        if key in self._replies:
            return self._replay(key, spec)
        now = self.clock()
        stamp = now.timestamp()
        encoded = encoded_parameters(spec.provider, spec.type)
        found = action_findings(self.guard, spec, encoded)
        ctx = EvaluationContext(
            agent=self.agent,
            mode="sdk",
            now=now,
            connector=spec.provider,
            enforcement_level=self.level,
            sdk_default=self.sdk_default,
            attributes={**self.budgets.attributes(stamp), **content_attributes(found)},
        )
        decision = evaluate_sdk(self.engine, spec, ctx, performed_as(spec), plan=self.guard,
                                findings=found)  # fmt: skip
        spend = self.budgets.check(self.agent, spec, decision)
        if spend is not None:
            decision = self.budgets.apply(spend, stamp, record=not dry_run)
        if dry_run:  # the steps, with the decision request_action gives (as dry-run's)
            steps = self.engine.explain(spec, ctx).steps
            if spend is not None:
                steps = [*steps, self.budgets.step(spend, decision)]
            explanation = [step.to_dict() for step in steps]
            return _answer(200, {"status": decision.status, "decision": decision.to_dict(),
                                 "explanation": explanation})  # fmt: skip
        record = self._record(spec, decision, stamp)
        record.shown = shown_action(spec.to_dict(), encoded) if found else None
        record.reservation = spend.reservation if spend is not None else None
        if record.status == "pending_approval":
            self._hold(record, stamp)
        reply = self._reply(record)
        if key is not None:
            self._replies[key] = (record.id, reply)
        return _answer(200, reply)

    def _replay(self, key: str, spec: ActionSpec) -> httpx.Response:
        """The first answer to `key` again, with a fresh token while it may still run."""
        ident, reply = self._replies[key]
        record = self.actions[ident]
        if record.spec.action_hash != spec.action_hash:
            return _error(409, "conflict", f"`Idempotency-Key` `{key}` was used for a different "
                          "action", field="Idempotency-Key")  # fmt: skip
        runnable = reply["status"] == record.status == "allowed" and not record.execution_state
        token = self._token(record) if runnable else None
        return _answer(200, {**reply, "decision_token": token}, {"Idempotent-Replayed": "true"})

    def _record(self, spec: ActionSpec, decision: Decision, stamp: float) -> ActionRecord:
        record = ActionRecord(
            id=f"act_{next(self._ids):06d}",
            spec=spec,
            decision=decision,
            status=decision.status,
            created_at=_rfc3339(stamp),
        )
        self.actions[record.id] = record
        return record

    def _hold(self, record: ActionRecord, stamp: float) -> None:
        """The approval of a held action: the rule's terms when it set them, else the
        defaults (``decide.approval_terms``)."""
        required = record.decision.approval
        timeout, roles = self.approval_timeout, _ROLES
        if required is not None and required.explicit:
            timeout, roles = required.timeout_seconds, tuple(required.approver_roles) or _ROLES
        record.approval_id = record.id.replace("act_", "apv_")
        record.expires = stamp + timeout
        record.approval = {
            "id": record.approval_id,
            "status": "pending",
            "agent": self.agent,
            "connector": record.spec.provider,
            "action_request_id": record.id,
            "source": "sdk",
            "action_spec": record.shown or record.spec.to_dict(),
            "action_hash": record.spec.action_hash,
            "risk_score": record.decision.risk_score,
            "reason": record.decision.reason,
            "request": None,
            "required_approver_roles": list(roles),
            "created_at": record.created_at,
            "expires_at": _rfc3339(record.expires),
            "decided_at": None,
            "decided_by": None,
            "note": None,
            "used": False,
        }

    def _token(self, record: ActionRecord) -> str:
        return sign_decision_token(
            self.signing_key,
            agent=self.agent,
            action_request_id=record.id,
            action_hash=record.spec.action_hash,
            now=int(self.clock().timestamp()),
        )

    def _reply(self, record: ActionRecord) -> dict[str, Any]:
        approval = record.approval
        held = None
        if approval is not None:
            held = {k: approval[k] for k in ("id", "expires_at", "required_approver_roles")}
        return {
            "action_request_id": record.id,
            "status": record.status,
            "decision": record.decision.to_dict(),
            "decision_token": self._token(record) if record.status == "allowed" else None,
            "approval": held,
        }

    def _state(self, record: ActionRecord) -> dict[str, Any]:
        """``GET /actions/{id}``: the action as the server shows it (``action_json``)."""
        return {
            "action_request_id": record.id,
            "status": record.status,
            "decision": record.decision.to_dict(),
            "action_spec": record.shown or json.loads(record.spec.canonical()),
            "agent": self.agent,
            "created_at": record.created_at,
            "approval": dict(record.approval) if record.approval else None,
            "executed": record.execution is not None,
            "execution": record.execution,
            "execution_state": record.execution_state,
        }

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
            return _error(401, "invalid_token", str(exc), reason=exc.code)
        except (ValueError, KeyError, TypeError):
            return _error(422, "invalid_request", "body needs a `decision_token`")
        if record.status == "executed" or claims.jti in self._used:
            return _error(409, "token_used", f"action `{record.id}` was already executed (an "
                          "action executes at most once): its result is in "
                          f"`GET /api/v1/actions/{record.id}`; to do it again, request the "
                          "action again")  # fmt: skip
        if record.status != "allowed":
            return _error(409, "not_allowed",
                          f"action `{record.id}` is {record.status}, not allowed: it cannot "
                          "be executed")  # fmt: skip
        if self.executor is None:
            return _error(
                422,
                "not_executable",
                f"no executor for `{record.spec.type}` in this FirewallTransport",
            )
        self._used.add(claims.jti)
        result = {"status_code": 200, "headers": {}, "body": self.executor(record.spec)}
        stamp = self.clock().timestamp()
        record.execution = {"status_code": 200, "executed_at": _rfc3339(stamp)}
        record.status = record.execution_state = "executed"
        self.budgets.finish(record.reservation, stamp, state="settled")
        return _answer(
            200, {"action_request_id": record.id, "status": "executed", "result": result}
        )
