"""Naming and deciding one client message, exactly as the gateway decides MCP over HTTP.

Names come from the mcp connector (``agentfirewall.connectors.mcp``: ``name_message`` and
``name_batch``, the one table of MCP action names); the resource target is the wrapped
server's name. Decisions come from the gateway's compiled snapshot
(:class:`~agentfirewall_proxy.snapshot.CompiledConfig`): its engine (access rules for
connector ``mcp``, policies, enforcement levels) and its kill switches, which cover this
session when they name the agent, ``mcp``, or the server name. Anything that cannot be
named or decided is a deny (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agentfirewall.actions import Risk
from agentfirewall.connectors import ParsedAction
from agentfirewall.connectors.base import make_spec
from agentfirewall.connectors.mcp import CONNECTOR, name_batch, name_message, tool_action, tool_risk
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError
from agentfirewall.policy import EvaluationContext
from agentfirewall_proxy.budgets import decided_as
from agentfirewall_proxy.scrub import Scrubber
from agentfirewall_proxy.snapshot import AgentEntry, CompiledConfig, ConnectorEntry, strictest

__all__ = ["Gate", "server_entry"]


def server_entry(server_name: str, scrubber: Scrubber | None) -> ConnectorEntry:
    """The wrapped server as the gateway's connector entry (type ``mcp``, named)."""
    return ConnectorEntry(
        id=f"stdio:{server_name}",
        type="mcp",
        name=server_name,
        domains=(),
        impl=CONNECTOR,
        base_url=None,
        has_credential=scrubber is not None,
        auth_headers=(),
        auth_header_names=frozenset(),
        body_limit=0,
        scrubber=scrubber,
    )


_NONE: Mapping[str, object] = MappingProxyType({})


def _deny(reason: str, *errors: str) -> Decision:
    return Decision("deny", reason, decided_outcome="deny", errors=errors)


@dataclass
class Gate:
    """Decides for one agent and one wrapped server; `config` is swapped on every snapshot."""

    agent_name: str
    connector: ConnectorEntry
    config: CompiledConfig | None = None
    _agent: tuple[int, AgentEntry | None] | None = None

    @property
    def server_name(self) -> str:
        return self.connector.name

    def agent(self) -> AgentEntry | None:
        """The agent by name in the current snapshot (looked up once per snapshot)."""
        config = self.config
        if config is None:
            return None
        cached = self._agent
        if cached is None or cached[0] != id(config):
            found = next((a for a in config.agents.values() if a.name == self.agent_name), None)
            cached = self._agent = (id(config), found)
        return cached[1]

    def kill_switch(self) -> str | None:
        """The reason of a kill switch covering this session, if one is active."""
        config, agent = self.config, self.agent()
        if config is None or agent is None:
            return None
        switch = config.kill_switch_for(agent, self.connector)
        return None if switch is None else (switch.reason or "kill_switch_active")

    def decide(
        self, message: Any, attributes: Mapping[str, object] = _NONE
    ) -> tuple[ParsedAction | None, Decision]:
        """Name `message` (an object or a batch) and decide it; failures deny. `attributes`
        are what policy conditions may read beyond the action (``budget.<name>.*``)."""
        config, agent = self.config, self.agent()
        if config is None:
            return None, _deny("no configuration from the control plane yet")
        try:
            if isinstance(message, list):
                parsed = self._parsed(*name_batch(message))
                members = (
                    [self._parsed(*name_message(m)) for m in message] if len(message) > 1 else []
                )
            else:
                parsed, members = self._parsed(*name_message(message)), []
        except AgentFirewallError as exc:
            return None, _deny(f"message not understood by connector `mcp`: {exc}", str(exc))
        if agent is None or agent.status != "active":  # named first: a denial, not -32600
            return parsed, _deny(f"agent `{self.agent_name}` is unknown or not active")
        switch = config.kill_switch_for(agent, self.connector)
        if switch is not None:  # (an unreadable configuration's says which and what to do)
            return parsed, Decision("deny", switch.decision_reason, decided_outcome="deny")
        actions = [parsed, *members]  # a batch: every member must pass too (as over HTTP)
        which, decision = strictest([self._evaluate(config, agent, a, attributes) for a in actions])
        # as over HTTP: the deciding action, the others in `also` (budgets count every one)
        return decided_as(replace(parsed, also=tuple(members)), which), decision

    def _parsed(self, action: str, risk: Risk, params: dict[str, Any]) -> ParsedAction:
        spec = make_spec(
            action, provider="mcp", target=self.server_name, parameters=params, connector="mcp"
        )
        return ParsedAction(spec, risk, "mcp", "jsonrpc")

    def _evaluate(
        self,
        config: CompiledConfig,
        agent: AgentEntry,
        parsed: ParsedAction,
        attributes: Mapping[str, object] = _NONE,
    ) -> Decision:
        return config.engine.evaluate(parsed.spec, self.context(agent, parsed, attributes))

    def context(
        self, agent: AgentEntry, parsed: ParsedAction, attributes: Mapping[str, object] = _NONE
    ) -> EvaluationContext:
        """What `parsed` is decided in (as the gateway's ``CompiledConfig.decide``)."""
        return EvaluationContext(
            agent=agent.name,
            mode="proxy",
            now=datetime.now(UTC),
            connector="mcp",
            enforcement_level=agent.level,
            risk=parsed.risk,
            attributes=attributes,
        )

    def stream_action(self) -> ParsedAction:
        """What a server message that answers no request is checked as: ``mcp.stream.open``,
        the action of the stream such messages come on over HTTP (the GET)."""
        return self._parsed("mcp.stream.open", "low", {})

    def tool_visible(self, name: str) -> bool:
        """Whether tools/list shows tool `name`: a call with no arguments would not be
        denied as enforced (allowed, held for approval, or only recorded as
        `would_deny`). Unnameable tools are hidden."""
        config, agent = self.config, self.agent()
        if config is None or agent is None or agent.status != "active":
            return False
        try:
            action = tool_action(name)
            parsed = self._parsed(action, tool_risk(name), {"tool": name})
        except AgentFirewallError:
            return False
        decision = self._evaluate(config, agent, parsed)
        return decision.outcome != "deny"  # monitor and soft_enforce block nothing
