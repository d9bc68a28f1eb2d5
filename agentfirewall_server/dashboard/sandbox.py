"""The sandbox's evaluation: an action spec explained for a named agent, by a signed-in person.

`POST /api/v1/actions/dry-run` needs the agent's own key; the sandbox is used by people, so
this endpoint takes a dashboard session (or admin token) with at least the viewer role and
the agent's name. It records nothing, exactly like dry-run, and answers the same shape:
`{"status", "decision", "explanation"}`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, JsonValue
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentfirewall.actions import parse_action_spec
from agentfirewall.errors import ActionSpecError
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.decide import context_for
from agentfirewall_server.web import ApiError, Strict, json_ok, read_model

__all__ = ["SandboxRequest", "evaluate"]


class SandboxRequest(Strict):
    agent: str = Field(min_length=1, max_length=200)
    action_spec: dict[str, JsonValue]
    mode: Literal["sdk", "proxy"] = "sdk"


async def evaluate(request: Request) -> JSONResponse:
    """Explain how the current configuration decides `action_spec` for `agent`."""
    await require_role(request, "viewer")
    body = await read_model(request, SandboxRequest)
    snapshot = state_of(request).snapshot
    agent = snapshot.agent(body.agent)
    if agent is None:
        raise ApiError(404, f"no agent `{body.agent}`", field="agent")
    try:
        spec = parse_action_spec(body.action_spec)
    except ActionSpecError as exc:
        field = f"action_spec.{exc.field}" if exc.field else "action_spec"
        raise ApiError(422, str(exc), field=field) from None
    context = dataclasses.replace(context_for(agent, spec), mode=body.mode)
    result = snapshot.engine.explain(spec, context)
    return json_ok(
        {
            "status": result.decision.status,
            "decision": result.decision.to_dict(),
            "explanation": [step.to_dict() for step in result.steps],
        }
    )
