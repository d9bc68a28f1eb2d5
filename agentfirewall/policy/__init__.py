"""The policy engine: kill switch → access rules → policies → enforcement level.

Compile once with :class:`Engine`, then call :meth:`Engine.evaluate` per action::

    engine = Engine(
        access_rules=[AccessRule("Bot", "github", "github.pr.*", "allow")],
        policies=[load_pack("github-safe-defaults")],
    )
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=datetime.now(UTC), connector="github")
    decision = engine.evaluate(spec, ctx)

The engine is pure: no I/O, no clock. See docs/policies.md for the document format.
"""

from __future__ import annotations

from agentfirewall.policy.engine import (
    KILL_SWITCH_REASON,
    NO_DENY_REASON,
    Engine,
    EvaluationContext,
    Mode,
)
from agentfirewall.policy.explain import Explanation, Step
from agentfirewall.policy.loader import (
    load_policy,
    load_policy_file,
    validate_policy_text,
)
from agentfirewall.policy.models import Policy, Rule, Scope
from agentfirewall.policy.operators import OPERATORS
from agentfirewall.policy.packs import PackInfo, list_packs, load_pack
from agentfirewall.policy.permissions import AccessRule, KillSwitch, Preset, preset_rules

__all__ = [
    "KILL_SWITCH_REASON",
    "NO_DENY_REASON",
    "OPERATORS",
    "AccessRule",
    "Engine",
    "EvaluationContext",
    "Explanation",
    "KillSwitch",
    "Mode",
    "PackInfo",
    "Policy",
    "Preset",
    "Rule",
    "Scope",
    "Step",
    "list_packs",
    "load_pack",
    "load_policy",
    "load_policy_file",
    "preset_rules",
    "validate_policy_text",
]
