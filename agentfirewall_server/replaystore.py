"""Recorded decision inputs in the store: write, read back for replay, forget past retention.

The gateway's traffic records and the SDK's action requests carry the input of their
decision (``agentfirewall.policy.record``) in a ``decision_input`` JSON column. Past
``decision_input_retention_days`` the column is cleared (the traffic row itself stays).

A record's live verdict is compared with today's configuration replayed (``drifted``) only
when the rules gave it: a verdict a budget gave (refused past a limit, held past a
``require_approval`` one) or a kill switch gave is not the rules' (neither is part of a
replayed configuration), so such a record is loaded without one and counted by what
decided it (:attr:`Records.outside_rules`), as shadow mode leaves them out.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from agentfirewall.decisions import Decision
from agentfirewall.policy import AccessRule, Engine, Policy
from agentfirewall.policy.record import RECORD_VERSION, restore_input
from agentfirewall.policy.replay import Recorded, verdict
from agentfirewall_server.settings import Settings
from agentfirewall_server.snapshot import Snapshot
from agentfirewall_server.store.schema import action_requests, traffic

__all__ = [
    "MAX_INPUT_BYTES",
    "Records",
    "build_engine",
    "input_text",
    "load_records",
    "prune_inputs",
    "prune_inputs_job",
]

#: A record's input larger than this is not stored (its decision cannot be replayed).
MAX_INPUT_BYTES = 8192
_WOULD = {"would_deny": "deny", "would_hold": "require_approval"}
#: The reason of a verdict a budget gave: ``budget `name` exceeded: ...`` past its limit
#: (``budgetstore.exceeded``), ``budget `name`: ...`` when a request says not how much it
#: spends (``agentfirewall.budgetspend``).
_BUDGET_REASON = re.compile(r"budget `[a-z0-9][a-z0-9_-]{0,99}`(?: exceeded)?: ")
#: What the gateway says of a request a kill switch refused or cut.
_KILL_REASON = "kill_switch_active"


class Records(list[Recorded]):
    """The replayable records, and how many of them had a live verdict that something
    other than the rules gave (by what: ``budget``, ``kill_switch``): those are loaded
    without a live verdict, so a replay does not count them as drifted."""

    def __init__(self) -> None:
        super().__init__()
        self.outside_rules: Counter[str] = Counter()


def _outside_rules(reason: str, *, killed: bool) -> str | None:
    """What gave a live verdict, when not the rules: a budget, a kill switch (None: rules)."""
    if killed or reason.startswith(_KILL_REASON):
        return "kill_switch"
    return "budget" if _BUDGET_REASON.match(reason) else None


#: what ``json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
#: builds on every call, built once (``encode`` keeps no state between calls)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def input_text(data: dict[str, Any] | None) -> str | None:
    """The record as compact JSON text, or None when it is not a record of this version or
    its text is longer than `MAX_INPUT_BYTES`. The text is only ever read back with
    ``json.loads``, so orjson writes it when it can: not when the record holds context
    attributes (any value a caller set: `json` refuses NaN, which orjson would write as
    null) nor an integer beyond 64 bits (orjson refuses it)."""
    if not data or data.get("v") != RECORD_VERSION:
        return None
    if "a" in data:
        raw = _ENCODER.encode(data).encode("utf-8")
    else:
        try:
            raw = orjson.dumps(data)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            raw = _ENCODER.encode(data).encode("utf-8")
    return raw.decode("utf-8") if len(raw) <= MAX_INPUT_BYTES else None


def _restore(
    ident: str, source: str, agent: str | None, text: str, recorded: str | None
) -> Recorded | None:
    try:
        data = json.loads(text)
        spec, ctx = restore_input(data, agent or "")
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable input is skipped, never guessed
    return Recorded(
        ident, source, spec, ctx, recorded, partial=bool(data.get("w")), unseen=bool(data.get("u"))
    )


def load_records(
    conn: Connection, since: float, agents: list[str] | None = None, limit: int = 1_000_000
) -> Records:
    """The replayable decisions made since `since` (unix seconds): the newest `limit` of
    each source (gateway, SDK). A record whose live verdict a budget or a kill switch gave
    has none (`recorded` None: not compared for drift), counted in `outside_rules`."""
    out = Records()
    query = select(
        traffic.c.id, traffic.c.agent, traffic.c.decision, traffic.c.would_outcome,
        traffic.c.decision_input, traffic.c.reason,
    ).where(traffic.c.created_at >= since, traffic.c.decision_input.is_not(None))  # fmt: skip
    if agents:
        query = query.where(traffic.c.agent.in_(agents))
    for row in conn.execute(query.order_by(traffic.c.created_at.desc()).limit(limit)):
        recorded = _WOULD.get(row.would_outcome or "") or row.decision
        outside = _outside_rules(row.reason or "", killed=row.decision == "killed")
        item = _restore(f"traffic:{row.id}", "proxy", row.agent, row.decision_input,
                        None if outside else recorded)  # fmt: skip
        if item is not None:
            out.append(item)
            if outside:
                out.outside_rules[outside] += 1
    actions = select(
        action_requests.c.id, action_requests.c.agent, action_requests.c.decision,
        action_requests.c.decision_input,
    ).where(
        action_requests.c.created_at >= since, action_requests.c.decision_input.is_not(None)
    )  # fmt: skip
    if agents:
        actions = actions.where(action_requests.c.agent.in_(agents))
    for act in conn.execute(actions.order_by(action_requests.c.created_at.desc()).limit(limit)):
        outside = None
        try:
            decision = Decision.from_dict(json.loads(act.decision))
            outside = _outside_rules(decision.reason, killed=decision.kill_switch)
            live = None if outside else verdict(decision)
        except (ValueError, KeyError, TypeError):
            live = None
        item = _restore(f"action:{act.id}", "sdk", act.agent, act.decision_input, live)
        if item is not None:
            out.append(item)
            if outside:
                out.outside_rules[outside] += 1
    return out


def build_engine(
    snapshot: Snapshot,
    policies: list[Policy] | None = None,
    permissions: list[AccessRule] | None = None,
) -> Engine:
    """The live configuration, or a candidate replacing its policies and/or permissions;
    never the kill switches (an emergency stop is not a policy)."""
    if permissions is None:
        permissions = [
            AccessRule(p["agent"], p["connector"], p["action_pattern"], p["decision"], id=p["id"])
            for p in snapshot.permissions
        ]
    if policies is None:
        loaded = snapshot.loaded_policies
        policies = [
            loaded[p["id"]] for p in snapshot.policies if p["enabled"] and p["id"] in loaded
        ]
    return Engine(access_rules=permissions, policies=policies)


def prune_inputs_job(settings: Settings) -> Callable[[Connection], None]:
    """The writer job clearing inputs past ``settings.decision_input_retention_days``."""
    days = settings.decision_input_retention_days
    return lambda conn: prune_inputs(conn, time.time(), days)


def prune_inputs(conn: Connection, now: float, retention_days: float) -> None:
    """Clear the decision inputs older than the retention (the rows themselves stay)."""
    cutoff = now - retention_days * 86400
    for table in (traffic, action_requests):
        conn.execute(
            update(table)
            .where(table.c.created_at < cutoff, table.c.decision_input.is_not(None))
            .values(decision_input=None)
        )
