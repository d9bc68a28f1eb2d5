"""A config snapshot compiled once for the hot path.

The control plane's snapshot (docs/api.md, "Config snapshot") becomes a
:class:`CompiledConfig`: agents indexed by key hash, connectors routed by domain with their
credential headers prebuilt, and one core :class:`~agentfirewall.policy.Engine`. A new
snapshot builds a new object that replaces the old one whole (no locks on the hot path).

A connector's scrubber finds the secrets it injects, and those it injected before an admin
rotated them (:data:`RETIRED` at most, newest first, while the gateway runs): a credential
rotated out stays valid upstream until it is revoked, and an upstream that keeps a request
log hands it back. The gateway compiles each snapshot with the last one (`previous`), which
says what each connector injected.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from agentfirewall.connectors import (
    Connector,
    ConnectorRouter,
    HttpRequest,
    ParsedAction,
    RoutedConnector,
    get_connector,
)
from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.credentials import COMPUTED_KINDS, AwsInjector, build_injector
from agentfirewall.decisions import ApprovalRequirement, Decision, normalize_level
from agentfirewall.errors import AgentFirewallError, CredentialError
from agentfirewall.policy import (
    AccessRule,
    Engine,
    EvaluationContext,
    KillSwitch,
    load_policy,
    unreadable_switch,
)
from agentfirewall.policy.engine import PERMISSION_HINT
from agentfirewall.policy.guard import GuardPlan, guard_plan
from agentfirewall.policy.permissions import KillSwitchIndex, failed_closed
from agentfirewall.policy.run import combine_approvals
from agentfirewall_proxy.budgetlease import Say, say_plain
from agentfirewall_proxy.budgets import BudgetScope, budget_fields, compile_budgets, decided_as
from agentfirewall_proxy.entries import AgentEntry, ConnectorEntry
from agentfirewall_proxy.scrub import Scrubber, scrubber_for

__all__ = [
    "RETIRED",
    "AgentEntry",
    "CompiledConfig",
    "ConnectorEntry",
    "compile_snapshot",
    "refusing_config",
    "strictest",
]

_STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
#: The longest reason an approval records (the control plane's limit).
_REASON = 2000
#: How many credentials a connector injected before a rotation its scrubber still finds.
RETIRED = 8


def _header_safe(value: str) -> bytes:
    """UTF-8 bytes with control characters replaced: a name can never split a header."""
    return "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value).encode()


def _auth_headers(data: dict[str, Any], impl: Connector) -> list[tuple[str, str]]:
    credential = data.get("credential")
    if not credential:
        return []
    kind = data.get("auth_type")
    kind = None if kind in (None, "", "default") else str(kind)
    return list(impl.auth_headers(credential, auth_type=kind, header=data.get("auth_header")))


class _Earlier(NamedTuple):
    """What a connector's scrubber found in the last snapshot, and that scrubber."""

    secrets: tuple[bytes, ...] = ()
    scrubber: Scrubber | None = None


def _scrubbed(current: list[bytes], earlier: _Earlier) -> tuple[tuple[bytes, ...], Scrubber | None]:
    """The secrets a connector's scrubber finds (the `current` ones it injects, then those it
    found before rotated out, the newest :data:`RETIRED`), and that scrubber (the last one
    when they are the same: a snapshot changing nothing of them builds none)."""
    retired = [value for value in dict.fromkeys(earlier.secrets) if value not in current]
    secrets = (*current, *retired[:RETIRED])
    if secrets == earlier.secrets and (earlier.scrubber is not None or not secrets):
        return secrets, earlier.scrubber
    return secrets, scrubber_for(secrets)


def _computed(
    data: dict[str, Any], impl: Connector, kind: str, earlier: _Earlier
) -> tuple[ConnectorEntry, tuple[bytes, ...]]:
    """A connector whose credential is computed per request (``injection.py``), and the
    secrets its scrubber finds."""
    credential = data.get("credential")
    if not credential:
        raise CredentialError(f"auth type `{kind}` without a credential")
    grant = str(data.get("grant") or "")
    injector = build_injector(str(data["id"]), impl, kind, str(credential), grant)
    names = {n.lower() for n in impl.auth_header_names} | set(injector.drop)
    # SigV4's secret never travels (only a signature does); a static session token does
    current: list[bytes] = []
    if isinstance(injector, AwsInjector) and injector.static.session_token:
        current.append(injector.static.session_token.encode())
    secrets, scrubber = _scrubbed(current, earlier)
    entry = ConnectorEntry(
        id=str(data["id"]),
        type=str(data["type"]),
        name=str(data.get("name") or data["type"]),
        domains=tuple(str(d).lower().rstrip(".") for d in data.get("domains") or ()),
        impl=impl,
        base_url=data.get("base_url"),
        has_credential=True,
        auth_headers=(),
        auth_header_names=frozenset(n.encode("latin-1") for n in names),
        body_limit=int(impl.body_limit),
        scrubber=scrubber,
        injector=injector,
    )
    return entry, secrets


