"""LangChain tools checked by TameFlare: ``@firewall_tool(...)`` and ``guard_tools(...)``.

::

    from agentfirewall import AgentFirewall
    from agentfirewall.integrations.langchain import firewall_tool, guard_tools

    firewall = AgentFirewall()

    @firewall_tool(firewall, action_type="github.issue.create", provider="github",
                   target=lambda args: args["repo"], environment="production")
    def create_github_issue(repo: str, title: str, body: str) -> str:
        \"\"\"Create a GitHub issue.\"\"\"
        ...

    tools = guard_tools(toolkit.get_tools(), firewall)   # langchain.tool.<name>

On allow the tool runs (or, with ``execute=True``, the server executes the action: Mode A);
on deny the tool answers with the reason (``on_deny="raise"`` raises ActionDenied); a held
action waits up to ``approval_timeout`` seconds. Sync and async tools both work; the tool
keeps its name, description and argument schema. Needs ``pip install 'tameflare[langchain]'``.
"""

from __future__ import annotations

import inspect
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
    from langchain_core.tools import BaseTool

__all__ = ["firewall_tool", "guard_tools"]

_INSTALL = "pip install 'tameflare[langchain]'"


def _require_langchain() -> None:
    try:
        import langchain_core  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"the LangChain integration needs langchain-core: `{_INSTALL}`") from exc


def _check_tool_function(func: object) -> None:
    """What LangChain can call with a model's arguments: a function (or method) whose
    parameters all take keywords. Refused here, before any call is asked about."""
    if not inspect.isfunction(func) and not inspect.ismethod(func):
        raise TypeError(
            f"`firewall_tool` decorates a function (`def` or `async def`), not "
            f"{type(func).__name__}: wrap a functools.partial or a callable object in a `def`"
        )
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
            shown = f"*{param.name}" if param.kind == param.VAR_POSITIONAL else param.name
            raise TypeError(
                f"`{func.__name__}` has the positional-only parameter `{shown}`, which a "
                "LangChain tool never fills (it passes the model's arguments by keyword): "
                "make it an ordinary parameter"
            )


def firewall_tool(
    firewall: Firewall,
    *,
    action_type: Value = None,
    provider: Value = None,
    account: Value = None,
    target: Value = None,
    environment: Value = None,
    parameters: Callable[[ToolArgs], JsonMap] | None = None,
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None = None,
    name: str | None = None,
    description: str | None = None,
    on_deny: OnDeny = "return",
    approval_timeout: float = 300.0,
    execute: bool = False,
    format_result: Callable[[ExecutionResult], str] = str,
    return_direct: bool = False,
) -> Callable[[Callable[..., Any]], BaseTool]:
    """Decorate a function (sync or async) into a LangChain tool checked by the firewall.

    `action_type` defaults to ``langchain.tool.<name>``; each of `action_type`, `provider`,
    `account`, `target` and `environment` is a string or a function of the tool's arguments.
    `parameters` defaults to the tool's arguments.
    """
    _require_langchain()
    from langchain_core.tools import tool

    from agentfirewall.integrations._langchain_tool import guard_tool

    check_firewall(firewall, "@firewall_tool(firewall, ...)")

    def decorate(func: Callable[..., Any]) -> BaseTool:
        _check_tool_function(func)
        inner: BaseTool = tool(
            name or func.__name__, description=description, return_direct=return_direct
        )(func)
        guard = ToolGuard(
            firewall=firewall,
            action_type=action_type or tool_action_type("langchain", inner.name),
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
        return guard_tool(inner, guard)

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
    """Wrap existing LangChain tools (a toolkit's, say) with the firewall check.

    Each tool's action type is `action_type` (one string for all) or ``action_type(tool)``,
    by default ``langchain.tool.<name>``.
    """
    _require_langchain()
    from langchain_core.tools import BaseTool

    from agentfirewall.integrations._langchain_tool import guard_tool

    return guard_each(
        tools,
        "langchain",
        guard_tool,
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
