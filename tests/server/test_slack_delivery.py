"""Every pending approval reaches Slack, and every decided one has its buttons taken away.

The fake Slack here answers as Slack does past its ``chat.postMessage`` rate (about one
message a second per channel: HTTP 429, ``ratelimited``, ``Retry-After``), can hold a post
until the test has decided its approval, and plays scripted failures (a 503, a hang) first.
The invariant checked after each scenario: no decided approval keeps a message with live
Approve / Deny buttons (`_live_buttons`), and what was given up is counted and recorded,
never with the bot token.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from agentfirewall_server.notify.delivery import RetryPolicy
from tests.fakes.base import FakeUpstream, FakeUpstreams
from tests.livesrv import LiveServer
from tests.server.conftest import Harness
from tests.server.test_gateway_api import _approval_body
from tests.server.test_slack import _configure

TOKEN = "xoxb-test-token"  # the bot token `_configure` stores
POST, UPDATE = "chat.postMessage", "chat.update"


@dataclass
class Answer:
    """A scripted answer: its status, JSON body (or raw bytes) and headers, after `delay` s."""

    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


UNAVAILABLE = Answer(503, {"ok": False, "error": "service_unavailable"})
LIMITED_NO_WAIT = Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})


class FakeSlack:
    """Slack's Web API as the notifier meets it, with what it posted and updated."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(
        self,
        *,
        per_second: float | None = None,
        hold_posts: bool = False,
        script: dict[str, list[Answer]] | None = None,
        always: dict[str, Answer] | None = None,
    ) -> None:
        with self.lock:
            self.per_second = per_second  # posts a channel takes a second (None: any)
            self.gate = threading.Event()  # posts wait for it (30 s at most)
            if not hold_posts:
                self.gate.set()
            self.post_arrived = threading.Event()
            self.script = {k: list(v) for k, v in (script or {}).items()}  # answered first
            self.always = dict(always or {})  # every call of the method answered so
            self.last_post: dict[str, float] = {}
            self.posted: dict[str, str] = {}  # ts -> approval id
            self.updated: dict[str, list[str]] = {}  # ts -> the texts it was updated to
            self.calls: list[tuple[str, str]] = []  # (method, approval id)
            self.authorization: set[str] = set()
            self._ts = itertools.count(1)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        method = request.url.path.rsplit("/", 1)[-1]
        body = await request.json()
        with self.lock:
            self.calls.append((method, _approval_of(body)))
            self.authorization.add(request.headers.get("authorization", ""))
            scripted = self.script.get(method, [])
            answer = scripted.pop(0) if scripted else self.always.get(method)
        if method == POST:
            self.post_arrived.set()
            await asyncio.to_thread(self.gate.wait, 30)
        if answer is not None:
            await asyncio.sleep(answer.delay)
            await _respond(answer, scope, receive, send)
            return
        with self.lock:
            answer = self._answer(method, body)
        await _respond(answer, scope, receive, send)

    def _answer(self, method: str, body: dict[str, Any]) -> Answer:
        if method == UPDATE:
            self.updated.setdefault(body["ts"], []).append(body["text"])
            return Answer(200, {"ok": True, "channel": body["channel"], "ts": body["ts"]})
        channel, moment = body["channel"], time.monotonic()
        last = self.last_post.get(channel)
        if self.per_second and last is not None and moment - last < 1 / self.per_second:
            return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        self.last_post[channel] = moment
        ts = f"1700000000.{next(self._ts):06d}"
        self.posted[ts] = _approval_of(body)
        return Answer(200, {"ok": True, "channel": "C0FAKE", "ts": ts})

    def tries(self, method: str, approval_id: str) -> int:
        with self.lock:
            return self.calls.count((method, approval_id))

    def message_of(self, approval_id: str) -> str | None:
        with self.lock:
            return next((ts for ts, apv in self.posted.items() if apv == approval_id), None)


def _approval_of(body: dict[str, Any]) -> str:
    """The approval a call is about: a post's buttons' block, an update's text."""
    for block in body.get("blocks") or []:
        if str(block.get("block_id", "")).startswith("tf_"):
            return str(block["block_id"]).removeprefix("tf_")
    return str(body.get("text", "")).rpartition("(")[2].rstrip(")")


