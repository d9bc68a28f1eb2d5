"""The SDK's action requests as stored: one row with the approval that held it.

Read by the agent API (`routes/actions.py`: status, wait) and by the execute route
(`routes/execute.py`), which claims the row before it runs the action. An action that a
budget covers holds a reservation (``reservation`` in its stored ``response``, made by
`sdkspend.Spend`): `finish_spend` releases it when the action is denied or expires
(`approvals`) and settles or releases it when it is executed (`routes/execute.py`);
`redate_spend` counts it from its approval on (it happens from then).

An action its agent's closure ended (`closed_by_agent`: the agent suspended or removed, or
activated after a suspension, since the action was decided) never runs, and is handed no
decision token: the execute claim refuses it (`routes/execute.py`), and `/wait` and an
``Idempotency-Key`` replay answer it denied by `closure_decision` (`routes/actions.py`).

An action (SDK) or a held request (gateway) on which content detectors fired is shown
(its approval, ``GET /actions/{id}``) as `shown_spec` makes it: each detection replaced by
its marker, never the text. What executes is the action as requested
(``action_requests.action_spec``); the approval's hash and the decision token bind that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, select

from agentfirewall.connectors import encoded_parameters
from agentfirewall.content import shown_action
from agentfirewall.decisions import Decision
from agentfirewall_server.budgetstore import redate, settle
from agentfirewall_server.store.schema import action_requests, agents, approvals, used_nonces

__all__ = [
    "allowed_not_started",
    "closed_by_agent",
    "closure_decision",
    "finish_spend",
    "free_tokens",
    "load_action",
    "redate_spend",
    "reservation_of",
    "shown_spec",
]


def load_action(conn: Connection, action_id: str) -> dict[str, Any] | None:
    """The action request `action_id` as a dict, its approval row under ``approval_row``."""
    row = conn.execute(select(action_requests).where(action_requests.c.id == action_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["approval_row"] = None
    if row.approval_id:
        apv = conn.execute(select(approvals).where(approvals.c.id == row.approval_id)).first()
        out["approval_row"] = dict(apv._mapping) if apv else None
    return out


def closed_by_agent(conn: Connection, row: Mapping[str, Any]) -> bool:
    """Whether a closure of the action's agent ended the action `row`: the agent, as stored,
    is not active (or is gone), or its epoch (``closed_epoch``) moved on since the action was
    decided under ``agent_epoch`` (NULL, a row written without one: never equal)."""
    found = conn.execute(
        select(agents.c.status, agents.c.closed_epoch).where(agents.c.id == row["agent_id"])
    ).first()
    return found is None or found.status != "active" or row["agent_epoch"] != found.closed_epoch


def allowed_not_started(row: Mapping[str, Any]) -> bool:
    """Whether the stored action (`load_action`'s) was allowed, by a rule or an approval,
    and has not started: allowed, or denied since by its agent's closure (the suspension's
    denial of the approved actions not run, a send that failed meanwhile: routes/execute.py)."""
    if row["execution_state"] is not None:
        return False
    if row["status"] == "allowed":
        return True
    approval = row.get("approval_row") or {}
    allowed = json.loads(row["decision"]).get("outcome") == "allow"
    return row["status"] == "denied" and (allowed or approval.get("status") == "approved")


def closure_decision(row: Mapping[str, Any]) -> Decision:
    """The denial of an action its agent's closure ended, saying why and what to do."""
    reason = (
        f"it was decided before its agent `{row['agent']}` was last suspended or removed "
        "(or while it was), and nothing decided then runs after it: it gets no decision "
        "token; request the action again (with a new `Idempotency-Key`, if you sent one)"
    )
    return Decision("deny", reason, risk_score=float(row["risk_score"] or 0.0),
                    matched_rules=("agent_closed",), decided_outcome="deny")  # fmt: skip


def shown_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` as approvers and viewers see it when content detectors fired on its action:
    every detection (any detector) in its strings and keys replaced by its marker, inside
    the parameters its connector says carry base64 too (``agentfirewall.content.shown_action``,
    which ``agentfirewall.testing`` shows too)."""
    resource = spec.get("resource")
    provider = resource.get("provider") if isinstance(resource, dict) else None
    return shown_action(spec, encoded_parameters(provider, str(spec.get("type", ""))))


def reservation_of(conn: Connection, action_id: str) -> str | None:
    """The budget reservation recorded with the action (``sdkspend.Spend``), if any."""
    stored = conn.execute(
        select(action_requests.c.response).where(action_requests.c.id == action_id)
    ).scalar_one_or_none()
    found = json.loads(stored).get("reservation") if stored else None
    return found if isinstance(found, str) else None


def free_tokens(conn: Connection, action_id: str) -> None:
    """The action's decision tokens usable again: an execution that sent nothing is undone."""
    conn.execute(delete(used_nonces).where(used_nonces.c.action_request_id == action_id))


def finish_spend(conn: Connection, action_id: str, *, ok: bool, now: float) -> int:
    """Settle (`ok`: executed, or sent and maybe done) or release (denied, expired, the
    upstream refused) the action's reservation; the usage rows changed (0: none)."""
    reservation = reservation_of(conn, action_id)
    if reservation is None:
        return 0
    return settle(conn, reservation, {}, ok=ok, usage=None, model=None, prices={}, now=now)


def redate_spend(conn: Connection, action_id: str, *, now: float) -> int:
    """An approved action's reservation counts from the approval on: a rolling window
    must not let it go when the action has not even happened yet (held past a window)."""
    reservation = reservation_of(conn, action_id)
    return 0 if reservation is None else redate(conn, reservation, now)
