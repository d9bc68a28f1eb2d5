"""The CrewAI tool that asks the firewall before its wrapped tool runs.

Imported only by :mod:`agentfirewall.integrations.crewai`, after it checked that crewai
is installed.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from crewai.tools import BaseTool

from agentfirewall.errors import AgentFirewallError
from agentfirewall.integrations._common import ToolGuard

__all__ = ["GuardedCrewTool", "guard_crew_tool"]


class GuardedCrewTool(BaseTool):  # type: ignore[misc]
    """A CrewAI tool whose every call first asks TameFlare.

    Name, description, argument schema and ``result_as_answer`` are the wrapped tool's.
    """

    inner: BaseTool
    guard: ToolGuard

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        call = self._call(args, kwargs)
        verdict = self.guard.decide(call)
        if verdict.answer is not None:
            return verdict.answer
        return self.inner.run(**call)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        call = self._call(args, kwargs)
        verdict = await self.guard.adecide(call)
        if verdict.answer is not None:
            return verdict.answer
        try:
            return await self.inner.arun(**call)
        except NotImplementedError:  # a sync tool: run it in a worker thread
            return await anyio.to_thread.run_sync(lambda: self.inner.run(**call))

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments the wrapped tool runs with, all of them, so that the
        firewall decides on exactly those: positional arguments bound to the argument
        schema's fields in order (CrewAI's ``run`` validates only keyword calls), then
        validated with the defaults filled in, as CrewAI validates a keyword call."""
        if not args:
            return kwargs  # (``run`` validated them, defaults included)
        fields = list(self.args_schema.model_fields) if self.args_schema is not None else []
        if len(args) > len(fields) or set(fields[: len(args)]) & kwargs.keys():
            raise AgentFirewallError(
                f"tool `{self.name}` was given {len(args)} positional argument(s) that do not "
                f"bind to its fields {fields}: call it with keyword arguments"
            )
        call = {**dict(zip(fields, args, strict=False)), **kwargs}
        if not fields:
            return call
        validated: dict[str, Any] = self.args_schema.model_validate(call).model_dump()
        return validated


def guard_crew_tool(inner: BaseTool, guard: ToolGuard) -> GuardedCrewTool:
    """Wrap one tool, keeping what the agent sees of it."""
    return GuardedCrewTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        result_as_answer=inner.result_as_answer,
        inner=inner,
        guard=guard,
    )
