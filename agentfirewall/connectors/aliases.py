"""Action-name aliases for access rules: a rule on either spelling matches.

The generic connector names its actions ``http.<method>`` while the seed's rules say
``generic.get``. The registry declares the spellings (:func:`action_aliases`: ``http.get``
<-> ``generic.get``); each access rule is compiled once per spelling of its pattern, so the
engine's most-specific-wins lookup is unchanged and costs nothing more per request.

Every engine built from access rules compiles them through :func:`alias_rules`: the
gateway's, the control plane's (SDK decisions, dry runs, replay, shadow mode), `tf policy
explain`'s and ``agentfirewall.testing``'s, so a rule means the same wherever it is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from agentfirewall.connectors.registry import action_aliases
from agentfirewall.policy import AccessRule

__all__ = ["alias_rules"]


def alias_rules(rules: Iterable[AccessRule]) -> list[AccessRule]:
    """`rules` plus a copy of each rule under every alias of its pattern."""
    out = list(rules)
    seen = {(r.agent, r.connector, r.action_pattern) for r in out}
    for rule in list(out):
        for pattern in action_aliases(rule.action_pattern):
            key = (rule.agent, rule.connector, pattern)
            if key not in seen:
                seen.add(key)
                out.append(replace(rule, action_pattern=pattern))
    return out
