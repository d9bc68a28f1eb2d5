"""The gateway API (gateway token): config snapshot + long-poll, traffic, approvals, heartbeat.

The snapshot holds decrypted credentials: it is served only to the gateway token.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue
from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import get_connector
from agentfirewall.content import shown_target, shown_text
from agentfirewall.content.shown import HEADER_NAME, HEADER_VALUE, HEADERS_SHOWN, shown_headers
from agentfirewall.errors import ActionSpecError, ConnectorError
from agentfirewall.policy.models import MAX_APPROVAL_TIMEOUT_SECONDS
from agentfirewall_server.actionstore import shown_spec
from agentfirewall_server.approvals import (
    DEFAULT_ROLES,
    approval_json,
    approval_row,
    get_approval,
    get_approvals,
)
from agentfirewall_server.audit import append_events, prepare_event
from agentfirewall_server.auth import require_gateway, state_of
from agentfirewall_server.clock import now, parse_time
from agentfirewall_server.grants import use_grant
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.replaystore import input_text
from agentfirewall_server.routes.policies import off_loop
from agentfirewall_server.routes.trafficrows import masked_record
from agentfirewall_server.shadow import count as count_shadow
from agentfirewall_server.shadow import judge_traffic
from agentfirewall_server.snapshot import Snapshot, unreadable_json
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import agents, approvals, gateways, traffic
from agentfirewall_server.tracing import annotate
from agentfirewall_server.web import (
    ApiError,
    Strict,
    check_query,
    json_ok,
    no_body,
    query_number,
    read_model,
)

__all__ = ["build_config", "routes"]

_MAX_CONFIG_WAIT = 30.0
_MAX_APPROVAL_WAIT = 60.0
_MAX_RECORDS = 5000
_MAX_WAIT_IDS = 1000
#: Held approvals change only by a decision (approve, deny, expiry, kill switch).
_DECIDED = "approval.decided"


class TrafficRecord(Strict):
    request_id: str = Field(min_length=1, max_length=100)
    agent: str | None = Field(default=None, max_length=200)
    #: The id of the agent whose key made the request (the gateway's config names it); an
    #: older gateway sends none: the agent its name stands for is taken (``_agent_id``).
    agent_id: str | None = Field(default=None, min_length=1, max_length=40)
    connector: str | None = Field(default=None, max_length=80)
    action: str | None = Field(default=None, max_length=600)
    method: str | None = Field(default=None, max_length=16)
    host: str | None = Field(default=None, max_length=300)
    path: str | None = Field(default=None, max_length=8192)
    #: what the gateway decided (`killed`: refused or cut by the kill switch); any other
    #: word would be counted in `/status` as a decision of its own
    decision: Literal["allow", "deny", "require_approval", "killed"] | None = None
    would_outcome: Literal["would_deny", "would_hold"] | None = None
    status_code: int | None = Field(default=None, ge=0, le=999)
    latency_ms: float | None = Field(default=None, ge=0)
    #: The gateway's own time (until forwarded or answered, a hold excepted) and the time
    #: the request was held for an approval: observed in `/metrics`, not stored.
    overhead_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    held_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    bytes_in: int | None = Field(default=None, ge=0)
    bytes_out: int | None = Field(default=None, ge=0)
    reason: str | None = Field(default=None, max_length=2000)
    created_at: str | float | None = None
    #: The replayable decision input (``agentfirewall.policy.record``).
    input: dict[str, Any] | None = None


class TrafficBatch(Strict):
    records: list[TrafficRecord] = Field(max_length=_MAX_RECORDS)


class ApprovalIds(Strict):
    ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=_MAX_WAIT_IDS
    )


_SHA256 = r"^[0-9a-f]{64}$"
_HeaderName = Annotated[str, Field(min_length=1, max_length=HEADER_NAME)]
_HeaderValue = Annotated[str, Field(max_length=HEADER_VALUE)]


class RequestLine(Strict):
    """The held request as its approver sees it, and the digest its approval binds
    (``agentfirewall_proxy.pipeline.bind_request``): of the headers, only those the digest
    binds, a credential's value never. Stored and shown as :func:`shown_request` masks it."""

    method: str = Field(max_length=16)
    host: str = Field(max_length=300)
    path: str = Field(max_length=8192)
    query: str | None = Field(default=None, max_length=8192)
    content_type: str | None = Field(default=None, max_length=300)
    content_encoding: str | None = Field(default=None, max_length=100)
    body_size: int | None = Field(default=None, ge=0, le=2**53)
    body_sha256: str | None = Field(default=None, pattern=_SHA256)
    body_preview: str | None = Field(default=None, max_length=2048)
    headers: list[tuple[_HeaderName, _HeaderValue]] | None = Field(
        default=None, max_length=HEADERS_SHOWN
    )
    digest: str | None = Field(default=None, pattern=_SHA256)