def _connector(data: dict[str, Any], earlier: _Earlier) -> tuple[ConnectorEntry, tuple[bytes, ...]]:
    """A connector compiled, and the secrets its scrubber finds (`earlier`: those it found
    in the last snapshot)."""
    impl = get_connector(str(data["type"]))
    if data.get("auth_type") in COMPUTED_KINDS:
        return _computed(data, impl, str(data["auth_type"]), earlier)
    headers = _auth_headers(data, impl)
    names = {n.lower() for n in impl.auth_header_names} | {k.lower() for k, _ in headers}
    if data.get("auth_header"):
        names.add(str(data["auth_header"]).lower())
    if headers:
        names.add("authorization")
    domains = tuple(str(d).lower().rstrip(".") for d in data.get("domains") or ())
    secrets, scrubber = _scrubbed([_header_safe(v) for _, v in headers], earlier)
    entry = ConnectorEntry(
        id=str(data["id"]),
        type=str(data["type"]),
        name=str(data.get("name") or data["type"]),
        domains=domains,
        impl=impl,
        base_url=data.get("base_url"),
        has_credential=bool(headers),
        auth_headers=tuple((k.encode("latin-1"), _header_safe(v)) for k, v in headers),
        auth_header_names=frozenset(n.encode("latin-1") for n in names) if headers else frozenset(),
        body_limit=int(impl.body_limit),
        scrubber=scrubber,
    )
    return entry, secrets


class Remembered(NamedTuple):
    """A request decided before (`pipeline.decide`): its entries (compared by identity),
    the connector's action, the decision and the input record."""

    agent: AgentEntry
    connector: ConnectorEntry
    parsed: ParsedAction | None
    decision: Decision
    input: dict[str, Any] | None


_REMEMBERED_LIMIT = 4096


