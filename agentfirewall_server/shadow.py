"""The shadow configuration: policies and a permission set evaluated beside the live ones,
never enforced.

A shadow policy replaces the live policy of its name (a shadow copy with ``enabled: false``
takes the live one out) or adds a new one; a shadow permission set, when it has rules,
replaces every live access rule. Everything else the live engine is built from stays the
live one's (an emergency stop is not part of a rollout): the kill switches, and the
configured connectors an SDK action runs through, which a switch may name by id or name
(``Engine(connectors=...)``). So a kill switch never shows as a divergence: the shadow
verdict of an action it stops is its deny.

The control plane judges each decision when its record arrives: the gateway's traffic
records by their replayable input (``agentfirewall.policy.record``, the same evaluation as
``tf policy replay``: live and shadow engine on the same input, so a decision made by
something other than the rules, a budget or the content guard, is no divergence); an SDK
action by its own ``(spec, ctx)`` beside the live decision, decided as live decides it
(``agentfirewall.policy.replay.evaluate_sdk``: build aliases, then the SDK content step on
what the shadow policies' detectors found: the action is scanned for the detectors of
both configurations, ``Snapshot.scan``). The gateway's hot path pays nothing, and the
verdict (decision, deciding rule, diverged) is stored on the row; nothing here can change a
live decision, whose value is computed before and never read back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import performed_as
from agentfirewall.connectors.aliases import alias_rules
from agentfirewall.content import Finding
from agentfirewall.decisions import Decision
from agentfirewall.policy import (
    AccessRule,
    Engine,
    EvaluationContext,
    KillSwitch,
    Policy,
    load_policy,
)
from agentfirewall.policy.guard import GuardPlan, guard_plan
from agentfirewall.policy.record import restore_also, restore_input
from agentfirewall.policy.replay import (
    Recorded,
    evaluate_sdk,
    replay_one,
    responsible,
    verdict,
    with_findings,
)
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.store.schema import shadow_permissions, shadow_policies

__all__ = [
    "ShadowConfig",
    "ShadowVerdict",
    "count",
    "judge_action",
    "judge_input",
    "judge_traffic",
    "load_shadow",
    "shadow_columns",
    "shadow_engine",
]

_RULE_MAX = 300
_VERDICTS = frozenset({"allow", "deny", "require_approval"})
_NONE = {"shadow_decision": None, "shadow_rule": None, "shadow_diverged": None}


@dataclass(frozen=True, slots=True)
class ShadowVerdict:
    live: str
    shadow: str
    rule: str  # what decided under the shadow configuration

    @property
    def diverged(self) -> bool:
        return self.live != self.shadow

    def columns(self) -> dict[str, Any]:
        return {
            "shadow_decision": self.shadow,
            "shadow_rule": self.rule[:_RULE_MAX],
            "shadow_diverged": self.diverged,
        }


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    engine: Engine
    policies: list[dict[str, Any]]  # shadow_policies rows
    permissions: list[dict[str, Any]]  # shadow_permissions rows; [] keeps the live rules
    #: what the shadow policies' content fields need scanned, and their redact rules
    guard: GuardPlan = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "guard", guard_plan(self.engine.policies))

    def to_dict(self) -> dict[str, Any]:
        return {"policies": self.policies, "permissions": self.permissions}


def shadow_engine(
    live_policies: Sequence[tuple[str, bool, Policy]],
    shadow: Sequence[Policy],
    live_rules: Sequence[AccessRule],
    shadow_rules: Sequence[AccessRule],
    kill_switches: Sequence[KillSwitch],
    *,
    executed_by: Sequence[tuple[str, str, str]] = (),
) -> Engine:
    """The live configuration with the shadow policies (by name) and permission set, the
    rules compiled as the gateway compiles them (`alias_rules`); the live kill switches and
    the live connectors (`executed_by`: type, id, name; an SDK action runs through its
    type's, so a switch on any of them stops it), as the live engine has them."""
    replaced = {p.name for p in shadow}
    kept = [p for name, enabled, p in live_policies if enabled and name not in replaced]
    merged = sorted([*kept, *(p for p in shadow if p.enabled)], key=lambda p: p.priority)
    rules = alias_rules(shadow_rules or live_rules)
    return Engine(rules, merged, kill_switches, connectors=executed_by)


def load_shadow(
    conn: Connection,
    live_policies: Sequence[tuple[str, bool, Policy]],
    live_rules: Sequence[AccessRule],
    kill_switches: Sequence[KillSwitch],
    executed_by: Sequence[tuple[str, str, str]],
) -> ShadowConfig | None:
    """The installed shadow configuration (None: nothing installed), compiled with the live
    kill switches and connectors (`executed_by`, as `snapshot.load_snapshot` read them)."""
    pol_rows = [dict(r._mapping) for r in conn.execute(
        select(shadow_policies).order_by(shadow_policies.c.created_at))]  # fmt: skip
    perm_rows = [dict(r._mapping) for r in conn.execute(
        select(shadow_permissions).order_by(shadow_permissions.c.created_at))]  # fmt: skip
    if not pol_rows and not perm_rows:
        return None
    loaded: list[Policy] = []
    for row in pol_rows:
        try:
            loaded.append(load_policy(row["document"], source=row["name"], stored=True))
        except ValueError:
            continue  # validated on write; never crash the reload
    rules = [
        AccessRule(p["agent"], p["connector"], p["action_pattern"], p["decision"], id=p["id"])
        for p in perm_rows
    ]
    engine = shadow_engine(live_policies, loaded, live_rules, rules, kill_switches,
                           executed_by=executed_by)  # fmt: skip
    return ShadowConfig(engine, pol_rows, perm_rows)


def judge_input(
    live: Engine, shadow: ShadowConfig | None, agent: str | None, text: str | None
) -> ShadowVerdict | None:
    """A gateway record's verdicts from its stored input (None: no shadow, no input)."""
    if shadow is None or not text:
        return None
    try:
        data = json.loads(text)
        spec, ctx = restore_input(data, agent or "")
        also = restore_also(data, spec, ctx)  # (a request decided as several actions)
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable input is not judged, never guessed
    item = Recorded("", "proxy", spec, ctx, unseen=bool(data.get("u")), also=also)
    after = replay_one(shadow.engine, item)
    return ShadowVerdict(verdict(replay_one(live, item)), verdict(after), responsible(after))


def judge_action(
    shadow: ShadowConfig | None,
    spec: ActionSpec,
    ctx: EvaluationContext,
    live: Decision,
    found: Sequence[Finding] = (),
) -> ShadowVerdict | None:
    """An SDK action's shadow verdict beside its live decision (None: no shadow); `found`:
    the action's detections (``decide.sdk_context``), of which the shadow policies' count."""
    if shadow is None:
        return None
    ctx, findings = with_findings(ctx, shadow.guard, found)
    after = evaluate_sdk(shadow.engine, spec, ctx, performed_as(spec), plan=shadow.guard,
                         findings=findings)  # fmt: skip
    return ShadowVerdict(verdict(live), verdict(after), responsible(after))


def shadow_columns(judged: ShadowVerdict | None) -> dict[str, Any]:
    """The row's shadow columns, every key always (rows of several requests are inserted
    together)."""
    return dict(_NONE) if judged is None else judged.columns()


def count(metrics: Metrics, judged: ShadowVerdict, source: str) -> None:
    """One judged decision in ``aaf_shadow_decisions_total`` (labels from a fixed set)."""
    live = judged.live if judged.live in _VERDICTS else "other"
    shadow = judged.shadow if judged.shadow in _VERDICTS else "other"
    metrics.shadow_decisions.labels(live, shadow, source).inc()


def judge_traffic(
    live: Engine, shadow: ShadowConfig | None, rows: list[dict[str, Any]]
) -> list[ShadowVerdict | None]:
    """Add the shadow columns to a batch of traffic rows (all or none: one insert); the
    verdicts, row by row, for the caller to :func:`count` once the rows are stored (a
    resent copy is not)."""
    if shadow is None:
        return [None] * len(rows)
    verdicts = []
    for row in rows:
        judged = judge_input(live, shadow, row["agent"], row["decision_input"])
        row.update(shadow_columns(judged))
        verdicts.append(judged)
    return verdicts