class GatewayApproval(Strict):
    agent: str = Field(min_length=1, max_length=200)
    connector: str | None = Field(default=None, max_length=80)
    action_spec: dict[str, JsonValue]
    action_hash: str = Field(min_length=64, max_length=64)
    risk_score: float = Field(default=0.0, ge=0, le=100)
    reason: str = Field(default="", max_length=2000)
    request: RequestLine | None = None
    #: as long as a policy rule's `approval.timeout_seconds` may say
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_APPROVAL_TIMEOUT_SECONDS)
    approver_roles: list[Literal["owner", "admin", "member"]] | None = None
    #: Content detectors fired on the request: `action_spec` (the request's own, which
    #: `action_hash` must match) is stored and shown with every detection replaced by its
    #: marker (``actionstore.shown_spec``).
    redact: bool = False


_Port = Annotated[int, Field(ge=1, le=65535)]


class Heartbeat(Strict):
    gateway_id: str = Field(min_length=1, max_length=120)
    version: str | None = Field(default=None, max_length=100)
    listen: str | None = Field(default=None, max_length=300)
    agent_ports: dict[str, _Port] = Field(default_factory=dict)
    agent_port_range: tuple[_Port, _Port] | None = None
    #: RFC 3339 UTC, as every time of the API (`2026-11-25T09:00:00Z`)
    started_at: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$",
    )
    stats: dict[str, JsonValue] = Field(default_factory=dict)


def build_config(state: AppState) -> dict[str, Any]:
    snap = state.snapshot
    cached = getattr(state, "_config_cache", None)
    if cached is not None and cached[0] == snap.version:
        return dict(cached[1])
    connectors = []
    for c in snap.connectors:
        secret = snap.credentials.get(c["id"])
        if c["id"] in state.vault_problems:  # fails alone: the others are served
            continue
        connectors.append(
            {
                "id": c["id"],
                "type": c["type"],
                "name": c["name"],
                "domains": c["domains"],
                "base_url": c["base_url"],
                "auth_type": c["auth_type"],
                "auth_header": c["auth_header"],
                "credential": state.vault.decrypt(secret, owner=c["id"]) if secret else None,
            }
        )
    config = {
        "version": snap.version,
        "settings": {
            "approval_timeout_seconds": int(
                snap.settings.get("approval_timeout_seconds")
                or state.settings.approval_timeout_seconds
            ),
            "default_enforcement_level": snap.settings["default_enforcement_level"],
        },
        "agents": [
            {
                "id": a.id,
                "name": a.name,
                "status": a.status,
                "enforcement_level": a.enforcement_level,
                "sdk_default": a.sdk_default,
                "key_hashes": list(a.key_hashes),
                "key_levels": dict(a.key_levels),
                "key_expires": {
                    h: snap.key_expiry[h] for h in a.key_hashes if h in snap.key_expiry
                },
                "proxy_port": a.proxy_port,
            }
            for a in snap.agents_by_id.values()
        ],
        "connectors": connectors,
        "permissions": [
            {k: p[k] for k in ("id", "agent", "connector", "action_pattern", "decision")}
            for p in snap.permissions
        ],
        "policies": [
            {
                "id": p["id"],
                "name": p["name"],
                "document": snap.loaded_policies[p["id"]].to_document(),
            }
            for p in snap.policies
            if p["enabled"] and p["id"] in snap.loaded_policies
        ],
        "kill_switches": [
            *map(unreadable_json, snap.unreadable),
            *(
                {"scope": k["scope"], "target": k["target"] or None, "reason": k["reason"]}
                for k in snap.kill_switches
            ),
        ],
        # which requests a budget covers: the gateway reserves only those
        "budgets": [
            {
                "id": b.key,  # the gateway's slices hold only for this definition
                "name": b.name,
                "agents": list(b.definition.agents),
                "connector": b.definition.connector,
                "action": b.definition.action,
                "measure": b.definition.measure,
                "parameter": b.definition.parameter,
                "currency": b.definition.currency,
            }
            for b in snap.budgets.values()
        ],
    }
    state._config_cache = (snap.version, config)  # type: ignore[attr-defined]
    return dict(config)


