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

A request is read as the control plane reads it, so a test cannot pass here with one the
server refuses: its routes (``ROUTES``: 405 for another method on a known path, 403 for
the admin routes among them, Starlette's trailing-slash redirect), a query parameter a
route does not read (``web.check_query``) or a wait timeout that is no number
(``web.query_number``), and bodies read strictly (``web.parse_model``: an empty or
malformed body, an unknown field, a value of the wrong JSON type). The checks come in the
server's order; tests/server/test_testing_parity.py holds the two to the same answers.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import encoded_parameters, performed_as, provider_problem
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.content import content_attributes, shown_action
from agentfirewall.decisions import Decision, Outcome, normalize_level
from agentfirewall.errors import ActionSpecError, ConnectorError, TokenError
from agentfirewall.jsonlimits import json_problem, printable
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

__all__ = ["ROUTES", "ActionRecord", "MemoryServer"]

_ROLES: tuple[str, ...] = ("owner", "admin", "member")
#: an approval's end -> the action's status (and what its budget reservation becomes)
_CLOSED = {"approved": ("allowed", "reserved"), "denied": ("denied", "released"),
           "expired": ("expired", "released")}  # fmt: skip
#: Connectors whose action's resource.target is the URL it is sent to.
_URL_TARGETED = ("webhook", "generic")
_MAX_WAIT = 60.0
_GET, _POST = frozenset({"GET", "HEAD"}), frozenset({"POST"})  # a GET route answers HEAD
#: The control plane's routes an agent key reaches, in its order (``routes/actions.py``,
#: and the JWKS of ``routes/system.py``): path, methods, the handler here.
ROUTES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("/api/v1/actions", _POST, "_request_action"),
    ("/api/v1/actions/dry-run", _POST, "_dry_run"),
    ("/api/v1/actions/stuck", _GET, "_stuck"),
    ("/api/v1/actions/{id}", _GET, "_get"),
    ("/api/v1/actions/{id}/wait", _GET, "_wait"),
    ("/api/v1/actions/{id}/execute", _POST, "_execute"),
    ("/api/v1/actions/{id}/resolve", _POST, "_resolve"),
    ("/.well-known/jwks.json", _GET, "_jwks"),
)
_COMPILED = [
    (re.compile("^" + re.escape(path).replace(r"\{id\}", "(?P<id>[^/]+)") + "$"), methods, name)
    for path, methods, name in ROUTES
]


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


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: object
) -> httpx.Response:
    """The server's error body (``web.error_response``): echoed input kept printable."""
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    shown = {k: printable(v, 4000) if isinstance(v, str) else v for k, v in extra.items()}
    body = {"error": code, "message": printable(message, 4000), **shown}
    return _answer(status, body, headers)


class _Refused(Exception):
    """An error answer, raised where the server raises ``web.ApiError`` (`extra` that is
    None is left out, as there)."""

    def __init__(self, status: int, message: str, code: str = "invalid_request", **extra: Any):
        super().__init__(message)
        kept = {k: v for k, v in extra.items() if v is not None}
        self.answer = _error(status, code, message, **kept)


def _rfc3339(stamp: float) -> str:
    """As the server writes times: milliseconds, UTC."""
    moment = datetime.fromtimestamp(stamp, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


# -- a request read as the control plane reads it (agentfirewall_server/web.py) -------------


def _route(request: httpx.Request) -> tuple[str, str | None] | httpx.Response:
    """The handler of the request and the id in its path, or the router's answer: 405 for
    another method on a known path, the same path with(out) a trailing slash (307), 404."""
    path, allowed = request.url.path, set[str]()
    for pattern, methods, name in _COMPILED:
        if (match := pattern.match(path)) is None:
            continue
        if request.method in methods:
            return name, match.groupdict().get("id")
        allowed |= methods
    if allowed:
        allow = {"Allow": ", ".join(sorted(allowed))}
        message = "method not allowed on this endpoint"
        return _error(405, "method_not_allowed", message, headers=allow)
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if path != "/" and any(pattern.match(other) for pattern, _, _ in _COMPILED):
        return httpx.Response(307, headers={"Location": str(request.url.copy_with(path=other))})
    message = "no such endpoint: see docs/api.md"
    if path.startswith("/v1/"):
        message += "; the API is under /api: a base URL ends in `/api` (AAF_BASE_URL)"
    return _error(404, "not_found", message)


def _check_url(request: httpx.Request) -> None:
    """``web.nul_in_url``: 400 for a path or query holding a NUL character."""
    if "\x00" in request.url.path:
        raise _Refused(400, "the path holds a NUL character (`%00`)")
    for name, value in request.url.params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise _Refused(400, f"`{name}` holds a NUL character (`%00`)", field=name)


def _check_query(request: httpx.Request, *known: str) -> None:
    """``web.check_query``: 400 naming a query parameter the route does not read."""
    for name in request.url.params:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean `{near[0]}`?)" if near else ""
            reads = f"it reads {', '.join(known)}" if known else "it reads none"
            message = f"unknown query parameter `{name[:100]}`{hint}: {reads}"
            raise _Refused(400, message, field=name[:100])


