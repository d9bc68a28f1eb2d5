"""``POST /api/v1/integrations/slack/interactivity``: Approve / Deny button callbacks.

A click counts only when it is signed with the signing secret (``notify/slack.py``) and
comes from a Slack member an owner linked to a TameFlare user (the ``slack_approvers``
setting, member id -> email): the click then acts as that user, with the user's current
role, so an approval that requires admin needs a linked admin, a viewer can approve
nothing, and anyone else in the channel (a guest, a Slack Connect partner, a viewer)
is answered privately and changes nothing. The link is read again from the store in the
click's transaction (another replica may have removed it), and an "Approve for 1 h" grant
is bound to that Slack member: removing or repointing the link ends it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.approvals import decide_approval, publish_decided
from agentfirewall_server.auth import state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import GrantBody, GrantMaker, create_grant, slack_links
from agentfirewall_server.notify.slack import verify_signature
from agentfirewall_server.store.schema import users
from agentfirewall_server.web import ApiError, json_ok, read_body

__all__ = ["routes"]

log = logging.getLogger("agentfirewall_server.slack")


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (ValueError, KeyError, RecursionError):  # UnicodeDecodeError is a ValueError
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
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if payload.get("type") != "block_actions" or not isinstance(action, dict):
        return json_ok({"ok": True, "ignored": True})
    verb, approval_id = action.get("action_id"), str(action.get("value", ""))
    if verb not in ("approve", "approve_1h", "deny"):
        return json_ok({"ok": True, "ignored": True})
    user = payload.get("user")
    member = user.get("id") if isinstance(user, dict) else None
    approvers = state.snapshot.settings.get("slack_approvers") or {}
    email = approvers.get(member) if isinstance(member, str) else None
    if not isinstance(email, str):
        log.warning("Slack member %r clicked %s on %s: not a linked approver", member, verb,
                    approval_id)  # fmt: skip
        return _ephemeral(
            f"your Slack account (`{member}`) is not linked to a TameFlare user: an owner "
            "adds it in the dashboard (Settings, Integrations, Slack approvers) or with "
            "`slack_approvers` in PATCH /api/v1/settings"
        )

    def job(conn: Connection) -> dict[str, Any]:
        stamp = now()
        uid, role = _linked_user(conn, str(member), email)
        maker = GrantMaker.in_slack(f"slack:{email}", uid, str(member))
        row = decide_approval(conn, approval_id, approve=verb != "deny", by=maker.actor,
                              role=role, note=None, now=stamp)  # fmt: skip
        if verb == "approve_1h":  # "Approve for 1 h": a grant of the same action
            create_grant(conn, row, _HOUR, maker=maker, role=role, now=stamp)
        return row

    try:
        row = await state.db.write(job)
    except ApiError as exc:
        return _ephemeral(exc.message)
    await publish_decided(state, [row])
    return json_ok({"ok": True, "status": row["status"]})


def _linked_user(conn: Connection, member: str, email: str) -> tuple[str, str]:
    """(id, role) of the user `email` the Slack `member` acts as, read in the click's
    transaction: 403 when the store no longer links them (removed on another replica) or
    the user is gone."""
    if slack_links(conn).get(member) != email:
        raise ApiError(403, f"your Slack account (`{member}`) is no longer linked to "
                       f"`{email}`: an owner links it again in the dashboard (Settings, "
                       "Integrations, Slack approvers)")  # fmt: skip
    found = conn.execute(select(users.c.id, users.c.role).where(users.c.email == email)).first()
    if found is None:
        raise ApiError(403, f"the TameFlare user `{email}` linked to your Slack account "
                       "no longer exists")  # fmt: skip
    return str(found.id), str(found.role)


def _ephemeral(text: str) -> JSONResponse:
    """A refusal Slack shows only to the member who clicked (the click is answered 200)."""
    return json_ok({"ok": False, "response_type": "ephemeral", "text": text})


_HOUR = GrantBody(for_seconds=3600)


def routes() -> list[BaseRoute]:
    return [Route("/api/v1/integrations/slack/interactivity", interactivity, methods=["POST"])]
