"""Access rules ("permissions") and kill switches: the gates before the policies.

An access rule is agent x connector x action glob → allow | deny | require_approval.
``*`` as agent or connector means any. When several rules match one action, the most
specific wins, compared in this order:

1. the action pattern (globs.py: exact > longer literal prefix > fewer wildcards >
   more literal characters),
2. a named agent over ``*``, then a named connector over ``*``,
3. on a full tie, deny over require_approval over allow.

A name with the reserved segment (``github.unknown.put``: a request the connector could
not name, globs.py) is only *allowed* by a rule that names it: an allow-rule whose
pattern does not reach past the reserved segment (``github.*``, ``*``) is skipped for it,
while deny and require_approval wildcards still apply.

The index groups rules by agent, then connector, then pattern kind: a dict of exact
names, a dict of dot-ended prefixes probed once per dot of the action, and a short list
of other globs. A lookup therefore costs the same with ten rules or a hundred thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentfirewall.decisions import Outcome, normalize_outcome
from agentfirewall.policy.globs import Glob, compile_glob, reserved_floor

__all__ = [
    "KILL_SWITCH_REASON",
    "READ_VERBS",
    "AccessIndex",
    "AccessRule",
    "KillSwitch",
    "KillSwitchIndex",
    "Preset",
    "failed_closed",
    "preset_rules",
    "unreadable_switch",
]

#: The reason of a decision a kill switch made (its own reason is in the trace and the API).
KILL_SWITCH_REASON = "kill_switch_active"

Preset = Literal["allow-all", "read-only", "require-approval"]
KillSwitchScope = Literal["all", "connector", "agent"]
_RANK: dict[str, int] = {"allow": 0, "require_approval": 1, "deny": 2}
#: Verbs the ``read-only`` preset allows: actions named ``<...>.get``, ``<...>.list``...
READ_VERBS = ("get", "list", "search", "info", "history", "retrieve", "read")


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One permission: `agent` may do `action_pattern` on `connector` (or may not)."""

    agent: str
    connector: str
    action_pattern: str
    decision: Outcome
    id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", normalize_outcome(self.decision))
        if not self.agent or not self.connector:
            raise ValueError("an access rule needs an agent and a connector (or `*`)")
        compile_glob(self.action_pattern)

    @property
    def label(self) -> str:
        """How decisions name this rule: its id, else ``agent:connector:pattern``."""
        return self.id or f"{self.agent}:{self.connector}:{self.action_pattern}"


_Key = tuple[int, int, int, int, int, int, int]


@dataclass(slots=True)
class _Table:
    exact: dict[str, tuple[_Key, AccessRule]]
    prefix: dict[str, tuple[_Key, AccessRule]]
    complex: list[tuple[Glob, _Key, AccessRule]]

    def best(
        self, action: str, prefixes: tuple[str, ...], floor: str = ""
    ) -> tuple[_Key, AccessRule] | None:
        found = self.exact.get(action)
        if found is not None:
            return found  # exact beats every wildcard
        prefix = self.prefix
        if prefix:
            for candidate in prefixes:
                found = prefix.get(candidate)
                if found is not None:
                    if floor and found[1].decision == "allow" and not candidate.startswith(floor):
                        found = None  # an allow wildcard never spans the reserved segment
                        continue
                    break
        for glob, key, rule in self.complex:
            if (found is None or key > found[0]) and glob.matches(action):
                if floor and rule.decision == "allow" and not glob.names(floor):
                    continue
                found = (key, rule)
        return found


def _put(
    bucket: dict[str, tuple[_Key, AccessRule]], name: str, key: _Key, rule: AccessRule
) -> None:
    current = bucket.get(name)
    if current is None or key > current[0]:
        bucket[name] = (key, rule)


