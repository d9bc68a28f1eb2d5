"""The policy engine: kill switch → access rules → policies → enforcement level.

Compile once with :class:`Engine`, then call :meth:`Engine.evaluate` per action::

    engine = Engine(
        access_rules=[AccessRule("Bot", "github", "github.pr.*", "allow")],
        policies=[load_pack("github-safe-defaults")],
    )
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=datetime.now(UTC), connector="github")
    decision = engine.evaluate(spec, ctx)

:meth:`Engine.decide` takes the context's fields straight (``engine.decide(spec, agent="Bot",
mode="proxy", now=..., connector="github")``): the same decision, without building the
context when the decision is already known and no rule in play reads a context field. It
also takes the spec's JSON data (a dict), checked as ``parse_action_spec`` checks it.

The engine is pure: no I/O, no clock. See docs/policies.md for the document format.

How the parts fit, bottom-up (a module imports only from the lines below its own;
`.importlinter` holds the same order)::

    context, explain, globs,         the evaluation context; explanation steps; dotted
      regexguard, timewindow           globs; safe regexes; time windows
    fields, operators, suggest       field getters over (spec, context); condition operators
    models, permissions              the policy document; access rules and kill switches
    conditions                       rule conditions compiled to predicates
    chain                            a plan's tests compiled into one first-match function
    index, loader                    policies indexed per (agent, action); YAML -> Policy
    run, packs, schema               one policy run over a plan; bundled packs; JSON schema
    engine                           Engine: kill switch -> access -> policies -> enforcement
    unseen                           the decision for an action no rule has seen
    casefile, guard, record, replay  test cases, content guard, recorded input, replay
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfirewall._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
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
    from agentfirewall.policy.permissions import (
        AccessRule,
        KillSwitch,
        Preset,
        preset_rules,
        unreadable_switch,
    )

# Every name is loaded on first use from the module that defines it (agentfirewall._lazy).
_HOMES = {
    "engine": ("KILL_SWITCH_REASON", "NO_DENY_REASON", "Engine", "EvaluationContext", "Mode"),
    "explain": ("Explanation", "Step"),
    "loader": ("load_policy", "load_policy_file", "validate_policy_text"),
    "models": ("Policy", "Rule", "Scope"),
    "operators": ("OPERATORS",),
    "packs": ("PackInfo", "list_packs", "load_pack"),
    "permissions": ("AccessRule", "KillSwitch", "Preset", "preset_rules", "unreadable_switch"),
}
__getattr__, __dir__ = _lazy_exports(__name__, _HOMES)

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
    "unreadable_switch",
    "validate_policy_text",
]
