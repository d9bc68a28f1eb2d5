"""The rows of ``GET /api/v1/traffic``; with ``shadow=diverged``, the gateway's traffic
records and the SDK's action requests that the shadow configuration would have decided
otherwise, in one list.

Both are judged when their record arrives (``agentfirewall_server.shadow``) and keep the
verdict on their row. An ``action_requests`` row is shown here in a traffic row's shape with
``source: "sdk"`` (no method, host, path, status code or latency; ``connector`` is the
spec's provider, ``decision`` its outcome); a traffic row has ``source: "proxy"``. This only
reads what ``POST /api/v1/actions`` already stores: the hot path does nothing more.

A traffic row holds no credential: the control plane masks each record a gateway sends before
it stores it (:func:`masked_record`). The gateway ships its records as they are, to the
control plane it already sends held requests to whole, and pays nothing for masking.

Pages are cut in one order over both tables, ``(created_at, source, id)`` descending, and
``next_before`` is the last row's place in it (``<created_at>,<source>,<id>``), so a page
never repeats nor skips a row whatever the other table holds. A bare integer ``before`` (a
traffic id, the unfiltered list's cursor) pages the traffic rows only, as it always did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, false, or_, select, true

from agentfirewall.content import masked_field, shown_path
from agentfirewall.policy.record import shown_input, withheld_credentials
from agentfirewall_server.clock import rfc3339
from agentfirewall_server.replaystore import AgentRows
from agentfirewall_server.store.schema import INTEGER_MAX, action_requests, traffic
from agentfirewall_server.web import ApiError

__all__ = ["Place", "masked_record", "page", "parse_place", "sdk_json", "traffic_json"]

_BAD_BEFORE = "`before` must be a traffic id or the `next_before` of a `shadow=diverged` page"
#: The texts of a record that are masked, and the longest each is stored once masked (a
#: marker is longer than what it replaces; ``routes.gateway.TrafficRecord``'s limits).
_TEXTS = {"host": 300, "path": 8192, "reason": 2000}


@dataclass(frozen=True, slots=True, order=True)
class Place:
    """A row's place in the list (compared as a tuple: newest is greatest)."""

    created_at: float
    source: str  # "proxy" < "sdk": at one instant the SDK rows come first
    id: int | str

    def text(self) -> str:
        return f"{self.created_at!r},{self.source},{self.id}"


def parse_place(raw: str) -> Place:
    """The ``next_before`` cursor a diverged page returned (400 on anything else)."""
    try:
        stamp, source, ident = raw.split(",", 2)
        place = Place(float(stamp), source, int(ident) if source == "proxy" else ident)
    except ValueError:
        raise ApiError(400, _BAD_BEFORE, field="before") from None
    wrong_id = source == "proxy" and not 0 <= int(place.id) <= INTEGER_MAX  # a traffic id
    if source not in ("proxy", "sdk") or wrong_id or place.created_at != place.created_at:
        raise ApiError(400, _BAD_BEFORE, field="before")  # (the last test: NaN)
    return place


def _after(created: Any, ident: Any, source: str, place: Place | None) -> ColumnElement[bool]:
    """The rows of one table (one `source`) that come after `place` in the list."""
    if place is None:
        return true()
    if source == place.source:
        tie: ColumnElement[bool] = and_(created == place.created_at, ident < place.id)
    else:  # the whole instant comes after `place` when its source ranks lower
        tie = created == place.created_at if source < place.source else false()
    return or_(created < place.created_at, tie)


def masked_record(record: dict[str, Any]) -> dict[str, Any]:
    """A gateway's traffic record (as ``routes.gateway.TrafficRecord`` dumps it) with no
    credential in what is stored of it: its path (and query, when it holds one) as its
    approver is shown one (``shown_target``: the shape and the fields whose names and
    values say nothing secret kept), its host and reason masked, and each value of its
    decision input (``input``) that holds a credential withheld, its name under ``"w"``
    (``agentfirewall.policy.record.withheld_credentials``). Masking what is masked changes
    nothing. Texts seen before are not masked again (paths, hosts and reasons repeat)."""
    shown = dict(record)
    for name, limit in _TEXTS.items():
        text = shown.get(name)
        if isinstance(text, str) and text:
            masked_text = shown_path(text) if name == "path" else masked_field(text)
            if masked_text != text:  # (cut when masking made it longer than is stored)
                shown[name] = masked_text[:limit]
    if "input" in shown:
        shown["input"] = withheld_credentials(shown["input"])
    return shown