def _require_confirmed(state: AppState) -> None:
    """A 503 while the snapshot is unconfirmed against the store (``AppState.unconfirmed``):
    it may miss a change made on another replica, a kill switch above all. Neither it nor
    "unchanged" is served: the gateway fails over, or its --max-config-age clock runs."""
    age = state.unconfirmed()
    if age is not None:
        raise ApiError(
            503,
            f"this replica has not reached the database for {age:.0f} s: its configuration "
            "may miss changes made on another replica; ask another replica",
            code="store_unreachable",
        )


async def config(request: Request) -> Response:
    await require_gateway(request)
    check_query(request, "since", "wait")
    state = state_of(request)
    since = query_number(request, "since", None, 2**62)
    wait = query_number(request, "wait", 0.0, _MAX_CONFIG_WAIT) or 0.0
    deadline = time.monotonic() + wait
    with state.metrics.connection_open("gateway"):
        _require_confirmed(state)
        while since is not None and state.snapshot.version == int(since):
            remaining = deadline - time.monotonic()
            woken = remaining > 0 and await state.hub.wait(
                min(remaining, 1.0), request, event_type="config"
            )
            _require_confirmed(state)  # (checked at least once a second)
            if not woken:
                return Response(status_code=304)
    return json_ok(build_config(state))


def _created(value: str | float | None) -> float:
    if value is None:
        return now()
    try:
        return parse_time(str(value))
    except ValueError:
        return now()


#: The byte-count columns are INTEGER (32 bits on PostgreSQL): larger counts are stored
#: as this ceiling rather than losing the record.
_COUNT_CEILING = 2**31 - 1


def _saturate(count: int | None) -> int | None:
    return None if count is None else min(count, _COUNT_CEILING)


#: What a record carries that no traffic column stores.
_NOT_STORED = {"created_at", "input", "overhead_ms", "held_ms"}


def _observe(metrics: Metrics, record: TrafficRecord) -> None:
    """A proxied request's overhead, and its duration without its approval hold.

    Only records that carry ``overhead_ms`` (an older gateway's do not, and its
    ``latency_ms`` may hold a human's wait). A ``tf mcp wrap`` record (method ``MCP``) is
    made as its message is forwarded: its latency has no upstream part, no duration.
    """
    if record.overhead_ms is None:
        return
    metrics.proxy_overhead.observe(record.overhead_ms / 1000)
    if record.latency_ms is not None and record.method != "MCP":
        through = record.latency_ms - (record.held_ms or 0.0)
        metrics.duration.observe(max(through, 0.0) / 1000)


def _store_new(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, float]]:
    """Insert the rows not already stored; the (request id, time) of those inserted.

    A gateway resends a batch whose answer it did not get (a timeout, a fail-over, its own
    stop with the batch in flight): the copies it may already have delivered are skipped.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(traffic)
        .on_conflict_do_nothing(index_elements=[traffic.c.request_id, traffic.c.created_at])
        .returning(traffic.c.request_id, traffic.c.created_at)
    )
    return {(row.request_id, row.created_at) for row in conn.execute(statement, rows)}


def _agent_id(snapshot: Snapshot, record: TrafficRecord) -> str | None:
    """The record's agent id when that agent bears the record's name (one this replica does
    not know yet is checked in the store: :func:`_check_ids`); else, and for a record
    without one (an older gateway's, or `tf run --isolate`'s), the agent its name stands
    for as it arrives (None: no agent has it). A row never names one agent and shows under
    another."""
    if record.agent is None:
        return None
    sent = snapshot.agents_by_id.get(record.agent_id) if record.agent_id else None
    if sent is not None and sent.name == record.agent:
        return sent.id
    if record.agent_id is not None and sent is None:
        return record.agent_id  # (to be checked in the store, in the write)
    agent = snapshot.agents_by_name.get(record.agent)
    return agent.id if agent else None


def _check_ids(conn: Connection, snapshot: Snapshot, rows: list[dict[str, Any]]) -> None:
    """Rows whose agent id this replica's snapshot does not know (an agent registered on
    another replica a moment ago, or an id made up): kept when the store's agent of that
    id bears the row's name, else the agent the name stands for (:func:`_agent_id`)."""
    unknown = {r["agent_id"] for r in rows if r["agent_id"] not in snapshot.agents_by_id}
    unknown.discard(None)
    if not unknown:
        return
    found = conn.execute(select(agents.c.id, agents.c.name).where(agents.c.id.in_(unknown)))
    named = {row.id: row.name for row in found}
    for row in rows:
        ident = row["agent_id"]
        if ident in unknown and named.get(ident) != row["agent"]:
            agent = snapshot.agents_by_name.get(row["agent"])
            row["agent_id"] = agent.id if agent else None


