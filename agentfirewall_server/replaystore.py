"""Recorded decision inputs in the store: write, read back for replay, forget past retention.

The gateway's traffic records and the SDK's action requests carry the input of their
decision (``agentfirewall.policy.record``) in a ``decision_input`` JSON column. Past
``decision_input_retention_days`` the column is cleared (the traffic row itself stays).

A record's live verdict is compared with today's configuration replayed (``drifted``) only
when replay can give it: the rules', or a budget's the record names (the gateway records
the budget that refused or held a request in its input,
``agentfirewall.policy.replay.with_budget``, and replay applies it as live did, whatever
then became of the request: approved, denied, timed out, let through by a grant). A
verdict a kill switch gave, or a budget an older record does not name (its reason does),
is not part of a replayed configuration: such a record is loaded without one and counted
by what decided it (:attr:`Records.outside_rules`), as shadow mode leaves them out.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Select, Table, and_, false, or_, select, update

from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.decisions import Decision
from agentfirewall.policy import AccessRule, Engine, Policy
from agentfirewall.policy.record import RECORD_VERSION, restore_also, restore_input
from agentfirewall.policy.replay import Recorded, recorded_budget, verdict, with_budget
from agentfirewall_server.settings import Settings
from agentfirewall_server.snapshot import Snapshot
from agentfirewall_server.store.schema import action_requests, traffic

__all__ = [
    "MAX_INPUT_BYTES",
    "AgentRows",
    "Records",
    "budget_input",
    "build_engine",
    "input_text",
    "prune_inputs",
    "prune_inputs_job",
]

#: A record's input larger than this is not stored (its decision cannot be replayed).
MAX_INPUT_BYTES = 8192
_WOULD = {"would_deny": "deny", "would_hold": "require_approval"}
#: Rows fetched from the store at a time while records are replayed.
_BATCH = 1000
#: The reason of a verdict a budget gave: ``budget `name` exceeded: ...`` past its limit
#: (``budgetstore.exceeded``), ``budget `name`: ...`` when a request says not how much it
#: spends (``agentfirewall.budgetspend``).
_BUDGET_REASON = re.compile(r"budget `[a-z0-9][a-z0-9_-]{0,99}`(?: exceeded)?: ")
#: What the gateway says of a request a kill switch refused or cut.
_KILL_REASON = "kill_switch_active"


class Records:
    """The replayable decisions made since `since` (unix seconds), of `agents` (None: all):
    the newest `limit` of each source (gateway, SDK), read from the store as they are
    iterated, once, on `conn` (a replay over a million rows holds one at a time, not all).
    `shown`: what a record reads as to the caller (a viewer's replay: each value masked for
    them withheld), applied to each record before it is restored (None: as stored).

    A record whose live verdict a kill switch gave, or a budget it does not name, has none
    (`recorded` None: not compared for drift), counted in :attr:`outside_rules` by what gave
    it (``budget``, ``kill_switch``): complete once the records were iterated.
    """

    def __init__(
        self, conn: Connection, since: float, agents: AgentRows | None = None,
        limit: int = 1_000_000, shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        self._conn, self._since, self._agents, self._limit = conn, since, agents, limit
        self._shown = shown
        self.outside_rules: Counter[str] = Counter()

    def __iter__(self) -> Iterator[Recorded]:
        since, agents, limit = self._since, self._agents, self._limit
        query = select(
            traffic.c.id, traffic.c.agent, traffic.c.decision, traffic.c.would_outcome,
            traffic.c.decision_input, traffic.c.reason,
        ).where(traffic.c.created_at >= since, traffic.c.decision_input.is_not(None))  # fmt: skip
        if agents is not None:
            query = query.where(agents.where(traffic))
        for row in self._rows(query.order_by(traffic.c.created_at.desc()).limit(limit)):
            recorded = _WOULD.get(row.would_outcome or "") or row.decision
            live = (recorded, row.reason or "", row.decision == "killed")
            yield from self._restore(f"traffic:{row.id}", "proxy", row.agent,
                                     row.decision_input, live)  # fmt: skip
        actions = select(
            action_requests.c.id, action_requests.c.agent, action_requests.c.decision,
            action_requests.c.decision_input,
        ).where(
            action_requests.c.created_at >= since, action_requests.c.decision_input.is_not(None)
        )  # fmt: skip
        if agents is not None:
            actions = actions.where(agents.where(action_requests))
        for act in self._rows(actions.order_by(action_requests.c.created_at.desc()).limit(limit)):
            try:
                decision = Decision.from_dict(json.loads(act.decision))
                live = (verdict(decision), decision.reason, decision.kill_switch)
            except (ValueError, KeyError, TypeError):
                live = (None, "", False)
            yield from self._restore(f"action:{act.id}", "sdk", act.agent, act.decision_input,
                                     live)  # fmt: skip

    def _rows(self, query: Select[Any]) -> Iterator[Any]:
        """The rows of `query`, fetched a batch at a time (a server-side cursor on
        PostgreSQL, SQLite's own stepping); closed with the iteration, finished or not."""
        with self._conn.execute(query.execution_options(yield_per=_BATCH)) as result:
            yield from result

    def _restore(
        self, ident: str, source: str, agent: str | None, text: str,
        live: tuple[str | None, str, bool],
    ) -> Iterator[Recorded]:  # fmt: skip
        """The record `text` with its `live` (verdict, reason, killed): without the verdict
        when something outside a replayed configuration gave it (counted by what); an
        unreadable input is skipped, never guessed."""
        try:
            data = json.loads(text)
            if self._shown is not None and isinstance(data, dict):
                data = self._shown(data)
            spec, ctx = restore_input(data, agent or "")
            also = restore_also(data, spec, ctx)
            budget = recorded_budget(data)
        except (ValueError, KeyError, TypeError):
            return
        recorded, reason, killed = live
        outside = _outside_rules(reason, budget, killed=killed)
        if outside:
            self.outside_rules[outside] += 1
        yield Recorded(ident, source, spec, ctx, None if outside else recorded,
                       partial=bool(data.get("w")), unseen=bool(data.get("u")),
                       budget=budget, also=also)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AgentRows:
    """The recorded rows (traffic, SDK action requests) of some agents, matched by id.

    An agent is asked for by its name (or, `by_id`, its id). A name stands for the agent
    it names now (``Snapshot.agents_by_name``: the live one, else the newest revoked one),
    so a removed agent's rows never show as those of a new agent that took its name. A name
    no agent has matches the rows recorded under it with no agent id.
    """

    ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()  # names no agent has

    @classmethod
    def of(cls, snapshot: Snapshot, wanted: Iterable[str], *, by_id: bool = False) -> AgentRows:
        ids, names = set(), set()
        for ident in wanted:
            agent = snapshot.agent(ident) if by_id else snapshot.agents_by_name.get(ident)
            if agent is None:
                names.add(ident)
            else:
                ids.add(agent.id)
        return cls(frozenset(ids), frozenset(names))

    def where(self, table: Table) -> ColumnElement[bool]:
        """The condition on `table` (one with ``agent_id`` and ``agent`` columns)."""
        found: list[ColumnElement[bool]] = []
        if self.ids:
            found.append(table.c.agent_id.in_(sorted(self.ids)))
        if self.names:
            found.append(and_(table.c.agent_id.is_(None), table.c.agent.in_(sorted(self.names))))
        return or_(*found) if found else false()


def _outside_rules(reason: str, budget: object, *, killed: bool) -> str | None:
    """What gave a live verdict that a replay cannot give: a kill switch, a budget the
    record does not name (None: the rules, or the `budget` it names)."""
    if killed or reason.startswith(_KILL_REASON):
        return "kill_switch"
    return "budget" if budget is None and _BUDGET_REASON.match(reason) else None


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


def budget_input(text: str | None, outcome: str, budget: str) -> str | None:
    """A stored record (:func:`input_text`) that names the budget that refused or held its
    action (``agentfirewall.policy.replay.with_budget``): on the SDK path budgets decide
    in the write that records the action, after its record was made."""
    return None if text is None else input_text(with_budget(json.loads(text), outcome, budget))


def build_engine(
    snapshot: Snapshot,
    policies: list[Policy] | None = None,
    permissions: list[AccessRule] | None = None,
) -> Engine:
    """The live configuration, or a candidate replacing its policies and/or permissions;
    never the kill switches (an emergency stop is not a policy). The rules are compiled as
    the gateway compiles them (`alias_rules`: `generic.get` is `http.get`)."""
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
    return Engine(access_rules=alias_rules(permissions), policies=policies)


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