class AccessIndex:
    """Compiled access rules; `lookup` returns the most specific matching rule."""

    def __init__(self, rules: tuple[AccessRule, ...] | list[AccessRule] = ()) -> None:
        self._tables: dict[str, dict[str, _Table]] = {}
        self.size = 0
        for rule in rules:
            self._add(rule)

    def _add(self, rule: AccessRule) -> None:
        glob = compile_glob(rule.action_pattern)
        key: _Key = (
            *glob.specificity,
            0 if rule.agent == "*" else 1,
            0 if rule.connector == "*" else 1,
            _RANK[rule.decision],
        )
        by_connector = self._tables.setdefault(rule.agent, {})
        table = by_connector.get(rule.connector)
        if table is None:
            table = by_connector[rule.connector] = _Table({}, {}, [])
        if glob.kind == "exact":
            _put(table.exact, glob.pattern, key, rule)
        elif glob.kind == "prefix":
            _put(table.prefix, glob.literal, key, rule)
        else:
            table.complex.append((glob, key, rule))
            table.complex.sort(key=lambda item: item[1], reverse=True)
        self.size += 1

    def lookup(
        self, agent: str, connector: str, action: str, prefixes: tuple[str, ...]
    ) -> AccessRule | None:
        """The winning rule for `action` by `agent` on `connector`, or None."""
        best: tuple[_Key, AccessRule] | None = None
        tables = self._tables
        floor = reserved_floor(action)
        for agent_key in (agent, "*"):
            by_connector = tables.get(agent_key)
            if by_connector is None:
                continue
            for connector_key in (connector, "*"):
                table = by_connector.get(connector_key)
                if table is None:
                    continue
                found = table.best(action, prefixes, floor)
                if found is not None and (best is None or found[0] > best[0]):
                    best = found
            if agent == "*":
                break
        return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """An emergency stop: every action (``all``), one connector's, or one agent's."""

    scope: KillSwitchScope
    target: str | None = None
    reason: str = ""
    #: Not set by a person: stored configuration that this process cannot read (a policy or
    #: budget written by another version, or edited by hand). Everything is denied, fail
    #: closed, with ``reason`` as the decision's reason, until it is fixed or removed.
    unreadable: bool = False

    def __post_init__(self) -> None:
        if self.scope not in ("all", "connector", "agent"):
            raise ValueError(
                f"unknown kill switch scope `{self.scope}`: expected all, connector or agent"
            )
        if self.scope != "all" and not self.target:
            raise ValueError(f"a `{self.scope}` kill switch needs a target")

    @property
    def label(self) -> str:
        if self.unreadable:
            return "config_unreadable"
        return (
            "kill_switch:all" if self.scope == "all" else f"kill_switch:{self.scope}:{self.target}"
        )

    @property
    def decision_reason(self) -> str:
        """The reason an action it stops is denied with."""
        return self.reason if self.unreadable else KILL_SWITCH_REASON


def unreadable_switch(kind: str, name: str, error: Exception | str) -> KillSwitch:
    """The fail-closed stop for a stored policy or budget this process cannot read.

    Skipping it would enforce less than the operator wrote (a deny policy or a budget gone
    quietly), so every action is denied, saying which ``kind`` and ``name`` and what to do.
    """
    return failed_closed(
        f"stored {kind} `{name}` cannot be read by this version of TameFlare",
        error,
        until="it is fixed, disabled or removed",
    )


def failed_closed(what: str, error: Exception | str, *, until: str) -> KillSwitch:
    """A kill switch for configuration that did not read: `what` failed (`error`'s first
    line is shown), so every action is denied `until` the way out the reason names."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    reason = f"{what} ({first}): every action is denied until {until}"
    return KillSwitch("all", reason=reason, unreadable=True)


class KillSwitchIndex:
    """Active kill switches as two dicts and a flag."""

    def __init__(self, switches: tuple[KillSwitch, ...] | list[KillSwitch] = ()) -> None:
        self.all: KillSwitch | None = None
        self.connectors: dict[str, KillSwitch] = {}
        self.agents: dict[str, KillSwitch] = {}
        for switch in switches:
            if switch.scope == "all":
                self.all = self.all or switch
            elif switch.scope == "connector":
                self.connectors.setdefault(str(switch.target), switch)
            else:
                self.agents.setdefault(str(switch.target), switch)
        self.active = bool(self.all or self.connectors or self.agents)

    def find(self, agent: str, connectors: tuple[str, ...]) -> KillSwitch | None:
        """The switch that stops this agent on these connectors, if any."""
        if self.all is not None:
            return self.all
        switch = self.agents.get(agent)
        if switch is not None:
            return switch
        for connector in connectors:
            switch = self.connectors.get(connector)
            if switch is not None:
                return switch
        return None


def preset_rules(agent: str, connector: str, preset: Preset) -> list[AccessRule]:
    """The dashboard presets as access rules.

    ``allow-all``: ``*`` allow. ``require-approval``: ``*`` require_approval.
    ``read-only``: ``*.get``, ``*.list`` (and the other READ_VERBS) allow, ``*`` deny —
    the explicit deny keeps writes out in SDK mode too, where the default is allow.
    """
    if preset == "allow-all":
        return [AccessRule(agent, connector, "*", "allow")]
    if preset == "require-approval":
        return [AccessRule(agent, connector, "*", "require_approval")]
    if preset == "read-only":
        reads = [AccessRule(agent, connector, f"*.{verb}", "allow") for verb in READ_VERBS]
        return [*reads, AccessRule(agent, connector, "*", "deny")]
    raise ValueError(
        f"unknown preset `{preset}`: expected allow-all, read-only or require-approval"
    )
