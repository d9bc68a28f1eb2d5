"""What the LangChain and CrewAI integrations share: asking the firewall for one tool call.

A :class:`ToolGuard` turns a tool's arguments into an action (type and resource from fixed
values or computed from the arguments), asks the firewall, waits for an approval when the
action is held, and answers with a :class:`Verdict`: run the tool with these arguments (a
copy of the ones decided on, taken when the firewall was asked), or answer the agent with
this text instead (a deny's reason, the server's execution result in Mode A). With
``on_deny="raise"`` a deny raises :class:`~agentfirewall.errors.ActionDenied` and a missing
approval :class:`~agentfirewall.errors.ApprovalError`. A call cancelled before the tool may
go ahead runs nothing, whichever client asks (see `ToolGuard.adecide`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, get_args

import anyio.lowlevel
import anyio.to_thread
from pydantic import JsonValue

from agentfirewall.client import ActionResult, AgentFirewall, AsyncAgentFirewall, ExecutionResult
from agentfirewall.client._guard import ActionFields, approval_error, approved_result, denial
from agentfirewall.client._models import ApprovalOutcome, NotApproved
from agentfirewall.errors import ActionSpecError, AgentFirewallError
from agentfirewall.integrations._arguments import snapshot

__all__ = [
    "Firewall",
    "ToolArgs",
    "ToolGuard",
    "Value",
    "Verdict",
    "check_firewall",
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """Run the tool with ``args`` (``answer is None``) or answer the agent with ``answer``."""

    answer: str | None
    result: ActionResult | None = None
    #: the arguments decided on (a copy, see `snapshot`): the tool runs with these
    args: dict[str, Any] = field(default_factory=dict)


def _computed(what: str, compute: Callable[[ToolArgs], Any], args: ToolArgs) -> Any:
    """`compute(args)`; its failure (a missing argument, say) is an ActionSpecError naming
    `what`, raised before the tool runs."""
    try:
        return compute(args)
    except Exception as exc:  # the user's function: any failure refuses the call
        raise ActionSpecError(
            f"computing `{what}` from the tool's arguments failed: {type(exc).__name__}: "
            f"{exc} (the function gets the tool's arguments as a dict; an optional one may "
            "be None)",
            field=what,
        ) from exc


def _resolve(what: str, value: Value, args: ToolArgs) -> str | None:
    if not callable(value):
        return value
    result: str | None = _computed(what, value, args)
    return result


def _mapping(what: str, value: object) -> dict[str, JsonValue] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ActionSpecError(
            f"`{what}` must be a mapping (a dict of JSON values), not {type(value).__name__}",
            field=what,
        )
    return dict(value)


def check_firewall(firewall: object, usage: str) -> None:
    """`firewall` must be a client (a common slip: ``@firewall_tool`` without arguments);
    `usage` shows where it goes, e.g. ``firewall_tool(firewall, ...)``."""
    if not isinstance(firewall, AgentFirewall | AsyncAgentFirewall):
        raise TypeError(
            f"the firewall must be an AgentFirewall or AsyncAgentFirewall, not "
            f"{type(firewall).__name__}: write `{usage}`"
        )


def _check_value(what: str, value: object, *, mapping: bool = False) -> None:
    kinds = "a mapping, a function of the tool's arguments or None" if mapping else (
        "a string, a function of the tool's arguments or None"
    )  # fmt: skip
    fixed = isinstance(value, Mapping) if mapping else isinstance(value, str)
    if value is not None and not fixed and not callable(value):
        raise TypeError(f"`{what}` must be {kinds}, not {type(value).__name__}")


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

    def __post_init__(self) -> None:
        """Every argument checked when the tool is made, not when the model first calls it."""
        check_firewall(self.firewall, "@firewall_tool(firewall, ...)")
        for what in ("action_type", "provider", "account", "target", "environment"):
            _check_value(what, getattr(self, what))
        _check_value("risk_hints", self.risk_hints, mapping=True)
        for what in ("parameters", "format_result"):
            value = getattr(self, what)
            if value is not None and not callable(value):
                raise TypeError(f"`{what}` must be a function, not {type(value).__name__}")
        if self.on_deny not in get_args(OnDeny):
            raise ValueError(f'`on_deny` must be "return" or "raise", not {self.on_deny!r}')
        timeout = self.approval_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"`approval_timeout` must be seconds, not {type(timeout).__name__}")
        if math.isnan(timeout) or timeout < 0:
            raise ValueError(f"`approval_timeout` must be at least 0 seconds, not {timeout}")

    def request(self, call: ToolArgs) -> tuple[dict[str, Any], str, ActionFields]:
        """The arguments the tool runs with (see `snapshot`), and the action type and
        request_action keywords for them."""
        args, data = snapshot(call)
        action_type = _resolve("action_type", self.action_type, args)
        if not action_type:
            raise AgentFirewallError("tool guard has no action type: pass `action_type=`")
        hints = self.risk_hints
        if callable(hints):
            hints = _computed("risk_hints", hints, args)
        parameters = (
            _computed("parameters", self.parameters, args) if self.parameters else data
        )  # fmt: skip
        fields: ActionFields = {
            "provider": _resolve("provider", self.provider, args),
            "account": _resolve("account", self.account, args),
            "target": _resolve("target", self.target, args),
            "environment": _resolve("environment", self.environment, args),
            "parameters": _mapping("parameters", parameters),
            "risk_hints": _mapping("risk_hints", hints) or None,
        }
        return args, action_type, fields

    def sync_firewall(self) -> AgentFirewall:
        """The firewall, for a synchronous call; an AsyncAgentFirewall cannot answer one."""
        if not isinstance(self.firewall, AgentFirewall):
            raise AgentFirewallError(
                "this tool was called synchronously but its firewall is an "
                "AsyncAgentFirewall: call the tool asynchronously or pass an AgentFirewall"
            )
        return self.firewall

    def decide(self, call: ToolArgs) -> Verdict:
        """Ask a synchronous firewall (see the module docstring)."""
        firewall = self.sync_firewall()
        verdict, allowed = self._ask(firewall, call, threading.Event())
        if allowed is None or not self.execute:
            return verdict
        executed = firewall.execute(allowed.action_request_id, allowed.decision_token)
        return Verdict(self.format_result(executed), allowed)

    def _ask(
        self, firewall: AgentFirewall, call: ToolArgs, abandoned: threading.Event
    ) -> tuple[Verdict, ActionResult | None]:
        """Request the action and wait for its approval (a wait that ends at its next poll
        once `abandoned` is set): the verdict, and the allowed result when the tool may go
        ahead."""
        args, action_type, fields = self.request(call)
        result = firewall.request_action(action_type, **fields)
        outcome: ApprovalOutcome | None = None
        if result.pending:  # (abandoned: not approved, whatever the server says)
            outcome = firewall._wait_for_approval(
                result.action_request_id, self.approval_timeout, abandoned
            )
        return self._judge(result, outcome, action_type, args)

    async def _ask_in_thread(
        self, firewall: AgentFirewall, call: ToolArgs
    ) -> tuple[Verdict, ActionResult | None]:
        """`_ask` in a worker thread. A cancelled caller leaves at once; the thread's answer
        is dropped (nothing it allowed runs) and its wait ends at the next poll."""
        abandoned = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                self._ask, firewall, call, abandoned, abandon_on_cancel=True
            )
        finally:
            abandoned.set()

    async def adecide(self, call: ToolArgs) -> Verdict:
        """Ask an async firewall; a sync one asks in a worker thread. A caller cancelled
        before the tool may go ahead leaves at once and nothing runs: with a sync firewall
        too, whose execution (Mode A) starts only if the caller is still there, in a thread
        of its own (once sent, it finishes)."""
        firewall = self.firewall
        if isinstance(firewall, AgentFirewall):
            verdict, allowed = await self._ask_in_thread(firewall, call)
            await anyio.lowlevel.checkpoint()  # cancelled meanwhile: nothing runs
            if allowed is None or not self.execute:
                return verdict
            executed = await anyio.to_thread.run_sync(
                firewall.execute, allowed.action_request_id, allowed.decision_token
            )
            return Verdict(self.format_result(executed), allowed)
        args, action_type, fields = self.request(call)
        result = await firewall.request_action(action_type, **fields)
        outcome: ApprovalOutcome | None = None
        if result.pending:
            outcome = await firewall.wait_for_approval(
                result.action_request_id, self.approval_timeout
            )
        verdict, allowed = self._judge(result, outcome, action_type, args)
        if allowed is None or not self.execute:
            return verdict
        executed = await firewall.execute(allowed.action_request_id, allowed.decision_token)
        return Verdict(self.format_result(executed), allowed)

    def _judge(
        self,
        result: ActionResult,
        outcome: ApprovalOutcome | None,
        action_type: str,
        args: dict[str, Any],
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
        return Verdict(None, result, args), result

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
    tool_type: type[Any],
    firewall: Firewall,
    action_type: str | Callable[[ToolT], str] | None,
    provider: Value,
    account: Value,
    target: Value,
    environment: Value,
    risk_hints: JsonMap | Callable[[ToolArgs], JsonMap] | None,
    on_deny: OnDeny,
    approval_timeout: float,
) -> list[ToolT]:
    """`guard_tools` for either framework: one ToolGuard per tool, wrapped by `wrap`.

    `action_type` is one string for every tool, or a function of the tool.
    """
    check_firewall(firewall, "guard_tools(tools, firewall, ...)")
    if isinstance(tools, tool_type | str | bytes | Mapping) or not isinstance(tools, Iterable):
        raise TypeError(
            f"`guard_tools` takes a list of tools, not {type(tools).__name__}: "
            "write `guard_tools([tool, ...], firewall)`"
        )
    tools = list(tools)
    for inner in tools:
        if not isinstance(inner, tool_type):
            raise TypeError(
                f"`guard_tools` wraps {framework} tools, not {type(inner).__name__}: "
                "decorate a plain function with `@firewall_tool(firewall, ...)` instead"
            )
    if not isinstance(action_type, str | None) and not callable(action_type):
        raise TypeError(
            "`action_type` must be a string or a function of the tool, "
            f"not {type(action_type).__name__}"
        )
    wrapped: list[ToolT] = []
    for inner in tools:
        if isinstance(action_type, str):
            kind = action_type
        elif action_type is not None:
            kind = action_type(inner)
        else:
            kind = tool_action_type(framework, inner.name)
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
