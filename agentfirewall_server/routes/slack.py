"""``POST /api/v1/integrations/slack/interactivity``: Approve / Deny button callbacks."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.approvals import decide_approval, publish_decided
from agentfirewall_server.auth import state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import GrantBody, create_grant
from agentfirewall_server.notify.slack import verify_signature
from agentfirewall_server.web import ApiError, json_ok, read_body

__all__ = ["routes"]


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (ValueError, KeyError, UnicodeDecodeError):
        raise ApiError(400, "expected a form body with a JSON `payload` field") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "`payload` must be a JSON object")
    return payload


async def interactivity(request: Request) -> JSONResponse:
    state = state_of(request)
    notifier = state.slack
    body = await read_body(request)
    secret = notifier.secret("slack_signing_secret")
    if not secret:
        raise ApiError(404, "Slack is not configured on this server")
    problem = verify_signature(
        secret,
        request.headers.get("x-slack-request-timestamp", ""),
        request.headers.get("x-slack-signature", ""),
        body,
        time.time(),
    )
    if problem:
        raise ApiError(401, problem)
    payload = _payload(body)
    actions = payload.get("actions") or []
    if payload.get("type") != "block_actions" or not actions:
        return json_ok({"ok": True, "ignored": True})
    action = actions[0]
    verb, approval_id = action.get("action_id"), str(action.get("value", ""))
    if verb not in ("approve", "approve_1h", "deny"):
        return json_ok({"ok": True, "ignored": True})
    user = payload.get("user") or {}
    who = f"slack:{user.get('username') or user.get('name') or user.get('id') or 'unknown'}"

    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        row = decide_approval(conn, approval_id, approve=verb != "deny", by=who, role="member",
                              note=None, now=stamp)  # fmt: skip
        if verb == "approve_1h":  # "Approve for 1 h": a grant of the same action
            create_grant(conn, row, _HOUR, by=who, now=stamp)
        return row

    try:
        row = await state.db.write(job)
    except ApiError as exc:
        return json_ok({"ok": False, "response_type": "ephemeral", "text": exc.message})
    await publish_decided(state, [row])
    return json_ok({"ok": True, "status": row["status"]})


_HOUR = GrantBody(for_seconds=3600)


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/integrations/slack/interactivity", interactivity, methods=["POST"])]
