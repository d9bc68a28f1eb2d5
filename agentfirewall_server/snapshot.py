"""The configuration snapshot: every agent, key, connector, rule and policy, in memory.

The hot paths (agent authentication, evaluation, the gateway's config) read this object,
never the database. Writes that change configuration bump ``config_version`` in the same
transaction; the app then reloads. Another instance's changes (PostgreSQL) are picked up
by a periodic version check.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import Connection, select, update

from agentfirewall.budgets import BudgetDef, CompiledBudget, compile_budget
from agentfirewall.connectors import ConnectorRouter, RoutedConnector
from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.errors import ConnectorError
from agentfirewall.policy import (
    AccessRule,
    Engine,
    KillSwitch,
    Policy,
    load_policy,
    unreadable_switch,
)
from agentfirewall.policy.guard import GuardPlan, guard_plan
from agentfirewall.policy.models import field_conditions
from agentfirewall.policy.permissions import failed_closed
from agentfirewall_server.clock import rfc3339
from agentfirewall_server.llmprices import PriceTable
from agentfirewall_server.shadow import ShadowConfig, load_shadow
from agentfirewall_server.store.schema import (
    agents,
    api_keys,
    budgets,
    connectors,
    credentials,
    kill_switches,
    permissions,
    policies,
    settings_table,
    tokens,
)
from agentfirewall_server.web import validation_error

__all__ = [
    "SETTING_DEFAULTS",
    "AgentRecord",
    "Snapshot",
    "bump_version",
    "get_setting",
    "kill_json",
    "load_snapshot",
    "put_setting",
    "read_version",
    "refusing_snapshot",
    "unreadable_json",
]

log = logging.getLogger("agentfirewall_server")

SETTING_DEFAULTS: dict[str, Any] = {
    "config_version": 1,
    "default_enforcement_level": "full_enforce",
    "slack_channel": None,
    "gateway_url": "http://localhost:8443",
}

#: What each stored setting must hold: the write routes (``PATCH /settings``, ``PUT
#: /llm-prices``) refuse anything else, so a row that is not is another version's or a
#: hand edit, set aside like an unreadable policy (its default kept, every action denied).
_SETTING_TYPES: dict[str, TypeAdapter[Any]] = {
    "config_version": TypeAdapter(int),
    "default_enforcement_level": TypeAdapter(Literal["monitor", "soft_enforce", "full_enforce"]),
    "approval_timeout_seconds": TypeAdapter(Annotated[int, Field(ge=1, le=7 * 24 * 3600)] | None),
    "gateway_url": TypeAdapter(str | None),
    "slack_channel": TypeAdapter(str | None),
    "metrics_public": TypeAdapter(bool | None),
    "slack_approvers": TypeAdapter(dict[str, str]),
    "llm_prices": TypeAdapter(PriceTable),
}


#: Key kinds of a `tf run` whose `--enforcement` applies to that run only (its proxy key).
RUN_KEY_LEVELS = {"proxy:L0": "monitor", "proxy:L1": "soft_enforce", "proxy:L2": "full_enforce"}
RUN_KEY_KINDS = {level: kind for kind, level in RUN_KEY_LEVELS.items()}


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    name: str
    status: str
    environment: str
    description: str
    enforcement_level: str
    sdk_default: str
    rate_limit_per_minute: int | None
    proxy_port: int | None
    created_at: float
    key_prefix: str | None
    key_hashes: tuple[str, ...]
    #: (key hash, enforcement level) of `tf run` keys whose run overrides the agent's level.
    key_levels: tuple[tuple[str, str], ...] = ()
    #: How many times it was closed (suspended, removed, activated after a suspension): an
    #: SDK action records the epoch it was decided under (routes/execute.py).
    closed_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "environment": self.environment,
            "description": self.description,
            "key_prefix": self.key_prefix,
            "enforcement_level": self.enforcement_level,
            "sdk_default": self.sdk_default,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "proxy_port": self.proxy_port,
            "created_at": rfc3339(self.created_at),
        }


@dataclass(slots=True)
class Snapshot:
    version: int
    agents_by_id: dict[str, AgentRecord]
    agents_by_name: dict[str, AgentRecord]
    key_index: dict[str, str]  # key hash -> agent id
    token_index: dict[str, dict[str, Any]]  # token hash -> token row
    connectors: list[dict[str, Any]]
    credentials: dict[str, str]  # owner -> ciphertext
    permissions: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    kill_switches: list[dict[str, Any]]
    settings: dict[str, Any]
    engine: Engine = field(repr=False)
    loaded_policies: dict[str, Policy] = field(repr=False)
    #: Budgets by name (``budgets.py``); their usage is in the store, not here.
    budgets: dict[str, CompiledBudget] = field(default_factory=dict)
    #: The shadow configuration (``shadow.py``), evaluated beside this one, never enforced.
    shadow: ShadowConfig | None = field(default=None, repr=False)
    #: The live policies' content guardrails: detectors and redact rules (``decide.py``).
    guard: GuardPlan = field(default_factory=GuardPlan, repr=False)
    #: What an SDK action is scanned for: the content fields the live and the shadow
    #: policies read (empty: nothing; ``guard`` and ``shadow.guard`` each pick their own).
    scan: GuardPlan = field(default_factory=GuardPlan, repr=False)
    #: A live or shadow policy condition reads ``budget.<name>.*`` (``decide.py`` reads the
    #: budgets then).
    reads_budgets: bool = False
    #: Stored policies and budgets this version cannot read: each denies every action.
    unreadable: tuple[KillSwitch, ...] = ()
    #: key hash -> when it expires, for the `tf run` keys that hold a lease (``expires_at``).
    key_expiry: dict[str, float] = field(default_factory=dict)

    def agent(self, ident: str) -> AgentRecord | None:
        return self.agents_by_id.get(ident) or self.agents_by_name.get(ident)

    def agent_for_key(self, key_hash: str, at: float) -> AgentRecord | None:
        """The agent holding the key of `key_hash` at time `at`; None for a key unknown,
        revoked, or past its lease (a run key expired is refused exactly as a revoked one)."""
        agent_id = self.key_index.get(key_hash)
        expires = self.key_expiry.get(key_hash)
        if agent_id is None or (expires is not None and at >= expires):
            return None
        return self.agents_by_id.get(agent_id)

    def connector_types(self) -> set[str]:
        return {c["type"] for c in self.connectors}

    def switches_json(self) -> list[dict[str, Any]]:
        """Every active stop as the API shows it: unreadable configuration first."""
        return [*map(unreadable_json, self.unreadable), *map(kill_json, self.kill_switches)]


def kill_json(row: dict[str, Any]) -> dict[str, Any]:
    """An active kill switch (a row of `Snapshot.kill_switches`) as the API shows it."""
    return {
        "scope": row["scope"],
        "target": row["target"] or None,
        "reason": row["reason"],
        "activated_by": row["activated_by"],
        "activated_at": rfc3339(row["activated_at"]),
    }


def unreadable_json(switch: KillSwitch) -> dict[str, Any]:
    """A stored policy or budget this version cannot read (it denies everything), for the API."""
    return {"scope": "all", "target": None, "reason": switch.reason, "unreadable": True}


def read_version(conn: Connection) -> int:
    return int(get_setting(conn, "config_version"))


def get_setting(conn: Connection, key: str) -> Any:
    row = conn.execute(
        select(settings_table.c.value).where(settings_table.c.key == key)
    ).scalar_one_or_none()
    return json.loads(row) if row is not None else SETTING_DEFAULTS.get(key)


def put_setting(conn: Connection, key: str, value: Any) -> None:
    text = json.dumps(value)
    done = conn.execute(
        update(settings_table).where(settings_table.c.key == key).values(value=text)
    )
    if done.rowcount == 0:
        conn.execute(settings_table.insert().values(key=key, value=text))


def bump_version(conn: Connection) -> int:
    """Mark the configuration changed (in the caller's transaction)."""
    version = read_version(conn) + 1
    put_setting(conn, "config_version", version)
    return version


def _agents(conn: Connection) -> tuple[dict[str, AgentRecord], dict[str, str], dict[str, float]]:
    keys: dict[str, list[tuple[str, str, float, str]]] = {}
    expiry: dict[str, float] = {}
    for r in conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))):
        keys.setdefault(r.agent_id, []).append((r.key_hash, r.prefix, r.created_at, r.kind))
        if r.expires_at is not None:
            expiry[r.key_hash] = r.expires_at
    out: dict[str, AgentRecord] = {}
    index: dict[str, str] = {}
    for a in conn.execute(select(agents).order_by(agents.c.created_at)):
        mine = sorted(keys.get(a.id, []), key=lambda k: k[2])
        sdk = [k for k in mine if k[3] == "sdk"]
        prefix = sdk[-1][1] if sdk else (mine[-1][1] if mine else None)
        out[a.id] = AgentRecord(
            a.id,
            a.name,
            a.status,
            a.environment,
            a.description or "",
            a.enforcement_level,
            a.sdk_default,
            a.rate_limit_per_minute,
            a.proxy_port,
            a.created_at,
            prefix,
            tuple(k[0] for k in mine),
            tuple((k[0], RUN_KEY_LEVELS[k[3]]) for k in mine if k[3] in RUN_KEY_LEVELS),
            a.closed_epoch,
        )
        for k in mine:
            index[k[0]] = a.id
    return out, index, expiry