def traffic_json(row: Any) -> dict[str, Any]:
    """A gateway traffic row, with ``source: "proxy"``."""
    m = dict(row._mapping)
    m["source"] = "proxy"
    m["created_at"] = rfc3339(m["created_at"])
    raw = m.pop("decision_input", None)  # the replayable input (agentfirewall.policy.record)
    m["input"] = shown_input(json.loads(raw)) if raw else None
    return m


def sdk_json(row: Any) -> dict[str, Any]:
    """An SDK action request in a traffic row's shape, with ``source: "sdk"``."""
    spec = json.loads(row.action_spec)
    decision = json.loads(row.decision)
    raw = row.decision_input
    return {
        "id": row.id,
        "source": "sdk",
        "request_id": row.id,
        "agent": row.agent,
        "agent_id": row.agent_id,
        # ActionSpec.provider: the resource's provider, else the type's first segment
        "connector": (spec.get("resource") or {}).get("provider")
        or row.action_type.split(".", 1)[0],
        "action": row.action_type,
        "method": None,
        "host": None,
        "path": None,
        "decision": decision.get("outcome"),
        "would_outcome": decision.get("would_outcome"),
        "status_code": None,
        "latency_ms": None,
        "bytes_in": None,
        "bytes_out": None,
        "reason": decision.get("reason"),
        "created_at": rfc3339(row.created_at),
        "input": shown_input(json.loads(raw)) if raw else None,
        "shadow_decision": row.shadow_decision,
        "shadow_rule": row.shadow_rule,
        "shadow_diverged": row.shadow_diverged,
    }


_SDK_NAMES = ("id", "agent", "agent_id", "action_type", "action_spec", "decision",
              "decision_input", "created_at", "shadow_decision", "shadow_rule",
              "shadow_diverged")  # fmt: skip
_SDK_COLUMNS = select(*(action_requests.c[n] for n in _SDK_NAMES)).where(
    action_requests.c.shadow_diverged.is_(True)
)


def _sdk_rows(
    conn: Connection,
    params: dict[str, str],
    place: Place | None,
    limit: int,
    agents: AgentRows | None,
) -> list[tuple[Place, dict[str, Any]]]:
    """Up to `limit` diverged SDK rows after `place` that match the filters; `connector` and
    `decision` live in the stored JSON and are matched here, batch after batch."""
    q = _SDK_COLUMNS
    if agents is not None:
        q = q.where(agents.where(action_requests))
    if params.get("action"):
        q = q.where(action_requests.c.action_type == params["action"])
    wanted = {k: params[k] for k in ("connector", "decision") if params.get(k)}
    created, ident = action_requests.c.created_at, action_requests.c.id
    found: list[tuple[Place, dict[str, Any]]] = []
    while len(found) < limit:
        batch = conn.execute(
            q.where(_after(created, ident, "sdk", place))
            .order_by(created.desc(), ident.desc())
            .limit(limit)
        ).all()
        for row in batch:
            place, item = Place(row.created_at, "sdk", row.id), sdk_json(row)
            if all(item[k] == v for k, v in wanted.items()):
                found.append((place, item))
        if len(batch) < limit:
            break
    return found[:limit]


def page(
    conn: Connection,
    proxy: Select[Any],
    params: dict[str, str],
    place: Place | None,
    limit: int,
    *,
    sdk: bool,
    agents: AgentRows | None = None,
) -> dict[str, Any]:
    """One page: `proxy` (the filtered, diverged traffic query) merged with the SDK rows
    (`sdk` False: a filter no SDK row can match, such as an HTTP status) of `agents`."""
    created, ident = traffic.c.created_at, traffic.c.id
    rows = conn.execute(
        proxy.where(_after(created, ident, "proxy", place))
        .order_by(created.desc(), ident.desc())
        .limit(limit)
    ).all()
    merged = [(Place(r.created_at, "proxy", r.id), traffic_json(r)) for r in rows]
    if sdk:
        merged += _sdk_rows(conn, params, place, limit, agents)
    merged.sort(key=lambda pair: pair[0], reverse=True)
    del merged[limit:]
    last = merged[-1][0].text() if len(merged) == limit else None
    return {"traffic": [item for _, item in merged], "next_before": last}