def _stored(snapshot: Snapshot, record: TrafficRecord) -> dict[str, Any]:
    """The row `record` is stored as, with no credential in it (``masked_record``)."""
    row = masked_record(record.model_dump(exclude=_NOT_STORED - {"input"}))
    decision_input = input_text(row.pop("input"))
    return {
        **row,
        "agent_id": _agent_id(snapshot, record),
        "decision_input": decision_input,
        "bytes_in": _saturate(record.bytes_in),
        "bytes_out": _saturate(record.bytes_out),
        "created_at": _created(record.created_at),
    }


async def ingest_traffic(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, TrafficBatch)
    state = state_of(request)
    snapshot = state.snapshot  # agents by name; the shadow configuration, when installed
    # (masking reads every text: in a worker thread, as a viewer's answer is masked)
    rows = await off_loop(request, lambda: [_stored(snapshot, r) for r in body.records])
    verdicts = judge_traffic(snapshot.engine, snapshot.shadow, rows)

    def store(conn: Connection) -> set[tuple[str, float]]:
        _check_ids(conn, snapshot, rows)
        return _store_new(conn, rows)

    stored = await state.db.write(store) if rows else set()
    for record, row, verdict in zip(body.records, rows, verdicts, strict=True):
        key = (row["request_id"], row["created_at"])
        if key not in stored:
            continue  # a resent copy: counted and published when it was first stored
        stored.discard(key)
        if verdict is not None:
            count_shadow(state.metrics, verdict, "proxy")
        state.metrics.count_request(
            row["agent"] or "", row["connector"] or "", row["decision"] or "", row["action"] or ""
        )
        _observe(state.metrics, record)
        state.hub.publish(
            "traffic", {k: v for k, v in row.items() if k not in ("created_at", "decision_input")}
        )
    return json_ok({"accepted": len(rows)})


def _bound_digest(row: Any) -> str | None:
    request = json.loads(row.request) if row.request else None
    digest = request.get("digest") if isinstance(request, dict) else None
    return digest if isinstance(digest, str) else None


#: How long after it was approved an unused approval may still let its request through
#: (if it was pending less than this): a retry after a dropped connection, not weeks later.
REUSE_SECONDS = 300.0


def _still_usable(stamp: float) -> Any:
    """The approvals whose request may still pass: until they would have expired as
    pending, or for :data:`REUSE_SECONDS` after the approval, whichever is later."""
    return or_(approvals.c.expires_at > stamp, approvals.c.decided_at > stamp - REUSE_SECONDS)


def _reusable(conn: Connection, body: GatewayApproval, stamp: float) -> Any:
    """The approved, unused, still usable approval of exactly this request (same agent,
    action hash and request digest); a request without a digest never reuses one."""
    digest = body.request.digest if body.request else None
    if digest is None:
        return None
    rows = conn.execute(
        select(approvals)
        .where(
            approvals.c.agent == body.agent,
            approvals.c.action_hash == body.action_hash,
            approvals.c.status == "approved",
            approvals.c.used.is_(False),
            _still_usable(stamp),
        )
        .order_by(approvals.c.decided_at.desc())
        .limit(100)
    ).all()
    return next((r for r in rows if _bound_digest(r) == digest), None)


def without_approval(
    conn: Connection, body: GatewayApproval, spec: dict[str, Any], stamp: float
) -> tuple[dict[str, Any], bool] | None:
    """``(row, reused)`` when no new approval is needed, else None.

    An identical request approved and not yet used is reused (marked used); otherwise a
    grant covering the held request lets it through (``{"grant": ...}``: deny rules and the
    kill switch decided before it was held). The single and the batch route both ask this.
    """
    found = _reusable(conn, body, stamp)
    if found is not None:
        conn.execute(update(approvals).where(approvals.c.id == found.id).values(used=True))
        return {**dict(found._mapping), "used": True}, True
    roles = body.approver_roles or DEFAULT_ROLES
    host = body.request.host if body.request else None
    grant = use_grant(conn, agent=body.agent, connector=body.connector, spec=spec,
                      approver_roles=roles, host=host, actor="gateway", now=stamp)  # fmt: skip
    return None if grant is None else ({"grant": grant}, False)