async def _respond(answer: Answer, scope: Any, receive: Any, send: Any) -> None:
    raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[FakeSlack, str]]:
    """The fake and its Web API URL (``AGENTFIREWALL_SLACK_API_URL``)."""
    fake = FakeSlack()
    upstream = FakeUpstream(name="slack", hostnames=("slack.com",), app=fake.app)
    with FakeUpstreams([upstream]):
        yield fake, upstream.http_url + "/api"


def _server(harness_factory: Any, url: str, policy: RetryPolicy | None = None) -> Harness:
    h: Harness = harness_factory(slack_api_url=url)
    if policy is not None:  # shorter waits than a server's, for the test's sake
        h.state.slack.policy = policy
    _configure(h)
    assert h.create_agent("Bot")
    return h


def _hold(h: Harness, count: int = 1, timeout_seconds: int = 60) -> list[str]:
    """`count` held requests of agent Bot, in one batch as the gateway sends them."""
    items = [{**_approval_body(f"{n:064x}"), "timeout_seconds": timeout_seconds}
             for n in range(count)]  # fmt: skip
    r = h.gateway("POST", "/v1/gateway/approvals/batch", json={"approvals": items})
    assert r.status_code == 200, r.text
    ids = [a["id"] for a in r.json()["approvals"]]
    assert len(set(ids)) == count
    return ids


def _status(h: Harness, approval_id: str) -> str:
    status: str = h.admin("GET", f"/v1/approvals/{approval_id}").json()["status"]
    return status


def _until(what: str, done: Callable[[], Any], seconds: float = 40.0) -> Any:
    """Poll `done` until it answers something true (a bound, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = done()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s")


def _settled(h: Harness) -> None:
    """Nothing left to send: every channel's queue is empty."""
    _until("the Slack queues empty", lambda: h.state.slack.waiting == 0)


def _live_buttons(h: Harness, fake: FakeSlack) -> list[str]:
    """Decided approvals whose Slack message still shows Approve / Deny."""
    with fake.lock:
        posted = dict(fake.posted)
        updated = set(fake.updated)
    return [apv for ts, apv in posted.items() if ts not in updated and _status(h, apv) != "pending"]


