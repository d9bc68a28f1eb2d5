"""CrewAI tools checked by TameFlare: ``@firewall_tool(...)`` and ``guard_tools(...)``.

::

    from agentfirewall import AgentFirewall
    from agentfirewall.integrations.crewai import firewall_tool, guard_tools

    firewall = AgentFirewall()

    @firewall_tool(firewall, "Send Email", action_type="email.send", provider="sendgrid",
                   target=lambda args: args["to"], environment="production")
    def send_email(to: str, subject: str, body: str) -> str:
        \"\"\"Send an email.\"\"\"
        ...

    tools = guard_tools(agent_tools, firewall)   # crewai.tool.<name>

On allow the tool runs (or, with ``execute=True``, the server executes the action: Mode A);
on deny the tool answers with the reason (``on_deny="raise"`` raises ActionDenied); a held
action waits up to ``approval_timeout`` seconds. Sync and async tools both work; the tool
keeps its name, description and argument schema. Needs ``pip install 'tameflare[crewai]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from agentfirewall.client import ExecutionResult
from agentfirewall.integrations._common import (
    Firewall,
    JsonMap,
    OnDeny,
    ToolArgs,
    ToolGuard,
    Value,
    check_firewall,
    guard_each,
    tool_action_type,
)

if TYPE_CHECKING:
    from crewai.tools import BaseTool

__all__ = ["firewall_tool", "guard_tools"]

_INSTALL = "pip install 'tameflare[crewai]'"


def _require_crewai() -> None:
    try:
        import crewai.tools  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"the CrewAI integration needs crewai: `{_INSTALL}`") from exc


def firewall_tool(
    firewall: Firewall,
    name: str | None = None,
    *,
    action_type: Value = None,
    provider: Value = None,
    account: Value = None,
    target: Value = None,
    environment: Value = None,
    parameters: Callable[[ToolArgs], JsonMap] | None = None,
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None = None,
    on_deny: OnDeny = "return",
    approval_timeout: float = 300.0,
    execute: bool = False,
    format_result: Callable[[ExecutionResult], str] = str,
    result_as_answer: bool = False,
) -> Callable[[Callable[..., Any]], BaseTool]:
    """Decorate a function (sync or async) into a CrewAI tool checked by the firewall.

    `name` is the tool's name as the agent sees it (``@tool("Send Email")``), by default
    the function's.

    `action_type` defaults to ``crewai.tool.<name>``; each of `action_type`, `provider`,
    `account`, `target` and `environment` is a string or a function of the tool's arguments.
    `parameters` defaults to the tool's arguments.
    """
    _require_crewai()
    from crewai.tools import tool

    from agentfirewall.integrations._crewai_tool import guard_crew_tool

    check_firewall(firewall, "@firewall_tool(firewall, ...)")

    def decorate(func: Callable[..., Any]) -> BaseTool:
        inner: BaseTool = tool(name or func.__name__, result_as_answer=result_as_answer)(func)
        guard = ToolGuard(
            firewall=firewall,
            action_type=action_type or tool_action_type("crewai", inner.name),
            provider=provider,
            account=account,
            target=target,
            environment=environment,
            parameters=parameters,
            risk_hints=risk_hints,
            on_deny=on_deny,
            approval_timeout=approval_timeout,
            execute=execute,
            format_result=format_result,
        )
        return guard_crew_tool(inner, guard)

    return decorate


def guard_tools(
    tools: Iterable[BaseTool],
    firewall: Firewall,
    *,
    action_type: str | Callable[[BaseTool], str] | None = None,
    provider: Value = None,
    account: Value = None,
    target: Value = None,
    environment: Value = None,
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None = None,
    on_deny: OnDeny = "return",
    approval_timeout: float = 300.0,
) -> list[BaseTool]:
    """Wrap existing CrewAI tools with the firewall check.

    Each tool's action type is `action_type` (one string for all) or ``action_type(tool)``,
    by default ``crewai.tool.<name>``.
    """
    _require_crewai()
    from crewai.tools import BaseTool

    from agentfirewall.integrations._crewai_tool import guard_crew_tool

    return guard_each(
        tools,
        "crewai",
        guard_crew_tool,
        tool_type=BaseTool,
        firewall=firewall,
        action_type=action_type,
        provider=provider,
        account=account,
        target=target,
        environment=environment,
        risk_hints=risk_hints,
        on_deny=on_deny,
        approval_timeout=approval_timeout,
    )