@dataclass
class CompiledConfig:
    version: int
    agents: dict[str, AgentEntry]
    connectors: dict[str, ConnectorEntry]
    router: ConnectorRouter
    engine: Engine
    kill: KillSwitchIndex
    approval_timeout: float
    #: What the content guardrails scan (``agentfirewall.policy.guard``; empty: nothing).
    guard: GuardPlan = field(default_factory=GuardPlan)
    budgets: tuple[BudgetScope, ...] = ()
    #: ``budget.<name>.*`` fields policy conditions read (the gateway fetches them).
    budget_fields: frozenset[str] = frozenset()
    #: key hash -> when it expires (Unix seconds), for `tf run` keys that hold a lease.
    key_expires: dict[str, float] = field(default_factory=dict)
    #: Connector id -> the secrets its scrubber finds: those it injects, then those it
    #: injected before a rotation (``_scrubbed``): what the next snapshot's scrubbers find too.
    injected: dict[str, tuple[bytes, ...]] = field(default_factory=dict, repr=False)
    _routes: dict[str, ConnectorEntry | None] = field(default_factory=dict, repr=False)
    #: Decisions that read no time and no body, by request (`pipeline.decide`): valid for
    #: this snapshot only (a new one, or a kill switch, brings a new CompiledConfig).
    decided: dict[tuple[object, ...], Remembered] = field(default_factory=dict, repr=False)
    #: Hashes of the requests asked about once: a request is remembered the second time
    #: it comes (traffic that never repeats keeps nothing alive).
    _asked: set[int] = field(default_factory=set, repr=False)

    def asked_before(self, key: tuple[object, ...]) -> bool:
        """Whether a request with `key` came before (since the last clearing); notes it."""
        digest = hash(key)
        asked = self._asked
        if digest in asked:
            return True
        if len(asked) >= _REMEMBERED_LIMIT:
            asked.clear()
        asked.add(digest)
        return False

    def remember(self, key: tuple[object, ...], found: Remembered) -> None:
        if len(self.decided) >= _REMEMBERED_LIMIT:
            self.decided.clear()
        self.decided[key] = found

    def agent_for_key(self, key_hash: str, now: float | None = None) -> AgentEntry | None:
        """The agent of the key of `key_hash`; None for a key unknown, or past its lease at
        `now` (the gateway's clock, ``time.time()`` when not given): as if revoked."""
        agent = self.agents.get(key_hash)
        if agent is None:
            hmac.compare_digest(key_hash, key_hash)  # same work on a miss
            return None
        expires = self.key_expires.get(key_hash)
        if expires is not None and not (time.time() if now is None else now) < expires:
            return None  # (an expiry that is not a number, NaN, lets nothing in either)
        return agent

    def route(self, host: str) -> ConnectorEntry | None:
        """The connector serving `host` (memoised: routing is pure for one snapshot)."""
        cache = self._routes
        if host in cache:
            return cache[host]
        routed = self.router.match(host)
        found = None if routed is None else self.connectors.get(routed.id)
        if len(cache) >= 4096:
            cache.clear()
        cache[host] = found
        return found

    def kill_switch_for(
        self, agent: AgentEntry, connector: ConnectorEntry | None
    ) -> KillSwitch | None:
        if not self.kill.active:
            return None
        names = (connector.type, connector.id, connector.name) if connector else ()
        return self.kill.find(agent.name, names)

    def decide(
        self,
        agent: AgentEntry,
        connector: ConnectorEntry,
        request: HttpRequest,
        now: datetime,
        attributes: Mapping[str, object] | None = None,
        parsed: ParsedAction | None = None,
    ) -> tuple[ParsedAction | None, Decision, EvaluationContext | None]:
        """Parse (unless `parsed` is the request's, parsed already) and evaluate; a
        connector that cannot parse is a deny (fail closed).

        The context returned is the one the deciding action was evaluated in (None when
        nothing was parsed); a request of several actions is returned as the deciding one,
        the others it performs in ``also`` (``budgets.decided_as``: budgets count all)."""
        try:
            if parsed is None:
                parsed = connector.impl.parse(request, base_url=connector.base_url)
        except AgentFirewallError as exc:
            reason = f"request not understood by connector `{connector.type}`: {exc}"
            denied = Decision("deny", reason, decided_outcome="deny", errors=(str(exc),))
            return None, denied, None
        ctx = EvaluationContext(
            agent=agent.name,
            mode="proxy",
            now=now,
            connector=connector.type,
            enforcement_level=agent.level,
            risk=parsed.risk,
        )
        if attributes:  # content detections (``agentfirewall_proxy.guard``)
            ctx = replace(ctx, attributes=attributes)
        if not parsed.also:
            return parsed, self.engine.evaluate(parsed.spec, ctx), ctx
        # several actions in one request: all must be allowed
        actions = [(parsed, ctx), *((o, replace(ctx, risk=o.risk)) for o in parsed.also)]
        which, decision = strictest([self.engine.evaluate(a.spec, c) for a, c in actions])
        return decided_as(parsed, which), decision, actions[which][1]


def _strictness(decision: Decision) -> tuple[int, int]:
    """Enforced outcome first, then what the rules decided (monitor's would_deny)."""
    decided = decision.decided_outcome or decision.outcome
    return _STRICTNESS[decision.outcome], _STRICTNESS[decided]


def strictest(decisions: list[Decision]) -> tuple[int, Decision]:
    """How a request of several actions is decided: `decisions` are the whole request's
    (first: its spec names them all, as ``mcp.rpc.batch`` does) and each action's. The
    strictest outcome wins (the first of equals) and the index says whose action the
    request is decided, held or recorded as.

    Held for more than one of them, the request is held whole, in one approval: as the
    whole request (index 0, so the approver sees every action), approvable only by a
    person allowed to approve each held action, waiting the shortest time a rule set."""
    which = 0
    for index, found in enumerate(decisions):
        if _strictness(found) > _strictness(decisions[which]):
            which = index
    decision = decisions[which]
    held = [d for d in decisions if d.outcome == "require_approval"]
    if decision.outcome != "require_approval" or len(held) < 2:
        return which, decision
    approval = combine_approvals([d.approval or ApprovalRequirement() for d in held])
    whole = replace(
        decision,
        reason="; ".join(dict.fromkeys(d.reason for d in held))[:_REASON],
        risk_score=max(d.risk_score for d in held),
        matched_policies=tuple(dict.fromkeys(p for d in held for p in d.matched_policies)),
        matched_rules=tuple(dict.fromkeys(r for d in held for r in d.matched_rules)),
        approval=approval,
    )
    return 0, whole