def _dropped(h: Harness) -> dict[tuple[str, str], float]:
    """``aaf_slack_messages_dropped_total`` by (call, reason)."""
    text = h.admin("GET", "/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith("aaf_slack_messages_dropped_total{"):
            labels, value = line.rsplit(" ", 1)
            call = labels.split('call="')[1].split('"')[0]
            reason = labels.split('reason="')[1].split('"')[0]
            found[(call, reason)] = float(value)
    return found


def _failed_events(h: Harness) -> list[dict[str, Any]]:
    r = h.admin("GET", "/v1/audit?event_type=approval.slack_failed&limit=1000")
    events: list[dict[str, Any]] = r.json()["events"]
    return events


FAST = RetryPolicy(attempts=3, first_backoff=0.05, max_wait=2.0, call_timeout=1.0)


def test_a_burst_of_held_requests_all_reach_a_rate_limited_slack(
    harness_factory: Any, slack: tuple[FakeSlack, str]
) -> None:
    """Slack takes one post a second per channel: a gateway batch of six held requests is
    posted in full, one after another, each after the ``Retry-After`` it was given."""
    fake, url = slack
    fake.reset(per_second=1)
    h = _server(harness_factory, url)
    ids = _hold(h, 6)
    _until("every approval posted", lambda: all(fake.message_of(apv) for apv in ids))
    assert sorted(fake.posted.values()) == sorted(ids)  # each once
    assert sum(method == POST for method, _ in fake.calls) > len(ids)  # 429s, tried again
    for apv in ids:
        assert h.admin("POST", f"/v1/approvals/{apv}/deny").status_code == 200
    _settled(h)
    assert _live_buttons(h, fake) == []
    assert all(fake.updated[fake.message_of(apv) or ""] for apv in ids)
    assert _dropped(h) == {}
    assert _failed_events(h) == []


def _approve(h: Harness, apv: str) -> None:
    assert h.admin("POST", f"/v1/approvals/{apv}/approve").status_code == 200


def _deny(h: Harness, apv: str) -> None:
    assert h.admin("POST", f"/v1/approvals/{apv}/deny", json={"note": "no"}).status_code == 200


def _kill_switch(h: Harness, apv: str) -> None:
    r = h.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
    assert r.status_code in (200, 201), r.text


def _suspend(h: Harness, apv: str) -> None:
    assert h.admin("POST", "/v1/agents/Bot/suspend").status_code == 200


def _let_expire(h: Harness, apv: str) -> None:
    pass  # its timeout is one second: the expiry loop does it


DECISIONS = {
    "approved-in-the-api": (_approve, "Approved"),
    "denied-in-the-api": (_deny, "Denied"),
    "kill-switch": (_kill_switch, "Denied"),
    "agent-suspended": (_suspend, "Denied"),
    "expired": (_let_expire, "Expired"),
}


@pytest.mark.parametrize("way", list(DECISIONS))
def test_an_approval_decided_while_its_message_is_posted_has_it_updated(
    harness_factory: Any, slack: tuple[FakeSlack, str], way: str
) -> None:
    """Slack holds the post until the approval is decided (by a person, a kill switch, a
    suspension or its timeout): the message it then returns is updated once, at once."""
    fake, url = slack
    fake.reset(hold_posts=True)
    h = _server(harness_factory, url)
    decide, verb = DECISIONS[way]
    (apv,) = _hold(h, timeout_seconds=1 if way == "expired" else 60)
    assert fake.post_arrived.wait(20)
    decide(h, apv)
    _until("the approval decided", lambda: _status(h, apv) != "pending")
    fake.gate.set()
    ts = _until("the message posted", lambda: fake.message_of(apv))
    texts = _until("the message updated", lambda: fake.updated.get(ts))
    _settled(h)
    assert len(fake.updated[ts]) == 1
    assert texts[0].startswith(verb)
    assert _live_buttons(h, fake) == []


def test_approvals_decided_while_their_posts_wait_leave_no_live_buttons(
    harness_factory: Any, slack: tuple[FakeSlack, str]
) -> None:
    """Decided while their posts wait behind the rate limit: each is posted not at all, or
    posted and then updated; the pending one is posted."""
    fake, url = slack
    fake.reset(per_second=1)
    h = _server(harness_factory, url)
    first, *rest = _hold(h, 4)
    for apv in rest:
        _deny(h, apv)
    _until("the pending approval posted", lambda: fake.message_of(first))
    _settled(h)
    assert _live_buttons(h, fake) == []
    assert _dropped(h) == {}


def test_a_5xx_and_a_hang_are_tried_again(
    harness_factory: Any, slack: tuple[FakeSlack, str]
) -> None:
    fake, url = slack
    hang = Answer(503, b"late", delay=FAST.call_timeout * 3)  # the client gave up long before
    down = Answer(502, b"<html>bad gateway</html>", {"content-type": "text/html"})
    fake.reset(script={POST: [down, hang]})
    h = _server(harness_factory, url, RetryPolicy(first_backoff=0.05, call_timeout=1.0))
    (apv,) = _hold(h)
    _until("posted", lambda: fake.message_of(apv))
    _settled(h)
    assert fake.tries(POST, apv) == 3
    assert list(fake.posted.values()) == [apv]
    assert _dropped(h) == {}


def test_an_update_waits_out_its_rate_limit(
    harness_factory: Any, slack: tuple[FakeSlack, str]
) -> None:
    fake, url = slack
    limited = Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
    fake.reset(script={UPDATE: [limited, limited]})
    h = _server(harness_factory, url)
    (apv,) = _hold(h)
    ts = _until("posted", lambda: fake.message_of(apv))
    _until("its place stored", lambda: h.state.db.read_sync(
        lambda c: c.exec_driver_sql("SELECT slack_ts FROM approvals").scalar()))  # fmt: skip
    _deny(h, apv)
    _until("updated", lambda: fake.updated.get(ts))
    assert fake.tries(UPDATE, apv) == 3
    assert _live_buttons(h, fake) == []


@pytest.mark.parametrize(
    ("answer", "reason", "tries"),
    [
        (UNAVAILABLE, "unavailable", FAST.attempts),
        (LIMITED_NO_WAIT, "ratelimited", FAST.attempts),
        (Answer(200, {"ok": False, "error": "invalid_auth"}), "refused", 1),
        (Answer(200, {"ok": False, "error": f"not_authed {TOKEN}"}), "refused", 1),
    ],
    ids=["5xx", "429", "invalid-auth", "error-quoting-the-token"],
)
def test_a_post_given_up_is_counted_and_recorded_without_the_token(
    harness_factory: Any,
    slack: tuple[FakeSlack, str],
    caplog: pytest.LogCaptureFixture,
    answer: Answer,
    reason: str,
    tries: int,
) -> None:
    """Tried at most `attempts` times (once when Slack refuses it), then counted in
    ``aaf_slack_messages_dropped_total`` and recorded as ``approval.slack_failed``; the
    approval stays pending for the dashboard and `tf approvals`."""
    caplog.set_level(logging.DEBUG)
    fake, url = slack
    fake.reset(always={POST: answer})
    h = _server(harness_factory, url, FAST)
    (apv,) = _hold(h)
    (event,) = _until("the failure recorded", lambda: _failed_events(h))
    assert fake.tries(POST, apv) == tries
    assert event["subject"] == apv
    assert event["agent"] == "Bot"
    assert event["data"]["call"] == "post"
    assert event["data"]["reason"] == reason
    assert event["data"]["tries"] == tries
    assert _dropped(h) == {("post", reason): 1.0}
    assert _status(h, apv) == "pending"
    assert fake.authorization == {f"Bearer {TOKEN}"}  # the token went to Slack, only there
    exported = h.admin("GET", "/v1/audit/export?format=jsonl").text
    for seen in (caplog.text, exported, h.admin("GET", "/metrics").text, json.dumps(event)):
        assert TOKEN not in seen
        assert "xoxb" not in seen


def test_the_server_stops_with_sends_pending_and_records_them(
    tmp_path: Path, slack: tuple[FakeSlack, str]
) -> None:
    """Slack down at shutdown: the server stops within its grace (not killed after 15 s),
    leaves no task running, and the message it gave up is recorded for after the restart."""
    fake, url = slack
    fake.reset(always={POST: UNAVAILABLE})
    server = LiveServer.start(tmp_path / "tf", env={"AGENTFIREWALL_SLACK_API_URL": url})
    try:
        settings = {"slack_bot_token": TOKEN, "slack_signing_secret": "s",
                    "slack_channel": "C0FAKE"}  # fmt: skip
        assert server.admin("PATCH", "/v1/settings", json=settings).status_code == 200
        server.create_agent("Bot")
        held = server.gateway("POST", "/v1/gateway/approvals", json=_approval_body())
        apv = held.json()["id"]
        _until("Slack tried", lambda: fake.tries(POST, apv) >= 2)  # in its backoff now
        server.stop()
        assert server.process is not None
        # uvicorn re-raises the signal once its graceful shutdown is done; not the SIGKILL
        # `stop` sends after 15 s
        assert server.process.returncode in (0, -signal.SIGTERM)
        server.launch(port=0)
        events = server.admin("GET", "/v1/audit?event_type=approval.slack_failed").json()
        # (the restarted server's sweep tries it again: a failure of its own, later)
        (event,) = [e for e in events["events"] if e["data"]["reason"] == "shutdown"]
        assert event["subject"] == apv
        assert server.admin("GET", f"/v1/approvals/{apv}").json()["status"] == "pending"
        assert TOKEN not in server.log()
    finally:
        server.stop()


def test_stopping_leaves_no_slack_task_and_gives_up_what_waits(
    harness_factory: Any, slack: tuple[FakeSlack, str]
) -> None:
    """Slack down, a minute's backoff ahead: the stop does not wait it out. Each waiting
    message gets one more try, then is given up (``shutdown``), counted and recorded; no
    worker is left running."""
    fake, url = slack
    fake.reset(always={POST: UNAVAILABLE})
    policy = RetryPolicy(first_backoff=60.0, max_wait=60.0, shutdown_grace=10.0)
    h = _server(harness_factory, url, policy)
    ids = _hold(h, 3)
    _until("Slack tried", lambda: fake.tries(POST, ids[0]) == 1)
    notifier, metrics = h.state.slack, h.state.metrics
    assert notifier.waiting == 3
    h.client.__exit__(None, None, None)  # the app's stop (the fixture's exit is then a no-op)
    assert (notifier.waiting, notifier.running) == (0, 0)
    assert [fake.tries(POST, apv) for apv in ids] == [2, 1, 1]
    dropped = {"call": "post", "reason": "shutdown"}
    assert metrics.registry.get_sample_value("aaf_slack_messages_dropped_total", dropped) == 3
    again = harness_factory()  # the same data directory and database
    events = again.admin("GET", "/v1/audit?event_type=approval.slack_failed").json()["events"]
    assert sorted(e["subject"] for e in events) == sorted(ids)
    assert {e["data"]["reason"] for e in events} == {"shutdown"}
