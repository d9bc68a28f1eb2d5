"""Approvals in Slack: a message with Approve / Deny buttons, updated once decided.

Configured in settings (bot token and signing secret in the vault, a channel id). Messages
go through the Web API at ``settings.slack_api_url`` (tests point it at a local fake).
Button callbacks are verified with the signing secret (``v0`` HMAC-SHA256 over
``v0:<timestamp>:<body>``, timestamps older than 5 minutes refused).

What the agent chose (the action's target, the reason's quoted values) is shown as plain
text fields, never as ``mrkdwn``: a target like ``<!channel> <https://x|Approve>`` pings no
one and links nowhere, a backtick ends no code span, and display-controlling characters are
shown as their escapes (`agentfirewall.display.visible`). Names in the ``mrkdwn`` lines are
escaped as Slack asks (``&``, ``<``, ``>``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from agentfirewall.display import visible
from agentfirewall.errors import VaultError
from agentfirewall_server.store.schema import approvals

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = ["MAX_SKEW_SECONDS", "SlackNotifier", "sign", "verify_signature"]

MAX_SKEW_SECONDS = 300
log = logging.getLogger("agentfirewall_server.slack")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, timestamp: str, signature: str, body: bytes, now: float
) -> str | None:
    """None when valid, else what is wrong."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return "missing or malformed `X-Slack-Request-Timestamp`"
    if abs(now - stamp) > MAX_SKEW_SECONDS:
        return "`X-Slack-Request-Timestamp` is more than 5 minutes away: replay refused"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return "`X-Slack-Signature` does not match"
    return None


_FIELD_LIMIT = 1900  # Slack refuses a section field over 2,000 characters


def escaped(text: object) -> str:
    """`text` for a ``mrkdwn`` line: shown as sent, Slack's three escapes applied."""
    return visible(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(label: str, value: object) -> dict[str, Any]:
    text = visible(f"{label}: {value}")
    if len(text) > _FIELD_LIMIT:
        text = text[:_FIELD_LIMIT] + "…"
    return {"type": "plain_text", "text": text, "emoji": False}


def _blocks(row: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    spec = (
        json.loads(row["action_spec"])
        if isinstance(row["action_spec"], str)
        else row["action_spec"]
    )
    target = (spec.get("resource") or {}).get("target")
    fields = [_field("Action", spec["type"])]
    if target:
        fields.append(_field("Target", target))
    fields += [
        _field("Risk", f"{row['risk_score']:.0f}"),
        _field("Reason", row["reason"] or "approval required"),
    ]
    text = f"*{escaped(row['agent'])}* asks for approval"
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}, "fields": fields},
        {
            "type": "actions",
            "block_id": f"tf_{row['id']}",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "style": "primary",
                    "value": row["id"],
                    "text": {"type": "plain_text", "text": "Approve once"},
                },
                {  # a grant: the same action for this agent for an hour (grants.py)
                    "type": "button",
                    "action_id": "approve_1h",
                    "value": row["id"],
                    "text": {"type": "plain_text", "text": "Approve for 1 h"},
                },
                {
                    "type": "button",
                    "action_id": "deny",
                    "style": "danger",
                    "value": row["id"],
                    "text": {"type": "plain_text", "text": "Deny"},
                },
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"<{base_url}/dashboard/approvals|Open in TameFlare> · {row['id']}",
                }
            ],
        },
    ]


class SlackNotifier:
    def __init__(self, state: Services) -> None:
        self.state = state
        self._tasks: set[asyncio.Task[None]] = set()

    def secret(self, name: str) -> str | None:
        """The setting's secret; None when unset or unreadable (`tf vault status` names it):
        nothing is posted, and interactivity is refused as for no Slack."""
        owner = f"settings:{name}"
        stored = self.state.snapshot.credentials.get(owner)
        if not stored:
            return None
        try:
            return self.state.vault.decrypt(stored, owner=owner)
        except VaultError as exc:
            log.warning("Slack is off: %s", exc)
            return None

    def _target(self) -> tuple[str, str] | None:
        channel = self.state.snapshot.settings.get("slack_channel")
        token = self.secret("slack_bot_token")
        return (token, str(channel)) if token and channel else None

    async def _call(self, token: str, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.state.settings.slack_api_url.rstrip('/')}/{method}"
        response = await self.state.http.post(
            url,
            json=payload,
            timeout=10,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json; charset=utf-8",
            },
        )
        data: dict[str, Any] = response.json()
        if not data.get("ok"):
            raise RuntimeError(
                f"slack `{method}` failed: {data.get('error', response.status_code)}"
            )
        return data

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_created(self, row: dict[str, Any]) -> None:
        if self._target() is not None:
            self._spawn(self._post(row))

    async def on_decided(self, row: dict[str, Any]) -> None:
        if self._target() is not None and row.get("slack_ts"):
            self._spawn(self._update(row))

    async def _post(self, row: dict[str, Any]) -> None:
        target = self._target()
        if target is None:
            return
        token, channel = target
        try:
            data = await self._call(
                token,
                "chat.postMessage",
                {
                    "channel": channel,
                    "text": f"Approval needed: {escaped(row['agent'])} ({row['id']})",
                    "blocks": _blocks(row, self.state.settings.base_url),
                },
            )
            ts, where = str(data.get("ts")), str(data.get("channel") or channel)
            await self.state.db.write(
                lambda c: c.execute(
                    update(approvals)
                    .where(approvals.c.id == row["id"])
                    .values(slack_channel=where, slack_ts=ts)
                )
            )
        except Exception:
            log.warning("could not post approval %s to Slack", row["id"], exc_info=True)

    async def _update(self, row: dict[str, Any]) -> None:
        target = self._target()
        if target is None:
            return
        verb = {"approved": "Approved", "denied": "Denied", "expired": "Expired"}.get(
            row["status"], row["status"]
        )
        by = f" by {escaped(row['decided_by'])}" if row.get("decided_by") else ""
        text = f"{verb}{by}: {escaped(row['agent'])} ({row['id']})"
        try:
            await self._call(
                target[0],
                "chat.update",
                {
                    "channel": row["slack_channel"],
                    "ts": row["slack_ts"],
                    "text": text,
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                },
            )
        except Exception:
            log.warning("could not update the Slack message of %s", row["id"], exc_info=True)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