def compile_snapshot(
    data: dict[str, Any],
    *,
    config_file: Path | None = None,
    say: Say = say_plain,
    previous: CompiledConfig | None = None,
) -> CompiledConfig:
    """Build the hot-path structures from a snapshot (raises on an invalid one).

    With `previous` (the config it replaces), each connector's scrubber also finds the
    secrets it injected before they were rotated out (:data:`RETIRED` at most).

    With `config_file` (the rules come from that file, no control plane), a deny-all
    default tells the agent to add its permission there, not with `tf permissions set`.
    `say` tells of a connector skipped (``Gateway.say``)."""
    settings = data.get("settings") or {}
    default_level = normalize_level(str(settings.get("default_enforcement_level", "full_enforce")))
    agents: dict[str, AgentEntry] = {}
    expires: dict[str, float] = {}
    for raw in data.get("agents", []):
        entry = AgentEntry(
            id=str(raw.get("id") or raw["name"]),
            name=str(raw["name"]),
            status=str(raw.get("status", "active")),
            level=normalize_level(str(raw.get("enforcement_level") or default_level)),
            proxy_port=raw.get("proxy_port"),
            name_header=_header_safe(str(raw["name"])),
        )
        run_levels = raw.get("key_levels") or {}
        for key_hash in raw.get("key_hashes", []):
            run_level = run_levels.get(key_hash)  # `tf run --enforcement`: that run only
            agents[str(key_hash).lower()] = (
                replace(entry, level=normalize_level(str(run_level))) if run_level else entry
            )
        for key_hash, expiry in (raw.get("key_expires") or {}).items():  # `tf run` leases
            expires[str(key_hash).lower()] = float(expiry)
    connectors: dict[str, ConnectorEntry] = {}
    injected: dict[str, tuple[bytes, ...]] = {}
    for raw in data.get("connectors", []):
        key = str(raw.get("id"))
        earlier = _Earlier()
        if previous is not None and key in previous.injected:
            last = previous.connectors.get(key)
            earlier = _Earlier(previous.injected[key], last.scrubber if last else None)
        try:
            compiled, injected[key] = _connector(raw, earlier)
        except (AgentFirewallError, KeyError, ValueError) as exc:
            # One broken connector must not take the others down: its hosts stay unrouted.
            say(f"agentfirewall_proxy: connector `{raw.get('id')}` skipped: {exc}", "warning")
            if earlier.secrets:  # (what it injected is found again once it compiles)
                injected[key] = earlier.secrets
            continue
        connectors[compiled.id] = compiled
    router = ConnectorRouter(
        [RoutedConnector(c.id, c.type, c.domains, c.base_url) for c in connectors.values()]
    )
    rules = [
        AccessRule(
            agent=str(r["agent"]),
            connector=str(r["connector"]),
            action_pattern=str(r["action_pattern"]),
            decision=r["decision"],
            id=r.get("id"),
        )
        for r in data.get("permissions", [])
    ]
    policies = []
    switches = [
        KillSwitch(
            scope=k["scope"],
            target=k.get("target"),
            reason=k.get("reason") or "",
            unreadable=bool(k.get("unreadable")),
        )
        for k in data.get("kill_switches", [])
    ]
    hint = PERMISSION_HINT if config_file is None else _file_hint(config_file)
    for p in data.get("policies", []):
        try:
            policies.append(load_policy(p["document"], source=p.get("name"), stored=True))
        except ValueError as exc:  # another version's: enforcing less than stored fails open
            switches.insert(0, unreadable_switch("policy", str(p.get("name")), exc))
    return CompiledConfig(
        version=int(data.get("version", 0)),
        agents=agents,
        connectors=connectors,
        router=router,
        engine=Engine(alias_rules(rules), policies, switches, permission_hint=hint),
        kill=KillSwitchIndex(switches),
        approval_timeout=float(settings.get("approval_timeout_seconds", 300)),
        guard=guard_plan(tuple(policies)),
        budgets=compile_budgets(list(data.get("budgets") or [])),
        budget_fields=budget_fields([p["document"] for p in data.get("policies", [])]),
        key_expires=expires,
        injected=injected,
    )


def _file_hint(path: Path) -> str:
    return f"add one to `permissions` in `{path}` (the gateway reads it again when it changes)"


def refusing_config(last: CompiledConfig, version: int, error: Exception) -> CompiledConfig:
    """`last`, refusing every request: configuration `version` could not be applied.

    Enforcing `last` instead would miss what changed since (a kill switch above all), so
    this is the fail-closed answer until a configuration this process can read arrives.
    """
    switch = failed_closed(
        f"the gateway could not apply configuration {version}",
        error,
        until="it can (run the control plane's TameFlare version)",
    )
    return replace(
        last,
        version=version,
        engine=Engine(kill_switches=[switch]),
        kill=KillSwitchIndex([switch]),
        decided={},
        _asked=set(),
    )