def _by_name(by_id: dict[str, AgentRecord]) -> dict[str, AgentRecord]:
    """Name -> the agent that answers to it: the live one, else the newest revoked one (a
    removed agent's name may be registered again; its old rows keep their id)."""
    named: dict[str, AgentRecord] = {}
    for agent in by_id.values():  # oldest first
        seen = named.get(agent.name)
        if seen is None or agent.status != "revoked" or seen.status == "revoked":
            named[agent.name] = agent
    return named


def _rows(conn: Connection, table: Any, order: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(table).order_by(order))]


def _settings(conn: Connection, unreadable: list[KillSwitch]) -> dict[str, Any]:
    out = dict(SETTING_DEFAULTS)
    for row in conn.execute(select(settings_table)):
        try:
            value = json.loads(row.value)
            if row.key in _SETTING_TYPES:
                _SETTING_TYPES[row.key].validate_python(value, strict=True)
        except ValueError as exc:  # a JSON or validation error: one line says which
            unreadable.append(_unreadable("setting", row.key, exc))
            continue
        out[row.key] = value
    return out


def load_snapshot(conn: Connection) -> Snapshot:
    """Read the whole configuration and compile the policy engine.

    All of it from one database snapshot on PostgreSQL (REPEATABLE READ), where another
    replica may commit a change between two of these reads; the version is read first in
    any case, so a snapshot is never older than the version it carries (a replica whose
    snapshot said version N but missed part of change N would never reload it).
    """
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        conn.execution_options(isolation_level="REPEATABLE READ")
    version = read_version(conn)
    by_id, key_index, key_expiry = _agents(conn)
    perm_rows = _rows(conn, permissions, permissions.c.created_at)
    pol_rows = _rows(conn, policies, policies.c.priority)
    ks_rows = _rows(conn, kill_switches, kill_switches.c.activated_at)
    loaded: dict[str, Policy] = {}
    unreadable: list[KillSwitch] = []
    for p in pol_rows:
        try:
            policy = load_policy(p["document"], source=p["name"], stored=True)
            loaded[p["id"]] = policy.model_copy(update={"enabled": bool(p["enabled"])})
        except ValueError as exc:  # validated on write: another version's, or edited by hand
            if p["enabled"]:  # a disabled one enforces nothing: listed, not loaded
                unreadable.append(_unreadable("policy", p["name"], exc))
    rules, perm_rows = _readable(perm_rows, unreadable, "access rule", _access_rule)
    stored_switches, ks_rows = _readable(
        ks_rows, unreadable, "kill switch", _kill_switch,
        lambda k: f"{k['scope']}:{k['target'] or ''}",
    )  # fmt: skip
    found_budgets = _budgets(conn, unreadable)
    stored_connectors, _ = _readable(
        _rows(conn, connectors, connectors.c.created_at), unreadable, "connector", _connector
    )
    settings = _settings(conn, unreadable)
    switches = [*unreadable, *stored_switches]
    enabled = [loaded[p["id"]] for p in pol_rows if p["enabled"] and p["id"] in loaded]
    # the rules as the gateway compiles them (`generic.get` is `http.get`): SDK decisions,
    # dry runs and the live side of shadow mode decide as it does
    # (an SDK action is stopped by a switch on its type's configured connectors' ids and names)
    executed_by = [(c["type"], c["id"], c["name"]) for c in stored_connectors]
    engine = Engine(alias_rules(rules), enabled, switches, connectors=executed_by)
    named = [
        (p["name"], bool(p["enabled"]), loaded[p["id"]]) for p in pol_rows if p["id"] in loaded
    ]
    shadow = load_shadow(conn, named, rules, switches, executed_by)
    both = (*enabled, *(shadow.engine.policies if shadow else ()))
    return Snapshot(
        version=version,
        agents_by_id=by_id,
        agents_by_name=_by_name(by_id),
        key_index=key_index,
        key_expiry=key_expiry,
        token_index={t["token_hash"]: t for t in _rows(conn, tokens, tokens.c.created_at)},
        connectors=stored_connectors,
        credentials={
            r["owner"]: r["ciphertext"] for r in _rows(conn, credentials, credentials.c.owner)
        },
        permissions=perm_rows,
        policies=pol_rows,
        kill_switches=ks_rows,
        settings=settings,
        engine=engine,
        loaded_policies=loaded,
        budgets=found_budgets,
        unreadable=tuple(unreadable),
        shadow=shadow,
        guard=guard_plan(tuple(enabled)),
        scan=guard_plan(both),
        reads_budgets=any(
            leaf.field.startswith("budget.")
            for policy in both
            for rule in policy.rules
            for leaf in field_conditions(rule.conditions)
        ),
    )