def shown_request(line: RequestLine, connector: str | None = None) -> dict[str, Any]:
    """The held request as it is stored and shown: its path, query, headers and body preview
    masked (``agentfirewall.content.shown``) as the gateway masks them, for a gateway that sent
    them as they were (an older one); what a gateway masked stays as it is. `connector`: its
    type (the headers of one that binds every header, or of a type unknown here, are shown
    only when HTTP says they are plain)."""
    request = line.model_dump(exclude_none=True)
    request["path"], query = shown_target(line.path, line.query or "")
    if line.query is not None:
        request["query"] = query
    if line.body_preview is not None:
        request["body_preview"] = shown_text(line.body_preview)
    if line.headers is not None:
        request["headers"] = shown_headers(line.headers, declared=_declares_headers(connector))
    return request


def _declares_headers(connector: str | None) -> bool:
    """Whether connector type `connector` binds only the headers it declares (not every one,
    ``*``: an API it does not name)."""
    try:
        return "*" not in get_connector(connector or "").bound_headers
    except ConnectorError:
        return False


def new_approval_row(
    body: GatewayApproval, spec: dict[str, Any], timeout: int, stamp: float
) -> dict[str, Any]:
    """The pending approval row of a held request (not inserted): its spec and request as
    shown (the hash and the digest bind the request's own)."""
    return approval_row(
        agent=body.agent,
        connector=body.connector,
        action_request_id=None,
        source="proxy",
        spec=shown_spec(spec) if body.redact else spec,
        action_hash=body.action_hash,
        risk_score=body.risk_score,
        reason=body.reason,
        request=shown_request(body.request, body.connector) if body.request else None,
        roles=list(body.approver_roles or DEFAULT_ROLES),
        timeout_seconds=body.timeout_seconds or timeout,
        now=stamp,
    )


def created_event(body: GatewayApproval, spec: dict[str, Any], row: dict[str, Any]) -> Any:
    """The ``approval.created`` audit event of a new row, as :func:`prepare_event` builds it."""
    return prepare_event(
        "approval.created",
        actor="gateway",
        now=row["created_at"],
        agent=body.agent,
        subject=row["id"],
        data={"action_type": spec["type"], "connector": body.connector},
    )


def approval_timeout(state: AppState) -> int:
    return int(
        state.snapshot.settings.get("approval_timeout_seconds")
        or state.settings.approval_timeout_seconds
    )


def grant_answer(state: AppState, agent: str, grant: dict[str, Any]) -> dict[str, Any]:
    """A held request a grant let through: no approval, the grant's use is audited."""
    state.metrics.grant_uses.labels(agent).inc()
    return {"id": None, "status": "approved", "grant_id": grant["id"], "reused": False}


def _reuse_or_create(state: AppState, body: GatewayApproval, spec: dict[str, Any]) -> Any:
    timeout = approval_timeout(state)

    def job(conn: Connection) -> tuple[dict[str, Any], bool]:
        stamp = now()
        settled = without_approval(conn, body, spec, stamp)
        if settled is not None:
            return settled
        row = new_approval_row(body, spec, timeout, stamp)
        conn.execute(approvals.insert().values(**row))
        append_events(conn, [created_event(body, spec, row)])
        return row, False

    return job


async def create_gateway_approval(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, GatewayApproval)
    try:
        spec = parse_action_spec(body.action_spec)
    except ActionSpecError as exc:
        raise ApiError(422, str(exc), field=f"action_spec.{exc.field or ''}".rstrip(".")) from None
    if spec.action_hash != body.action_hash:
        raise ApiError(422, "`action_hash` does not match `action_spec`", field="action_hash")
    state = state_of(request)
    row, reused = await state.db.write(_reuse_or_create(state, body, spec.to_dict()))
    annotate(agent=body.agent, connector=body.connector, action=spec.type)
    if "grant" in row:
        annotate(grant_id=row["grant"]["id"])
        return json_ok(grant_answer(state, body.agent, row["grant"]))
    annotate(approval_id=row["id"])
    data = approval_json(row)
    if not reused:
        state.hub.publish("approval.created", data)
        state.metrics.approvals_pending.inc()
        await state.slack.on_created(row)
    return json_ok({**data, "reused": reused})


def _current(row: dict[str, Any]) -> dict[str, Any]:
    """The approval as the gateway must see it: a pending one past its expiry is expired."""
    data = approval_json(row)
    if data["status"] == "pending" and row["expires_at"] <= now():
        data["status"] = "expired"
    return data


