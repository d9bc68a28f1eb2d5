"""The LangChain tool that asks the firewall before its wrapped tool runs.

Imported only by :mod:`agentfirewall.integrations.langchain`, after it checked that
langchain-core is installed.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForToolRun,
    CallbackManagerForToolRun,
    Callbacks,
)
from langchain_core.tools import BaseTool, Tool
from langchain_core.utils.pydantic import get_fields
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from agentfirewall.errors import AgentFirewallError
from agentfirewall.integrations._common import ToolGuard

__all__ = ["GuardedTool", "guard_tool"]


def _check_sync(inner: BaseTool) -> None:
    """A tool made from an ``async def`` has no sync body: say so before asking the firewall
    (the action would be recorded, perhaps approved, and then fail to run)."""
    if getattr(inner, "func", True) is None:
        raise AgentFirewallError(
            f"tool `{inner.name}` is an `async def`: call it with `ainvoke`, not `invoke`"
        )


def _tool_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | dict[str, Any]:
    """What the wrapped tool is called with: its keyword arguments, or a single string."""
    if kwargs or not args:
        return kwargs
    return args[0] if len(args) == 1 and isinstance(args[0], str) else {"args": list(args)}


def _call_input(inner: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The whole input the wrapped tool runs with, so that the firewall decides on exactly
    that: with a pydantic argument schema, the arguments validated by it, every field
    present, defaults included (LangChain would pass only the given ones and leave the
    function's defaults unseen), and a single string as the schema's first field
    (LangChain's rule for a string input). Otherwise the input as given."""
    tool_input = _tool_input(args, kwargs)
    schema = inner.args_schema
    if not isinstance(schema, type) or not issubclass(schema, BaseModel | BaseModelV1):
        return tool_input  # no schema, or a JSON schema dict: LangChain validates nothing
    fields = list(get_fields(schema))
    if isinstance(tool_input, str):
        if not fields:
            return tool_input
        tool_input = {fields[0]: tool_input}
    if issubclass(schema, BaseModel):
        model: Any = schema.model_validate(tool_input)
    else:
        model = schema.parse_obj(tool_input)
    return {name: getattr(model, name) for name in fields}


def _firewall_args(tool_input: str | dict[str, Any]) -> dict[str, Any]:
    return tool_input if isinstance(tool_input, dict) else {"input": tool_input}


class GuardedTool(BaseTool):
    """A LangChain tool whose every call first asks TameFlare.

    Name, description, argument schema and ``return_direct`` are the wrapped tool's.
    """

    inner: BaseTool
    guard: ToolGuard

    def _run(
        self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        self.guard.sync_firewall()
        _check_sync(self.inner)
        tool_input = _call_input(self.inner, args, kwargs)
        verdict = self.guard.decide(_firewall_args(tool_input))
        if verdict.answer is not None:
            return verdict.answer
        callbacks = run_manager.get_child() if run_manager else None
        return self.inner.run(tool_input, callbacks=callbacks)

    async def _arun(
        self,
        *args: Any,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        tool_input = _call_input(self.inner, args, kwargs)
        verdict = await self.guard.adecide(_firewall_args(tool_input))
        if verdict.answer is not None:
            return verdict.answer
        callbacks = run_manager.get_child() if run_manager else None
        return await self.inner.arun(tool_input, callbacks=callbacks)


def _guard_simple(inner: Tool, guard: ToolGuard) -> Tool:
    """A single-string tool stays a ``Tool``: models see it as LangChain shows simple tools."""

    def run(tool_input: str, callbacks: Callbacks = None) -> Any:
        guard.sync_firewall()
        _check_sync(inner)
        verdict = guard.decide({"input": tool_input})
        if verdict.answer is not None:
            return verdict.answer
        return inner.run(tool_input, callbacks=callbacks)

    async def arun(tool_input: str, callbacks: Callbacks = None) -> Any:
        verdict = await guard.adecide({"input": tool_input})
        if verdict.answer is not None:
            return verdict.answer
        return await inner.arun(tool_input, callbacks=callbacks)

    return Tool(
        name=inner.name,
        description=inner.description,
        func=run,
        coroutine=arun,
        return_direct=inner.return_direct,
    )


def guard_tool(inner: BaseTool, guard: ToolGuard) -> BaseTool:
    """Wrap one tool, keeping what the model sees of it."""
    if isinstance(inner, Tool) and inner.args_schema is None:
        return _guard_simple(inner, guard)
    return GuardedTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        return_direct=inner.return_direct,
        inner=inner,
        guard=guard,
    )