def refusing_snapshot(last: Snapshot, version: int, error: Exception) -> Snapshot:
    """`last`, denying every action: the stored configuration at `version` did not read.

    Serving `last` would miss what changed since (a kill switch above all); the gateways
    get the same refusal with the next config they fetch (`version` is the new one).
    """
    switch = failed_closed(
        f"the stored configuration (version {version}) cannot be read by this server",
        f"{type(error).__name__}: {error}",
        until="it can; see the server's log",
    )
    return replace(
        last,
        version=version,
        engine=Engine(kill_switches=[switch]),
        unreadable=(switch,),
        shadow=None,
        guard=GuardPlan(),
        scan=GuardPlan(),
        reads_budgets=False,
    )


R = TypeVar("R")


def _readable(
    rows: list[dict[str, Any]],
    unreadable: list[KillSwitch],
    kind: str,
    build: Callable[[dict[str, Any]], R],
    name: Callable[[dict[str, Any]], str] = lambda row: str(row["id"]),
) -> tuple[list[R], list[dict[str, Any]]]:
    """What `build` makes of each stored row, and the rows it made something of. A row it
    cannot read (written by another version, or by hand) denies everything, like an
    unreadable policy, and is left out of what gateways are sent (they could not read it
    either)."""
    built, kept = [], []
    for row in rows:
        try:
            item = build(row)
        except (ValueError, TypeError, ConnectorError) as exc:
            unreadable.append(_unreadable(kind, name(row), exc))
            continue
        built.append(item)
        kept.append(row)
    return built, kept


