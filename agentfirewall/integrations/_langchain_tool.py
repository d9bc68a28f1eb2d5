"""The LangChain tool that asks the firewall before its wrapped tool runs.

Imported only by :mod:`agentfirewall.integrations.langchain`, after it checked that
langchain-core is installed.

The guarded tool's own ``run`` does LangChain's work once: it validates the input (see
`_call_input`), calls the callbacks, formats a tool message (an artifact too) and handles
the tool's errors as the wrapped tool says. Its ``_run`` asks the firewall and calls the
wrapped tool's ``_run`` (or ``_arun``), as LangChain's ``run`` would, with the arguments
decided on, never validated again: a validator that is not idempotent (dollars to cents)
would otherwise make the tool run with other values than those decided on. The arguments
decided on are bound to the function the wrapped tool runs (`_body`): a parameter the
model left out is decided on with the default the function would give it. Injected
arguments (LangGraph's state and store, a tool call's id), which the model never sees,
are not decided on: the wrapped tool gets them as they were given.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from functools import cache
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool, Tool
from langchain_core.tools.base import (
    _get_runnable_config_param,
    _is_injected_arg_type,
    get_all_basemodel_annotations,
)
from langchain_core.utils.pydantic import get_fields
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from agentfirewall.errors import AgentFirewallError
from agentfirewall.integrations._arguments import defaults
from agentfirewall.integrations._common import ToolGuard

__all__ = ["GuardedTool", "guard_tool"]

Schema = type[BaseModel | BaseModelV1]


def _check_sync(inner: BaseTool) -> None:
    """A tool with no sync body: say so before asking the firewall (the action would be
    recorded, perhaps approved, and then fail to run). One made from an ``async def`` has
    no ``func``; a class of its own with an ``_arun`` says so by a ``_run`` that only
    raises NotImplementedError (LangChain cannot tell either, until it runs)."""
    if getattr(inner, "func", True) is None or _async_only(type(inner)):
        raise AgentFirewallError(
            f"tool `{inner.name}` runs only asynchronously: call it with `ainvoke`, not `invoke`"
        )


@cache
def _async_only(kind: type[BaseTool]) -> bool:
    """Whether the class has an ``_arun`` of its own and a ``_run`` whose body only raises
    NotImplementedError."""
    if kind._arun is BaseTool._arun:
        return False
    try:
        [run] = ast.parse(textwrap.dedent(inspect.getsource(kind._run))).body
    except (OSError, TypeError, ValueError, SyntaxError):  # no source to read: let it run
        return False
    # (a docstring or a `...` aside)
    body = [line for line in getattr(run, "body", []) if not isinstance(line, ast.Expr)]
    match body:
        case [ast.Raise(exc=ast.Call(func=ast.Name(id="NotImplementedError")))]:
            return True
        case [ast.Raise(exc=ast.Name(id="NotImplementedError"))]:
            return True
        case _:
            return False


def _schema(inner: BaseTool) -> Schema | None:
    """The tool's pydantic argument schema; None without one or with a JSON-schema dict
    (LangChain validates nothing then)."""
    schema = inner.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel | BaseModelV1):
        return schema
    return None


def _injected(inner: BaseTool) -> frozenset[str]:
    """The tool's injected arguments (LangGraph's state and store, a tool call's id: any
    InjectedToolArg), which the model never sees: those of its schema, or of the one
    LangChain infers from its ``_run``."""
    if isinstance(inner.args_schema, dict):
        return frozenset()
    schema = inner.get_input_schema()
    return frozenset(
        name
        for name, kind in get_all_basemodel_annotations(schema).items()
        if _is_injected_arg_type(kind)
    )


def _tool_call_ids(schema: Schema, tool_call_id: str | None) -> dict[str, str | None]:
    """The schema's InjectedToolCallId arguments, given the tool call's id, as LangChain
    fills them (its error when the tool was not invoked with a whole tool call)."""
    names = [
        name
        for name, kind in get_all_basemodel_annotations(schema).items()
        if _is_injected_arg_type(kind, injected_type=InjectedToolCallId)
    ]
    if names and tool_call_id is None:
        raise ValueError(
            "When tool includes an InjectedToolCallId argument, tool must always be invoked "
            "with a full model ToolCall of the form: {'args': {...}, 'name': '...', "
            "'type': 'tool_call', 'tool_call_id': '...'}"
        )
    return dict.fromkeys(names, tool_call_id)


def _call_input(
    inner: BaseTool, tool_input: str | dict[str, Any], tool_call_id: str | None
) -> str | dict[str, Any]:
    """The input the wrapped tool runs with, validated once, so that the firewall decides
    on exactly that: with a pydantic argument schema, the arguments validated by it, every
    field present, defaults included (LangChain would pass only the given ones), a single
    string as the schema's first field (LangChain's rule for a string input), the tool
    call's id in an InjectedToolCallId argument. Otherwise the input as given. (`_decided`
    then adds the defaults of the function's parameters the input leaves out.)"""
    schema = _schema(inner)
    if schema is None:
        return tool_input
    fields = list(get_fields(schema))
    if isinstance(tool_input, str):
        if not fields:
            return tool_input
        tool_input = {fields[0]: tool_input}
    tool_input = {**tool_input, **_tool_call_ids(schema, tool_call_id)}
    if issubclass(schema, BaseModel):
        model: Any = schema.model_validate(tool_input)
    else:
        model = schema.parse_obj(tool_input)
    return {name: getattr(model, name) for name in fields}


