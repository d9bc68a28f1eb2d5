"""The CrewAI tool that asks the firewall before its wrapped tool runs.

Imported only by :mod:`agentfirewall.integrations.crewai`, after it checked that crewai
is installed.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from crewai.tools import BaseTool

from agentfirewall.integrations._common import ToolGuard

__all__ = ["GuardedCrewTool", "guard_crew_tool"]


class GuardedCrewTool(BaseTool):  # type: ignore[misc]
    """A CrewAI tool whose every call first asks TameFlare.

    Name, description, argument schema and ``result_as_answer`` are the wrapped tool's.
    """

    inner: BaseTool
    guard: ToolGuard

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        verdict = self.guard.decide(kwargs if kwargs or not args else {"input": args[0]})
        if verdict.answer is not None:
            return verdict.answer
        return self.inner.run(*args, **kwargs)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        verdict = await self.guard.adecide(kwargs if kwargs or not args else {"input": args[0]})
        if verdict.answer is not None:
            return verdict.answer
        try:
            return await self.inner.arun(*args, **kwargs)
        except NotImplementedError:  # a sync tool: run it in a worker thread
            return await anyio.to_thread.run_sync(lambda: self.inner.run(*args, **kwargs))


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
