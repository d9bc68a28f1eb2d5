"""Which rules guard an agent, and which agents run with none at all.

In SDK mode an agent with no matching rule gets its ``sdk_default`` (allow unless set
otherwise): an agent no access rule and no enabled policy applies to is allowed
everything. The agent's page and ``tf status`` show such agents, and ``tf init
--safe-defaults`` / the first-run setup offer :data:`SAFE_DEFAULT_PACKS`.
"""

from __future__ import annotations

from typing import Any

from agentfirewall.policy.globs import compile_glob
from agentfirewall.policy.packs import safe_default_packs
from agentfirewall_server.snapshot import AgentRecord, Snapshot

__all__ = ["SAFE_DEFAULT_PACKS", "agents_without_rules", "rules_of"]

#: The built-in packs meant for every installation (`<provider>-safe-defaults`).
SAFE_DEFAULT_PACKS: tuple[str, ...] = safe_default_packs()


def rules_of(snapshot: Snapshot, agent: AgentRecord) -> dict[str, Any]:
    """How many access rules and enabled policies apply to `agent`; `none` when neither."""
    permissions = sum(1 for p in snapshot.permissions if p["agent"] in (agent.name, "*"))
    policies = 0
    for policy in snapshot.loaded_policies.values():
        if policy.enabled and any(
            compile_glob(g, action=False).matches(agent.name) for g in policy.scope.agents
        ):
            policies += 1
    return {
        "permissions": permissions,
        "policies": policies,
        "none": permissions == 0 and policies == 0,
    }


def agents_without_rules(snapshot: Snapshot) -> list[str]:
    """Names of active agents no rule applies to, sorted."""
    return sorted(
        a.name
        for a in snapshot.agents_by_id.values()
        if a.status == "active" and rules_of(snapshot, a)["none"]
    )