async def wait_gateway_approval(request: Request) -> JSONResponse:
    await require_gateway(request)
    state = state_of(request)
    aid = request.path_params["id"]
    check_query(request, "timeout")
    wait = query_number(request, "timeout", 30.0, _MAX_APPROVAL_WAIT) or 0.0
    deadline = time.monotonic() + wait
    with state.metrics.connection_open("gateway"):
        while True:
            row = await state.db.read(lambda c: get_approval(c, aid))
            if row is None:
                raise ApiError(404, f"no approval `{aid}`")
            data = _current(row)
            remaining = deadline - time.monotonic()
            if data["status"] != "pending" or remaining <= 0:
                return json_ok(data)
            if not await state.hub.wait(min(remaining, 1.0), request, event_type=_DECIDED):
                return json_ok(data)


def _settled(ids: list[str], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for aid in ids:
        row = rows.get(aid)
        if row is None:
            found.append({"id": aid, "status": "not_found"})
        elif (data := _current(row))["status"] != "pending":
            found.append(data)
    return found


async def wait_gateway_approvals(request: Request) -> JSONResponse:
    """One long-poll for many held requests: answers once any of `ids` is no longer pending.

    The answer lists only those (`not_found` for an unknown id), or nothing at the timeout.
    """
    await require_gateway(request)
    state = state_of(request)
    ids = list(dict.fromkeys((await read_model(request, ApprovalIds)).ids))
    check_query(request, "timeout")
    wait = query_number(request, "timeout", 30.0, _MAX_APPROVAL_WAIT) or 0.0
    deadline = time.monotonic() + wait
    with state.metrics.connection_open("gateway"):
        while True:
            rows = await state.db.read(lambda c: get_approvals(c, ids))
            settled = _settled(ids, rows)
            remaining = deadline - time.monotonic()
            if settled or remaining <= 0:
                return json_ok({"approvals": settled})
            if not await state.hub.wait(min(remaining, 1.0), request, event_type=_DECIDED):
                return json_ok({"approvals": []})


async def consume(request: Request) -> JSONResponse:
    await require_gateway(request)
    await no_body(request)
    aid = request.path_params["id"]

    def job(conn: Connection) -> dict[str, Any]:
        row = get_approval(conn, aid)
        if row is None:
            raise ApiError(404, f"no approval `{aid}`")
        if row["status"] != "approved":
            raise ApiError(409, f"approval `{aid}` is {row['status']}, not approved")
        if row["used"]:
            raise ApiError(409, f"approval `{aid}` was already used")
        stamp = now()
        if row["expires_at"] <= stamp and row["decided_at"] <= stamp - REUSE_SECONDS:
            raise ApiError(409, f"approval `{aid}` was approved too long ago to be used")
        conn.execute(update(approvals).where(approvals.c.id == aid).values(used=True))
        return {**row, "used": True}

    return json_ok(approval_json(await state_of(request).db.write(job)))


async def heartbeat(request: Request) -> JSONResponse:
    await require_gateway(request)
    body = await read_model(request, Heartbeat)
    first, last = body.agent_port_range or (1, 1)
    if first > last:
        message = f"`agent_port_range` [{first}, {last}] is backwards: give [first, last]"
        raise ApiError(422, message, field="agent_port_range")
    state = state_of(request)
    stamp = now()
    info = body.model_dump()
    state.gateways[body.gateway_id] = {"info": info, "last_heartbeat": stamp}

    def job(conn: Connection) -> None:
        conn.execute(delete(gateways).where(gateways.c.id == body.gateway_id))
        conn.execute(
            gateways.insert().values(
                id=body.gateway_id, info=json.dumps(info), last_heartbeat=stamp
            )
        )

    await state.db.write(job)
    return json_ok({"ok": True})


def routes() -> list[BaseRoute]:
    p = "/api/v1/gateway"
    return [
        Route(p + "/config", config, methods=["GET"]),
        Route(p + "/traffic", ingest_traffic, methods=["POST"]),
        Route(p + "/approvals", create_gateway_approval, methods=["POST"]),
        Route(p + "/approvals/wait", wait_gateway_approvals, methods=["POST"]),
        Route(p + "/approvals/{id}/wait", wait_gateway_approval, methods=["GET"]),
        Route(p + "/approvals/{id}/consume", consume, methods=["POST"]),
        Route(p + "/heartbeat", heartbeat, methods=["POST"]),
    ]
