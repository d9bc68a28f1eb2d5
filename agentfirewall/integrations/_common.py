"""What the LangChain and CrewAI integrations share: asking the firewall for one tool call.

A :class:`ToolGuard` turns a tool's arguments into an action (type and resource from fixed
values or computed from the arguments), asks the firewall, waits for an approval when the
action is held, and answers with a :class:`Verdict`: run the tool, or answer the agent with
this text instead (a deny's reason, the server's execution result in Mode A). With
``on_deny="raise"`` a deny raises :class:`~agentfirewall.errors.ActionDenied` and a missing
approval :class:`~agentfirewall.errors.ApprovalError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import anyio.to_thread
from pydantic import JsonValue

from agentfirewall.client import ActionResult, AgentFirewall, AsyncAgentFirewall, ExecutionResult
from agentfirewall.client._guard import ActionFields, approval_error, approved_result, denial
from agentfirewall.client._models import ApprovalOutcome, NotApproved
from agentfirewall.errors import AgentFirewallError

__all__ = [
    "Firewall",
    "ToolArgs",
    "ToolGuard",
    "Value",
    "Verdict",
    "guard_each",
    "tool_action_type",
]

ToolArgs = Mapping[str, Any]
#: A fixed value, or one computed from the tool's arguments.
Value = str | Callable[[ToolArgs], str | None] | None
JsonMap = Mapping[str, JsonValue]
Firewall = AgentFirewall | AsyncAgentFirewall
OnDeny = Literal["return", "raise"]

_NOT_SEGMENT = re.compile(r"[^a-z0-9_-]+")


def tool_action_type(framework: str, tool_name: str) -> str:
    """``langchain.tool.<name>``, the name lowercased and made a valid segment."""
    segment = _NOT_SEGMENT.sub("_", tool_name.lower()).strip("_-")[:63] or "tool"
    return f"{framework}.tool.{segment}"


def _json_args(args: ToolArgs) -> dict[str, JsonValue]:
    """The tool's arguments as JSON data (anything else becomes its string form)."""
    data: dict[str, JsonValue] = json.loads(json.dumps(dict(args), default=str))
    return data


@dataclass(frozen=True, slots=True)
class Verdict:
    """Run the tool (``answer is None``) or answer the agent with ``answer``."""

    answer: str | None
    result: ActionResult | None = None


def _resolve(value: Value, args: ToolArgs) -> str | None:
    return value(args) if callable(value) else value


@dataclass(frozen=True, slots=True)
class ToolGuard:
    """How one tool's calls become firewall requests, and what a refusal looks like."""

    firewall: Firewall
    action_type: Value
    provider: Value = None
    account: Value = None
    target: Value = None
    environment: Value = None
    parameters: Callable[[ToolArgs], JsonMap] | None = None
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None = None
    on_deny: OnDeny = "return"
    approval_timeout: float = 300.0
    execute: bool = False
    format_result: Callable[[ExecutionResult], str] = str

    def request(self, args: ToolArgs) -> tuple[str, ActionFields]:
        """The action type and request_action keywords for one call."""
        action_type = _resolve(self.action_type, args)
        if not action_type:
            raise AgentFirewallError("tool guard has no action type: pass `action_type=`")
        hints = self.risk_hints(args) if callable(self.risk_hints) else self.risk_hints
        fields: ActionFields = {
            "provider": _resolve(self.provider, args),
            "account": _resolve(self.account, args),
            "target": _resolve(self.target, args),
            "environment": _resolve(self.environment, args),
            "parameters": dict(self.parameters(args)) if self.parameters else _json_args(args),
            "risk_hints": dict(hints) if hints else None,
        }
        return action_type, fields

    def decide(self, args: ToolArgs) -> Verdict:
        """Ask a synchronous firewall (see the module docstring)."""
        firewall = self.firewall
        if not isinstance(firewall, AgentFirewall):
            raise AgentFirewallError(
                "this tool was called synchronously but its firewall is an "
                "AsyncAgentFirewall: call the tool asynchronously or pass an AgentFirewall"
            )
        action_type, fields = self.request(args)
        result = firewall.request_action(action_type, **fields)
        outcome: ApprovalOutcome | None = None
        if result.pending:
            outcome = firewall.wait_for_approval(result.action_request_id, self.approval_timeout)
        verdict, allowed = self._judge(result, outcome, action_type)
        if allowed is None or not self.execute:
            return verdict
        assert allowed.decision_token is not None
        executed = firewall.execute(allowed.action_request_id, allowed.decision_token)
        return Verdict(self.format_result(executed), allowed)

    async def adecide(self, args: ToolArgs) -> Verdict:
        """Ask an async firewall; a sync one runs in a worker thread."""
        firewall = self.firewall
        if isinstance(firewall, AgentFirewall):
            return await anyio.to_thread.run_sync(self.decide, args)
        action_type, fields = self.request(args)
        result = await firewall.request_action(action_type, **fields)
        outcome: ApprovalOutcome | None = None
        if result.pending:
            outcome = await firewall.wait_for_approval(
                result.action_request_id, self.approval_timeout
            )
        verdict, allowed = self._judge(result, outcome, action_type)
        if allowed is None or not self.execute:
            return verdict
        assert allowed.decision_token is not None
        executed = await firewall.execute(allowed.action_request_id, allowed.decision_token)
        return Verdict(self.format_result(executed), allowed)

    def _judge(
        self, result: ActionResult, outcome: ApprovalOutcome | None, action_type: str
    ) -> tuple[Verdict, ActionResult | None]:
        """The verdict, and the allowed result when the tool may go ahead."""
        if result.denied:
            if self.on_deny == "raise":
                raise denial(result, action_type)
            return Verdict(f"Action blocked by policy: {result.decision.reason}", result), None
        if outcome is not None and not outcome:
            return self._not_approved(outcome, result), None
        if outcome:
            result = approved_result(result, outcome)
        return Verdict(None, result), result

    def _not_approved(self, outcome: NotApproved, result: ActionResult) -> Verdict:
        if self.on_deny == "raise":
            raise approval_error(outcome)
        reason = f": {outcome.reason}" if outcome.reason else ""
        return Verdict(f"Action not approved ({outcome.status}){reason}", result)


class _NamedTool(Protocol):
    @property
    def name(self) -> str: ...


ToolT = TypeVar("ToolT", bound=_NamedTool)


def guard_each(
    tools: Iterable[ToolT],
    framework: str,
    wrap: Callable[[ToolT, ToolGuard], ToolT],
    *,
    firewall: Firewall,
    action_type: Callable[[ToolT], str] | None,
    provider: Value,
    account: Value,
    target: Value,
    environment: Value,
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None,
    on_deny: OnDeny,
    approval_timeout: float,
) -> list[ToolT]:
    """`guard_tools` for either framework: one ToolGuard per tool, wrapped by `wrap`."""
    wrapped: list[ToolT] = []
    for inner in tools:
        kind = action_type(inner) if action_type else tool_action_type(framework, inner.name)
        guard = ToolGuard(
            firewall=firewall,
            action_type=kind,
            provider=provider,
            account=account,
            target=target,
            environment=environment,
            risk_hints=risk_hints,
            on_deny=on_deny,
            approval_timeout=approval_timeout,
        )
        wrapped.append(wrap(inner, guard))
    return wrapped
