"""The sandbox's evaluation: an action spec explained for a named agent, by a signed-in person.

`POST /api/v1/actions/dry-run` needs the agent's own key; the sandbox is used by people, so
this endpoint takes a dashboard session (or admin token) with at least the viewer role and
the agent's name. It records nothing, exactly like dry-run, and answers the same shape:
`{"status", "decision", "explanation"}`.

In ``sdk`` mode the answer is dry-run's (``decide.explain``): budgets read and applied
(what a budget or grant would make of the decision now, a ``budgets`` step saying which),
the action's strings scanned when a policy reads ``content.*``, a ``redact`` rule refusing,
build aliases. In ``proxy`` mode the gateway would scan the request's body: the spec's
strings are scanned the same way (as in SDK mode), read by the same context, and the
decision stands with where the detectors fired in its reason (the gateway redacts what a
``redact`` rule matched; a build alias is the SDK's). Budgets then apply as at the gateway
(``decide.with_budgets`` with the action's own name and parameters, as the gateway names
the request): a spent ``deny`` budget refuses, a ``require_approval`` one holds, a grant
lets a held request through. A grant made on a gateway request is bound to that request's
host: with ``url`` (proxy mode only: the URL the request goes to) the grants bound to its
host are read as the gateway reads them (the host lower-cased, a trailing dot dropped);
without it the sandbox knows no host, and only grants made on SDK actions are read.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, JsonValue
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors.model import HttpRequest
from agentfirewall.content import describe
from agentfirewall.errors import ActionSpecError, ConnectorError
from agentfirewall.policy import Explanation
from agentfirewall.policy.replay import with_findings
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.decide import explain, sdk_context, with_budgets
from agentfirewall_server.snapshot import AgentRecord
from agentfirewall_server.state import AppState
from agentfirewall_server.web import ApiError, Strict, json_ok, read_model

__all__ = ["SandboxRequest", "evaluate"]


class SandboxRequest(Strict):
    agent: str = Field(min_length=1, max_length=200)
    action_spec: dict[str, JsonValue]
    mode: Literal["sdk", "proxy"] = "sdk"
    #: proxy mode: the URL the request goes to through the gateway (grants bound to its host)
    url: str | None = Field(default=None, min_length=1, max_length=8192)


async def evaluate(request: Request) -> JSONResponse:
    """Explain how the current configuration decides `action_spec` for `agent`."""
    await require_role(request, "viewer")
    body = await read_model(request, SandboxRequest)
    state = state_of(request)
    agent = state.snapshot.agent(body.agent)
    if agent is None:
        raise ApiError(404, f"no agent `{body.agent}`", field="agent")
    try:
        spec = parse_action_spec(body.action_spec)
    except ActionSpecError as exc:
        field = f"action_spec.{exc.field}" if exc.field else "action_spec"
        raise ApiError(422, str(exc), field=field) from None
    if body.mode == "sdk":
        if body.url is not None:
            raise ApiError(422, "`url` applies to proxy mode only: an SDK action is sent "
                           "to no host of its own", field="url")  # fmt: skip
        result = await explain(state, agent, spec)
    else:
        host = None if body.url is None else _host(body.url)
        result = await _proxy(state, agent, spec, host)
    return json_ok(
        {
            "status": result.decision.status,
            "decision": result.decision.to_dict(),
            "explanation": [step.to_dict() for step in result.steps],
        }
    )


def _host(url: str) -> str:
    """The host of the request's URL, as the gateway reads it (lower-cased, no brackets)."""
    try:
        return HttpRequest.from_url("GET", url).host
    except ConnectorError as exc:
        raise ApiError(422, str(exc), field="url") from None


async def _proxy(
    state: AppState, agent: AgentRecord, spec: ActionSpec, host: str | None
) -> Explanation:
    """The explanation in proxy mode (the module docstring)."""
    ctx, found = await sdk_context(state, agent, spec)
    ctx = dataclasses.replace(ctx, mode="proxy")
    result = state.snapshot.engine.explain(spec, ctx)
    mine = with_findings(ctx, state.snapshot.guard, found)[1]
    if mine:
        reason = f"{result.decision.reason}; content: {describe(mine)}"
        decision = dataclasses.replace(result.decision, reason=reason)
        result = dataclasses.replace(result, decision=decision)
    return await with_budgets(state, agent, spec, result, gateway=True, host=host)
