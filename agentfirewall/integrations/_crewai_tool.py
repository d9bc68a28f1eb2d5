"""The CrewAI tool that asks the firewall before its wrapped tool runs.

Imported only by :mod:`agentfirewall.integrations.crewai`, after it checked that crewai
is installed.

CrewAI validates a keyword call once, before the guarded tool's ``_run`` (``run`` does,
and so does the structured tool an agent calls); positional arguments are validated here.
The wrapped tool's body then runs with the arguments decided on, never validated again:
a validator that is not idempotent (dollars to cents) would otherwise make the tool run
with other values than those decided on. Those arguments are bound to the function the
wrapped tool runs (`_body`): a parameter its argument schema leaves out is decided on with
the default the function gives it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio.to_thread
from crewai.tools import BaseTool
from crewai.tools.base_tool import Tool

from agentfirewall.errors import AgentFirewallError
from agentfirewall.integrations._arguments import defaults
from agentfirewall.integrations._common import ToolGuard

__all__ = ["GuardedCrewTool", "guard_crew_tool"]


class GuardedCrewTool(BaseTool):  # type: ignore[misc]
    """A CrewAI tool whose every call first asks TameFlare.

    Every field is the wrapped tool's (name, description, argument schema,
    ``result_as_answer``, usage limit...) but ``cache_function``: its answers are never
    cached (see `_never_cache`).
    """

    inner: BaseTool
    guard: ToolGuard

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        verdict = self.guard.decide(self._decided(args, kwargs, asynchronous=False))
        if verdict.answer is not None:
            return verdict.answer
        return self.inner._run(**verdict.args)  # (an async function's coroutine: `run` runs it)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        verdict = await self.guard.adecide(self._decided(args, kwargs, asynchronous=True))
        if verdict.answer is not None:
            return verdict.answer
        if _has_async_body(self.inner):
            return await self.inner._arun(**verdict.args)
        result = await anyio.to_thread.run_sync(partial(self.inner._run, **verdict.args))
        return await result if inspect.isawaitable(result) else result

    def _decided(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, asynchronous: bool
    ) -> dict[str, Any]:
        """What the firewall decides on: the call (`_call`) and the defaults of the
        parameters of the wrapped tool's function it leaves out."""
        call = self._call(args, kwargs)
        body = _body(self.inner, asynchronous=asynchronous)
        return {**call, **defaults(body, (), call, tool=self.name)}

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


def _body(inner: BaseTool, *, asynchronous: bool) -> Callable[..., Any]:
    """The function the wrapped tool's arguments reach: a ``Tool``'s ``func``, else the
    class's own ``_arun`` under ``arun`` when it has one, else its ``_run``."""
    if isinstance(inner, Tool) and type(inner)._run is Tool._run:
        func: Callable[..., Any] = inner.func
        return func
    method: Callable[..., Any] = (
        inner._arun if asynchronous and _has_async_body(inner) else inner._run
    )
    return method


def _has_async_body(inner: BaseTool) -> bool:
    """Whether awaiting the tool's ``_arun`` runs it. CrewAI's ``Tool._arun`` calls a sync
    function and only then raises NotImplementedError: run again, the tool would act twice
    on one decision."""
    if isinstance(inner, Tool):
        return inspect.iscoroutinefunction(inner.func)
    return type(inner)._arun is not BaseTool._arun


def _never_cache(args: Any = None, result: Any = None) -> bool:
    """A guarded tool's ``cache_function``: an answer from CrewAI's tool cache would skip
    the firewall (no audit record, an allowed answer replayed after a deny or a kill)."""
    return False


def guard_crew_tool(inner: BaseTool, guard: ToolGuard) -> GuardedCrewTool:
    """Wrap one tool, keeping every field of it (what the agent sees of it, its failure
    policy and result schema, its usage limit, checked before the firewall is asked: the
    wrapped tool's own ``run`` is not called) but its ``cache_function``: never cached."""
    own = {name: getattr(inner, name) for name in BaseTool.model_fields}
    return GuardedCrewTool(**{**own, "cache_function": _never_cache}, inner=inner, guard=guard)