def _query_number(request: httpx.Request, name: str, default: float, high: float) -> float:
    """``web.query_number``: the parameter (its last value, as Starlette reads it) clamped
    to 0..`high`; 400 naming it when it is no number."""
    values = request.url.params.get_list(name)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise _Refused(400, f"`{name}` must be a number, not `{values[-1][:40]}`", field=name)
    return max(0.0, min(value, high))


class _Strict(BaseModel):
    """``web.Strict``: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ActionBody(_Strict):
    action_spec: dict[str, JsonValue]


class _ExecuteBody(_Strict):
    decision_token: str = Field(min_length=1, max_length=8192)


class _Envelope(BaseModel):
    """``routes/actions._Envelope``: the body parsed straight into an ActionSpec."""

    model_config = ConfigDict(extra="forbid")

    action_spec: ActionSpec


_M = TypeVar("_M", bound=_Strict)


def _body(raw: bytes, model: type[_M]) -> _M:
    """``web.parse_model`` for a model of flat fields: the body as JSON (400 when empty or
    malformed, a NaN 422), a JSON object, read strictly (422 naming the field)."""
    if not raw.strip():
        raise _Refused(400, "request body is empty: expected a JSON object")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _Refused(400, "request body is not valid JSON: nests too deeply") from None
    except ValueError as exc:  # (a UnicodeDecodeError too)
        raise _Refused(400, f"request body is not valid JSON: {printable(str(exc))}") from None
    if (found := json_problem(data, check_ints=False)) is not None:
        field, problem = found
        message = f"`{field}` {problem}" if field else f"request body {problem}"
        raise _Refused(422 if "finite" in problem else 400, message, field=field or None)
    if not isinstance(data, dict):
        raise _Refused(422, "request body must be a JSON object")
    try:
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _invalid(exc, model) from None
    except RecursionError:
        raise _Refused(400, "request body nests too deeply") from None
    for name, value in parsed:
        if isinstance(value, str) and "\x00" in value:
            raise _Refused(422, f"`{name}` holds a NUL character (`\\u0000`)", field=name)
    return parsed


def _invalid(exc: ValidationError, model: type[_Strict]) -> _Refused:
    """``web.validation_error`` for a model of flat fields: the first problem (an unknown
    field that is a misspelt missing one first), naming its field."""

    def meant(loc: tuple[int | str, ...]) -> str | None:
        near = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), 1, 0.7)
        return near[0] if near and len(loc) == 1 else None

    errors = exc.errors()
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    misspelt = (
        e for e in errors if e["type"] == "extra_forbidden" and (meant(e["loc"]),) in missing
    )
    first = next(misspelt, errors[0])
    loc = ".".join(str(step) for step in first["loc"])
    if first["type"] == "extra_forbidden":
        near = meant(first["loc"])
        message = f"unknown field `{loc}`" + (f": did you mean `{near}`?" if near else "")
    elif first["type"] == "missing":
        message = f"missing field `{loc}`"
    else:
        ctx_error = (first.get("ctx") or {}).get("error")
        detail = str(ctx_error) if ctx_error else first["msg"]
        message = f"invalid `{loc}`: {detail}" if loc else detail
    return _Refused(422, message, field=loc or None)


def _spec(raw: bytes) -> ActionSpec:
    """The action spec of a ``POST /actions`` body, read as ``routes/actions._spec`` reads
    it; a ``webhook.*`` action of another provider (``connectors.provider_problem``) and a
    target of a URL-targeted connector that is no http(s) URL refused (422)."""
    try:
        spec = _Envelope.model_validate_json(raw).action_spec
    except (ValidationError, ValueError, ActionSpecError):
        body = _body(raw, _ActionBody)  # names the problem as the server does
        try:
            spec = parse_action_spec(body.action_spec)
        except ActionSpecError as exc:
            field = f"action_spec.{exc.field}" if exc.field else "action_spec"
            raise _Refused(422, str(exc), field=field) from None
    if (problem := provider_problem(spec)) is not None:
        raise _Refused(422, problem, field="action_spec.resource.provider")
    if spec.provider in _URL_TARGETED and spec.resource.target is not None:
        try:
            HttpRequest.from_url("GET", spec.resource.target)
        except ConnectorError as exc:
            raise _Refused(422, str(exc), field="action_spec.resource.target") from None
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
        """How long `request` may wait for a decision: a wait's valid timeout, else 0."""
        try:
            _check_url(request)
            routed = _route(request)
            if isinstance(routed, httpx.Response) or routed[0] != "_wait":
                return 0.0
            return self._timeout(request)
        except _Refused:
            return 0.0

    def still_pending(self, request: httpx.Request) -> bool:
        self.expire()
        routed = _route(request)
        ident = None if isinstance(routed, httpx.Response) else routed[1]
        record = self.actions.get(ident or "")
        return record is not None and record.status == "pending_approval"

    # -- dispatch -------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The control plane's answer to `request` (to a HEAD, without its body)."""
        try:
            _check_url(request)
            routed = _route(request)
            if isinstance(routed, httpx.Response):
                answer = routed
            else:
                self.expire()
                name, ident = routed
                handler: Callable[[httpx.Request, str | None], httpx.Response]
                handler = getattr(self, name)
                answer = handler(request, ident)
        except _Refused as refused:
            answer = refused.answer
        if request.method == "HEAD":
            return httpx.Response(answer.status_code, headers=answer.headers)
        return answer

    def _agent(self, request: httpx.Request) -> None:
        """The caller holds the agent's key (``auth.require_agent``), else 401."""
        sent = request.headers.get_list("Authorization")
        if len(sent) > 1:
            raise _Refused(401, "send one `Authorization` header, not several", "unauthorized")
        scheme, _, secret = (sent[0] if sent else "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            message = "authentication required: send `Authorization: Bearer <key>`"
            raise _Refused(401, message, "unauthorized")
        if not secrets.compare_digest(secret.strip().encode(), self._key.encode()):
            message = "invalid API key: check AAF_API_KEY"
            if not secret.strip().startswith("aaf_"):
                message = ("invalid token: neither an admin or gateway token nor an agent's "
                           "API key (those start with `aaf_`: check AAF_API_KEY)")  # fmt: skip
            raise _Refused(401, message, "unauthorized")

    def _find(self, ident: str | None) -> ActionRecord:
        record = self.actions.get(ident or "")
        if record is None:
            raise _Refused(404, f"no action request `{ident}`", "not_found")
        return record

    def _timeout(self, request: httpx.Request) -> float:
        """The timeout of a wait, its caller and query checked (``wait_action``)."""
        self._agent(request)
        _check_query(request, "timeout")
        return _query_number(request, "timeout", 30.0, _MAX_WAIT)

    # -- handlers, each checking in its route's order -------------------------------

    def _jwks(self, _request: httpx.Request, _ident: None) -> httpx.Response:
        return _answer(200, jwks_from_keys([self.signing_key]))

    def _request_action(self, request: httpx.Request, _ident: None) -> httpx.Response:
        return self._post_action(request, dry_run=False)

    def _dry_run(self, request: httpx.Request, _ident: None) -> httpx.Response:
        return self._post_action(request, dry_run=True)

    def _stuck(self, request: httpx.Request, _ident: None) -> httpx.Response:
        _check_query(request)
        return self._admin(request, "viewer")

    def _resolve(self, request: httpx.Request, _ident: str) -> httpx.Response:
        return self._admin(request, "admin")

    def _admin(self, request: httpx.Request, role: str) -> httpx.Response:
        """An admin route (``auth.require_role``): 403 to the agent's key."""
        self._agent(request)
        return _error(403, "forbidden", "an agent key cannot call the admin API",
                      required_role=role, your_role="agent")  # fmt: skip

    def _get(self, request: httpx.Request, ident: str) -> httpx.Response:
        _check_query(request)
        self._agent(request)
        return _answer(200, self._state(self._find(ident)))

    def _wait(self, request: httpx.Request, ident: str) -> httpx.Response:
        self._timeout(request)  # (the transport waited before this answer)
        record = self._find(ident)
        token = self._token(record) if record.status == "allowed" else None
        return _answer(200, {**self._state(record), "decision_token": token})

    def _post_action(self, request: httpx.Request, *, dry_run: bool) -> httpx.Response:
        self._agent(request)
        spec = _spec(request.content)
        keys = [] if dry_run else request.headers.get_list("Idempotency-Key")
        key = keys[0] if keys else None  # the first, as the server reads a header
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

    def _execute(self, request: httpx.Request, ident: str) -> httpx.Response:
        self._agent(request)
        body = _body(request.content, _ExecuteBody)
        record = self._find(ident)
        try:
            claims = verify_decision_token(
                body.decision_token,
                self.signing_key.public_key,
                now=int(self.clock().timestamp()),
                action_request_id=record.id,
                action_hash=record.spec.action_hash,
                agent=self.agent,
            )
        except TokenError as exc:
            return _error(401, "invalid_token", str(exc), reason=exc.code)
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