_TOOL_RUNS = (Tool._run, StructuredTool._run)
_TOOL_ARUNS = (Tool._arun, StructuredTool._arun)


def _body(inner: BaseTool, *, asynchronous: bool) -> Callable[..., Any]:
    """The function the wrapped tool's arguments reach, as LangChain runs it: a ``Tool``'s
    or ``StructuredTool``'s ``func`` (its ``coroutine`` under ``ainvoke``, when it has
    one), else the class's own ``_run`` (its ``_arun`` under ``ainvoke``, when it has one:
    without, LangChain runs ``_run`` in a thread)."""
    kind = type(inner)
    if asynchronous and kind._arun is not BaseTool._arun:
        if kind._arun not in _TOOL_ARUNS:
            return inner._arun
        if isinstance(inner, Tool | StructuredTool) and inner.coroutine is not None:
            return inner.coroutine
    if isinstance(inner, Tool | StructuredTool) and kind._run in _TOOL_RUNS and inner.func:
        return inner.func
    return inner._run


def _not_arguments(body: Callable[..., Any]) -> frozenset[str]:
    """What LangChain gives a body besides the model's arguments: never decided on."""
    config = _get_runnable_config_param(body)
    return frozenset({"run_manager", "callbacks", *([config] if config else [])})


def _decided(
    inner: BaseTool, body: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """What the firewall decides on: the arguments `body` runs with, the defaults of the
    parameters they leave out included. The one input LangChain passes positionally (a
    string input, a ``Tool``'s value) under its name, returned first: the ``Tool``'s
    schema's one field (the name the model sees), else ``input``. Otherwise the keyword
    arguments but the injected ones, returned last: passed to the tool as given, never
    decided on (a conversation has no place in an audit log)."""
    skip = _not_arguments(body)
    if not args:
        injected = _injected(inner)
        decided = {name: value for name, value in kwargs.items() if name not in injected}
        filled = defaults(body, (), kwargs, tool=inner.name, skip=skip | injected)
        given = {name: kwargs[name] for name in kwargs.keys() & injected}
        return None, {**decided, **filled}, given
    if len(args) > 1 or kwargs:
        raise AgentFirewallError(
            f"tool `{inner.name}` was called in a way LangChain never calls it"
        )
    schema = _schema(inner)
    fields = list(get_fields(schema)) if schema is not None else []
    name = fields[0] if len(fields) == 1 else "input"
    filled = defaults(body, args, {}, tool=inner.name, skip=skip)
    if name in filled:  # (its input and another parameter would share one name)
        raise AgentFirewallError(
            f"tool `{inner.name}`'s function has a parameter `{name}` besides its input, "
            "which the firewall reads under that name: rename the parameter"
        )
    return name, {name: args[0], **filled}, {}


def _body_args(
    positional: str | None, decided: dict[str, Any], given: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional input first (a ``Tool``'s), then the rest by keyword."""
    if positional is None:
        return (), {**decided, **given}
    rest = {name: value for name, value in decided.items() if name != positional}
    return (decided[positional],), rest


def _extras(
    body: Callable[..., Any],
    config: RunnableConfig,
    run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
) -> dict[str, Any]:
    """What LangChain's ``run`` gives a tool's body besides its arguments: the run manager
    and the config, to a body that takes them."""
    extras: dict[str, Any] = {}
    if inspect.signature(body).parameters.get("run_manager"):
        extras["run_manager"] = run_manager
    if name := _get_runnable_config_param(body):
        extras[name] = config
    return extras


class GuardedTool(BaseTool):
    """A LangChain tool whose every call first asks TameFlare.

    It is the wrapped tool to the model and to LangChain: every field of the wrapped tool is
    its own (name, description, argument schema, ``return_direct``, ``response_format``,
    error handling, callbacks).
    """

    inner: BaseTool
    guard: ToolGuard

    def _parse_input(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> str | dict[str, Any]:
        return _call_input(self.inner, tool_input, tool_call_id)

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        # (without an args_schema LangChain reads a tool's arguments off its `_run`: the
        # wrapped tool's, so that the model sees the schema it sees unwrapped)
        return self.inner.get_input_schema(config)

    def _answer(self, answer: str) -> Any:
        """A refusal, shaped as the tool's own answers."""
        return (answer, None) if self.response_format == "content_and_artifact" else answer

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        self.guard.sync_firewall()
        _check_sync(self.inner)
        body = _body(self.inner, asynchronous=False)
        positional, decided, given = _decided(self.inner, body, args, kwargs)
        verdict = self.guard.decide(decided)
        if verdict.answer is not None:
            return self._answer(verdict.answer)
        method = self.inner._run
        args, kwargs = _body_args(positional, verdict.args, given)
        return method(*args, **kwargs, **_extras(method, config, run_manager))

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        body = _body(self.inner, asynchronous=True)
        positional, decided, given = _decided(self.inner, body, args, kwargs)
        verdict = await self.guard.adecide(decided)
        if verdict.answer is not None:
            return self._answer(verdict.answer)
        inner = self.inner
        # LangChain's own choice: without an async body, `_arun` runs `_run` in a thread
        method = inner._run if type(inner)._arun is BaseTool._arun else inner._arun
        args, kwargs = _body_args(positional, verdict.args, given)
        return await inner._arun(*args, **kwargs, **_extras(method, config, run_manager))


class GuardedSimpleTool(GuardedTool, Tool):
    """A ``Tool`` stays a ``Tool`` (its one input passed positionally, with or without an
    argument schema): models see it as LangChain shows those."""

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        # (Tool's would run a tool without a coroutine synchronously: the firewall is awaited)
        return await BaseTool.ainvoke(self, input, config, **kwargs)


def guard_tool(inner: BaseTool, guard: ToolGuard) -> BaseTool:
    """Wrap one tool, keeping every field of it (what the model sees and how it runs)."""
    own = {name: getattr(inner, name) for name in BaseTool.model_fields}
    if isinstance(inner, Tool):
        return GuardedSimpleTool(
            **own, func=inner.func, coroutine=inner.coroutine, inner=inner, guard=guard
        )
    return GuardedTool(**own, inner=inner, guard=guard)