def _access_rule(p: dict[str, Any]) -> AccessRule:
    return AccessRule(p["agent"], p["connector"], p["action_pattern"], p["decision"], id=p["id"])


def _kill_switch(k: dict[str, Any]) -> KillSwitch:
    return KillSwitch(k["scope"], k["target"] or None, k["reason"])


def _connector(c: dict[str, Any]) -> dict[str, Any]:
    """A connector row with its JSON read; refused when a gateway's router would refuse its
    domains (no gateway could load a configuration holding it)."""
    row = {**c, "domains": json.loads(c["domains"]), "options": json.loads(c["options"] or "{}")}
    if not isinstance(row["domains"], list) or not isinstance(row["options"], dict):
        raise ValueError("`domains` must be a list and `options` a mapping")
    if row["domains"]:
        ConnectorRouter([RoutedConnector(c["id"], c["type"], tuple(row["domains"]))])
    return row


def _budgets(conn: Connection, unreadable: list[KillSwitch]) -> dict[str, CompiledBudget]:
    found: dict[str, CompiledBudget] = {}
    for row in _rows(conn, budgets, budgets.c.created_at):
        try:
            definition = BudgetDef.model_validate_json(row["definition"])
        except ValueError as exc:  # validated on write: another version's, or edited by hand
            unreadable.append(_unreadable("budget", row["name"], exc))
            continue
        found[definition.name] = compile_budget(row["id"], definition)
    return found


def _unreadable(kind: str, name: str, exc: Exception) -> KillSwitch:
    """Never crash the reload, never enforce less than stored: deny everything, say why
    (for a validation error, the field and the problem: its first line names only a type)."""
    why = validation_error(exc).message if isinstance(exc, ValidationError) else exc
    switch = unreadable_switch(kind, name, why)
    log.error("%s", switch.reason)
    return switch
