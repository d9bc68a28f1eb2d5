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

Messages leave through one queue per channel (`outbox.py`), in order, never on the request
path; a rate limit (429, ``Retry-After``), a 5xx or a timeout is tried again within bounds
(`delivery.py`); what is given up is counted and recorded (`SlackNotifier`). A pending
approval with no message yet (given up for a transient reason, created while the server was
down or Slack not set up) is posted by a sweep: at the start, at each configuration change
and every ``settings.slack_sweep_seconds``; one server posts it (`claims.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Connection, update

from agentfirewall.display import visible
from agentfirewall.errors import VaultError
from agentfirewall_server.approvals import get_approval
from agentfirewall_server.audit import append_events, prepare_event
from agentfirewall_server.clock import now
from agentfirewall_server.notify.claims import claim_post, refused_mark, release_claims, unposted
from agentfirewall_server.notify.delivery import (
    REFUSED,
    UNAVAILABLE,
    Failure,
    RetryPolicy,
    read_answer,
)
from agentfirewall_server.notify.outbox import Message, Outbox, Outcome
from agentfirewall_server.store.schema import approvals

if TYPE_CHECKING:
    from agentfirewall_server.protocols import Services

__all__ = ["MAX_SKEW_SECONDS", "SlackNotifier", "sign", "store_message", "verify_signature"]

MAX_SKEW_SECONDS = 300
#: Approvals a sweep queues at most (the oldest first; the rest at the next sweep).
SWEEP_BATCH = 100
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
    """Posts pending approvals and updates their messages once decided, through one
    `Outbox` queue per channel (`outbox.py`; retries and their bounds: `delivery.py`).

    An approval decided before its message was posted is not posted; one decided while
    its message was being posted has it updated at once: where the message is gets stored
    in a transaction that reads the approval's status again (`store_message`), so either
    that read or the decision's (`on_decided`) finds the other. A message given up is
    counted in ``aaf_slack_messages_dropped_total`` and recorded as an
    ``approval.slack_failed`` audit event, the bot token in neither.

    Each try of a post first claims it in the approval's row (`claims.claim_post`): of
    several replicas (or a sweep and a post already queued) exactly one posts it. A post
    given up releases its claim, or marks it refused under the current Slack settings
    (Slack refused it), in the transaction that records the failure; the sweep (`start`)
    queues the pending approvals with no message and no live claim again.
    """

    def __init__(self, state: Services) -> None:
        self.state = state
        self.policy = RetryPolicy()
        self._outbox = Outbox(self._send, self._given_up, lambda: self.policy)
        self._failures: list[dict[str, Any]] = []  # audit events still to write
        self._released: list[tuple[str, str | None]] = []  # claims still to release
        self._recorder: asyncio.Task[None] | None = None
        self._drained = False
        self._id = uuid.uuid4().hex  # this server's claims (`claims.py`)
        self._posting: set[str] = set()  # approvals whose post is in the outbox
        self._audited: set[str] = set()  # posts whose give-up this server has recorded
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Messages queued or being sent."""
        return self._outbox.waiting

    @property
    def running(self) -> int:
        """Tasks running: a worker per channel with messages, the event recorder and the
        sweep (`start`)."""
        recording = self._recorder is not None and not self._recorder.done()
        sweeping = self._sweeper is not None and not self._sweeper.done()
        return self._outbox.running + recording + sweeping

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

    def _refused(self) -> str:
        """The claim a post Slack refuses under the current settings keeps (`claims.py`)."""
        snapshot = self.state.snapshot
        return refused_mark(
            self.state.settings.slack_api_url,
            str(snapshot.settings.get("slack_channel")),
            str(snapshot.credentials.get("settings:slack_bot_token")),
        )

    # the sweep: what has no message yet --------------------------------------------

    def start(self) -> None:
        """At the server's start: sweep now, then at each configuration change (Slack set
        up) and every ``slack_sweep_seconds``, until the server stops."""
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        hub = self.state.hub
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the store: the next sweep
                log.warning("could not look for approvals to post to Slack: %s",
                            type(exc).__name__)  # fmt: skip
            if not await hub.wait(self.state.settings.slack_sweep_seconds, event_type="config"):
                return  # the server stops

    async def sweep(self) -> int:
        """Queue the posts of the oldest pending approvals with no message and no live
        claim (at most `SWEEP_BATCH`); how many were queued."""
        target = self._target()
        if target is None:
            return 0
        job = partial(unposted, refused=self._refused(), now=now(), limit=SWEEP_BATCH)
        rows = [row for row in await self.state.db.read(job) if row["id"] not in self._posting]
        for row in rows:
            self._post_later(target[1], row)
        return len(rows)

    def _post_later(self, channel: str, row: dict[str, Any]) -> None:
        self._posting.add(row["id"])
        self._outbox.put(Message("post", channel, row))

    # what the server tells it (on the request path: queued, never awaited) ----------

    async def on_created(self, row: dict[str, Any]) -> None:
        target = self._target()
        if target is not None and row["id"] not in self._posting:
            self._post_later(target[1], row)

    async def on_decided(self, row: dict[str, Any]) -> None:
        if row.get("slack_ts") and self._target() is not None:
            self._outbox.put(Message("update", str(row["slack_channel"]), row))

    # sending (a channel's worker) ----------------------------------------------------

    async def _send(self, message: Message) -> Outcome:
        target = self._target()
        if message.call == "update":
            return None if target is None else await self._update(target[0], message.approval)
        outcome = None if target is None else await self._post(target[0], message)
        if not isinstance(outcome, Failure):  # done with (a failure: `_given_up` or again)
            self._posting.discard(message.approval["id"])
            self._audited.discard(message.approval["id"])
        return outcome

    async def _post(self, token: str, message: Message) -> Outcome:
        row = message.approval
        claim = partial(claim_post, approval_id=row["id"], mine=self._id,
                        refused=self._refused(), now=now())  # fmt: skip
        if not await self.state.db.write(claim):  # decided, posted, or another's to post
            return None
        payload = {
            "channel": message.channel,
            "text": f"Approval needed: {escaped(row['agent'])} ({row['id']})",
            "blocks": _blocks(row, self.state.settings.base_url),
        }
        answer = await self._call(token, "chat.postMessage", payload)
        if isinstance(answer, Failure):
            return answer
        where, ts = str(answer.get("channel") or message.channel), str(answer.get("ts"))
        try:
            now_row = await self.state.db.write(
                partial(store_message, approval_id=row["id"], channel=where, ts=ts)
            )
        except Exception as exc:  # posted: trying again would post it twice
            log.warning("posted approval %s to Slack but could not store where: %s",
                        row["id"], type(exc).__name__)  # fmt: skip
            return None
        if now_row is not None and now_row["status"] != "pending":  # decided meanwhile
            return Message("update", where, now_row)
        return None

    async def _update(self, token: str, row: dict[str, Any]) -> Outcome:
        verb = {"approved": "Approved", "denied": "Denied", "expired": "Expired"}.get(
            row["status"], row["status"]
        )
        by = f" by {escaped(row['decided_by'])}" if row.get("decided_by") else ""
        text = f"{verb}{by}: {escaped(row['agent'])} ({row['id']})"
        payload = {
            "channel": row["slack_channel"],
            "ts": row["slack_ts"],
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }
        answer = await self._call(token, "chat.update", payload)
        return answer if isinstance(answer, Failure) else None

    async def _call(
        self, token: str, method: str, payload: dict[str, Any]
    ) -> dict[str, Any] | Failure:
        url = f"{self.state.settings.slack_api_url.rstrip('/')}/{method}"
        try:
            response = await self.state.http.post(
                url,
                json=payload,
                timeout=self.policy.call_timeout,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json; charset=utf-8",
                },
            )
        except httpx.TimeoutException:
            return Failure(UNAVAILABLE, "timeout")
        except httpx.HTTPError:
            return Failure(UNAVAILABLE, "connection failed")
        answer = read_answer(
            response.status_code, response.headers.get("retry-after"), response.content
        )
        if isinstance(answer, Failure):
            log.info("Slack `%s` failed (%s): %s", method, answer.reason, answer.detail)
        return answer

    # giving up -----------------------------------------------------------------------

    def _given_up(self, message: Message, failure: Failure) -> None:
        """Count it, log it and record it (the event written by one recorder task; a post
        given up again, by a later sweep of this server, is counted and logged only)."""
        row = message.approval
        if message.call == "post":
            self._posting.discard(row["id"])
            mark = self._refused() if failure.reason == REFUSED else None
            self._released.append((row["id"], mark))  # the next sweep posts it (not refused)
        self.state.metrics.slack_dropped.labels(message.call, failure.reason).inc()
        log.warning(
            "gave up the Slack %s of approval %s after %d tries: %s (%s)",
            message.call, row["id"], message.tries, failure.reason, failure.detail,
        )  # fmt: skip
        if self._drained:  # after the stop's drain no task may start: the log line stays
            return
        if message.call == "post" and row["id"] in self._audited:  # a sweep's try again
            self._record_later()  # (its claim released; counted and logged, audited once)
            return
        if message.call == "post":
            self._audited.add(row["id"])
        data = {
            "call": message.call,
            "channel": message.channel,
            "reason": failure.reason,
            "detail": failure.detail,
            "tries": message.tries,
        }
        event = prepare_event("approval.slack_failed", actor="server", now=now(),
                              agent=row["agent"], subject=row["id"], data=data)  # fmt: skip
        self._failures.append(event)
        self._record_later()

    def _record_later(self) -> None:
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record())

    async def _record(self) -> None:
        """The failures' events, and their posts' claims released, in one transaction."""
        while self._failures or self._released:
            batch, self._failures = self._failures, []
            released, self._released = self._released, []

            def job(conn: Connection, batch: list[dict[str, Any]] = batch,
                    released: list[tuple[str, str | None]] = released) -> None:  # fmt: skip
                release_claims(conn, released, mine=self._id, now=now())
                if batch:
                    append_events(conn, prepared=batch)

            try:
                await self.state.db.write(job)
            except Exception as exc:  # the claims lapse (`claims.CLAIM_SECONDS`)
                log.warning("could not record %d Slack failure(s) in the audit log: %s",
                            len(batch), type(exc).__name__)  # fmt: skip

    async def drain(self) -> None:
        """At the server's stop: the queues emptied or given up (`Outbox.close`), then
        their failures recorded (and claims released); no sweep after it."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._outbox.close()
        if self._recorder is not None:
            await asyncio.gather(self._recorder, return_exceptions=True)
        self._drained = True


def store_message(
    conn: Connection, approval_id: str, channel: str, ts: str
) -> dict[str, Any] | None:
    """Store where the approval's message is, and read the approval again in the same
    transaction: a decision made while the message was being posted is then either before
    this (its status is read here) or after it (it reads the message's ``slack_ts``)."""
    conn.execute(
        update(approvals)
        .where(approvals.c.id == approval_id)
        .values(slack_channel=channel, slack_ts=ts, slack_claim=None, slack_claimed_at=None)
    )
    return get_approval(conn, approval_id)
