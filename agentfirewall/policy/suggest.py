"""Suggest access rules from observed traffic (audit2allow for agents).

:func:`suggest_rules` answers the smallest set of access rules for one agent that would
have let every observed call through: per connector, each observed action is allowed
(``require_approval`` when its risk is high), and observed actions are folded into one
dotted prefix glob (``stripe.transfer.*``) only when the connector's catalogue knows no
action under that prefix that was not observed with the same decision, so a glob never
grants an action nobody saw. Names in the reserved ``unknown`` segment stay exact. One
``* / *`` deny rule closes everything else, whatever the agent's SDK default.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agentfirewall.actions import Risk
from agentfirewall.policy.globs import RESERVED_SEGMENT, dot_prefixes

__all__ = ["SuggestedRule", "suggest_rules"]


@dataclass(frozen=True, slots=True)
class SuggestedRule:
    agent: str
    connector: str
    action_pattern: str
    decision: str
    calls: int  # observed calls it covers
    actions: tuple[str, ...]  # observed action types it covers

    def to_dict(self) -> dict[str, object]:
        return {
            "agent": self.agent,
            "connector": self.connector,
            "action_pattern": self.action_pattern,
            "decision": self.decision,
            "calls": self.calls,
            "actions": list(self.actions),
        }


def _decision(risk: Risk | None) -> str:
    return "require_approval" if risk == "high" else "allow"


def _fold(decided: dict[str, str], catalogue: Mapping[str, Risk] | None) -> dict[str, list[str]]:
    """pattern -> the observed actions it covers."""
    out: dict[str, list[str]] = {}
    for action in sorted(decided):
        pattern = action
        if catalogue and f".{RESERVED_SEGMENT}." not in f".{action}.":
            for prefix in reversed(dot_prefixes(action)[:-1]):  # most general first
                known = [a for a in catalogue if a.startswith(prefix)]
                seen = [a for a in decided if a.startswith(prefix)]
                if (
                    known
                    and all(decided.get(a) == decided[action] for a in known)
                    and all(decided[a] == decided[action] for a in seen)
                ):
                    pattern = prefix + "*"
                    break
        out.setdefault(pattern, []).append(action)
    return out


def suggest_rules(
    agent: str,
    observed: Iterable[tuple[str, str, Risk | None]],
    catalogues: Mapping[str, Mapping[str, Risk]] | None = None,
) -> list[SuggestedRule]:
    """Rules for `agent` from observed ``(connector, action type, route risk)`` calls;
    `catalogues` maps a connector type to its known actions and their risk."""
    calls: Counter[tuple[str, str]] = Counter()
    risks: dict[tuple[str, str], Risk | None] = {}
    for connector, action, risk in observed:
        calls[connector, action] += 1
        catalogue = (catalogues or {}).get(connector) or {}
        risk = risk or catalogue.get(action)
        if risks.get((connector, action)) != "high":
            risks[connector, action] = risk
    rules: list[SuggestedRule] = []
    for connector in sorted({c for c, _ in calls}):
        decided = {a: _decision(risks[c, a]) for c, a in calls if c == connector}
        known = (catalogues or {}).get(connector)
        for pattern, actions in sorted(_fold(decided, known).items()):
            rules.append(
                SuggestedRule(
                    agent,
                    connector,
                    pattern,
                    decided[actions[0]],
                    sum(calls[connector, a] for a in actions),
                    tuple(actions),
                )
            )
    rules.append(SuggestedRule(agent, "*", "*", "deny", 0, ()))
    return rules
