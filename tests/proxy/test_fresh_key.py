"""A key made a moment ago is let in before the configuration long poll brings it.

`POST /api/v1/agents/ensure` answers a key as soon as the control plane has it; the gateway
learns it with its next long poll. An agent that uses the key first must not get a 407: the
gateway fetches its configuration once more and looks again (``freshlook.FreshLook``). These
tests stall the long poll outright (a control plane whose long poll never brings a change),
so the fresh look is the only way the key can be known, and check that the look is shared,
rate-limited and fails closed, and that a request inside a tunnel is not looked up again.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfirewall_proxy.control import ControlError, StaticControl
from agentfirewall_proxy.freshlook import FreshLook
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, send, status_of, tunnel
from tests.proxy.support import (
    CREDENTIALS,
    KEY,
    RunningGateway,
    connector,
    free_span,
    gateway_options,
    key_hash,
    rule,
    snapshot,
)

FRESH_KEY = "aaf_live_" + "f" * 32
WRONG_KEY = "aaf_live_" + "w" * 32
BOT = {"id": "agt_1", "name": "Bot", "status": "active", "enforcement_level": "full_enforce",
       "key_hashes": [key_hash(KEY)], "proxy_port": None}  # fmt: skip
FRESH = {**BOT, "id": "agt_9", "name": "Fresh", "key_hashes": [key_hash(FRESH_KEY)]}
RULES = [rule("github.*", "allow", agent="Bot"), rule("github.*", "allow", agent="Fresh")]
BEFORE = snapshot(RULES, connectors=[connector("github")], agents=[BOT])
AFTER = snapshot(RULES, connectors=[connector("github")], agents=[BOT, FRESH])


class StalledPoll(StaticControl):
    """A control plane whose long poll never brings a change; a fetch without a wait
    answers at once (and fails, with `failing`)."""

    def __init__(self, snap: dict[str, Any], *, failing: bool = False) -> None:
        super().__init__(snap)
        self.failing = failing
        self.lookups = 0

    async def fetch_config(self, since: int | None, wait: float) -> dict[str, Any] | None:
        if since is not None and wait > 0:
            await asyncio.sleep(wait)
            return None
        if since is not None:
            self.lookups += 1
            if self.failing:
                raise ControlError("control plane unreachable")
        return await super().fetch_config(since, 0)


@pytest.fixture
def stalled(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[tuple[RunningGateway, StalledPoll]]:
    fakes["github"].clear()
    control = StalledPoll(BEFORE)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    try:
        yield running, control
    finally:
        running.stop()


def _plain_get(port: int, key: str) -> bytes:
    return send(port, b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
                + auth_header(key, "Fresh") + b"Connection: close\r\n\r\n")  # fmt: skip


@pytest.mark.parametrize("route", ["connect", "plain"])
def test_a_key_made_a_moment_ago_is_let_in_at_its_first_request(
    stalled: tuple[RunningGateway, StalledPoll], fakes: FakeUpstreams, route: str
) -> None:
    running, control = stalled
    control.update(AFTER)  # the control plane has the key; the gateway's long poll is stalled
    time.sleep(0.3)
    assert running.gateway is not None
    assert running.gateway.require_config().version == 1

    if route == "connect":
        proxy = f"http://Fresh:{FRESH_KEY}@127.0.0.1:{running.port}"
        trust = ssl.create_default_context(cafile=str(running.ca_path))
        with httpx.Client(proxy=proxy, verify=trust, trust_env=False) as http:
            status = http.get("https://api.github.com/user").status_code
    else:
        status = status_of(_plain_get(running.port, FRESH_KEY))

    assert status == 200
    (seen,) = fakes["github"].received("GET", "/user")
    assert CREDENTIALS["github"] in (seen.header("authorization") or "")
    assert control.lookups == 1
    assert running.gateway.require_config().version == 2


def test_a_wrong_key_gets_the_one_407_and_wrong_keys_share_rate_limited_fetches(
    stalled: tuple[RunningGateway, StalledPoll], fakes: FakeUpstreams
) -> None:
    running, control = stalled
    known_but_wrong = _plain_get(running.port, WRONG_KEY)
    answers: list[bytes] = []
    lock = threading.Lock()

    def guess(index: int) -> None:
        answer = _plain_get(running.port, "aaf_live_" + f"{index:032d}")
        with lock:
            answers.append(answer)

    started = time.monotonic()
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    assert status_of(known_but_wrong) == 407
    body = json.loads(known_but_wrong.partition(b"\r\n\r\n")[2])
    assert (body["error"], body["reason"]) == ("proxy_auth_required", "invalid proxy credential")
    assert len(answers) == 40
    assert {status_of(a) for a in answers} == {407}
    assert {a.partition(b"\r\n\r\n")[2].split(b'"request_id"')[0] for a in answers} == {
        known_but_wrong.partition(b"\r\n\r\n")[2].split(b'"request_id"')[0]
    }  # the same answer as any wrong key: no oracle
    # fetches begin at least 0.1 s apart, whatever the number of wrong keys
    assert 1 <= control.lookups <= 2 + int(elapsed / 0.1) + 1
    assert control.lookups < 40
    assert fakes["github"].received() == []


def test_a_failed_look_fails_closed(fakes: FakeUpstreams, tmp_path: Path) -> None:
    fakes["github"].clear()
    control = StalledPoll(BEFORE, failing=True)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    try:
        control.update(AFTER)
        assert status_of(_plain_get(running.port, FRESH_KEY)) == 407
        assert control.lookups == 1
        assert fakes["github"].received() == []
        assert status_of(_plain_get(running.port, KEY)) == 200  # the gateway still serves
    finally:
        running.stop()
    assert [r.path for r in fakes["github"].received()] == ["/user"]  # Bot's alone


def test_a_key_revoked_inside_an_open_tunnel_is_not_looked_up(
    fakes: FakeUpstreams, tmp_path: Path
) -> None:
    fakes["github"].clear()
    control = StaticControl(BEFORE)
    running = RunningGateway(gateway_options(tmp_path, fakes), control).start()
    try:
        assert running.gateway is not None
        with tunnel(running.port, "api.github.com", running.ca_path) as tls:
            tls.sendall(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
            assert status_of(read_response(tls)) == 200
            control.update(snapshot(RULES, connectors=[connector("github")], agents=[]))
            deadline = time.monotonic() + 10
            while running.gateway.require_config().version == 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            tls.sendall(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
            assert status_of(read_response(tls)) == 407
        assert running.gateway.fresh_look.fetches == 0
    finally:
        running.stop()
    assert len(fakes["github"].received("GET", "/user")) == 1


def test_a_valid_key_on_another_agents_port_is_looked_up_like_an_unknown_one(
    fakes: FakeUpstreams, tmp_path: Path
) -> None:
    """The one 407 takes the same path for both: no answer, and no delay, tells them apart."""
    fakes["github"].clear()
    control = StalledPoll(AFTER)  # both agents known; the test uses Fresh's key on Bot's port
    options = gateway_options(tmp_path, fakes, agent_ports=free_span(2))
    running = RunningGateway(options, control).start()
    try:
        assert running.gateway is not None
        port = running.gateway.agent_ports.ports["Bot"]
        answer = send(port, b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
                      + auth_header(FRESH_KEY, "Fresh") + b"Connection: close\r\n\r\n")  # fmt: skip
        assert status_of(answer) == 407
        assert control.lookups == 1
        with pytest.raises(ConnectionRefusedError, match="407"):
            tunnel(port, "api.github.com", running.ca_path, key=FRESH_KEY)
        assert control.lookups == 2
    finally:
        running.stop()
    assert fakes["github"].received() == []


# -- FreshLook on its own ----------------------------------------------------------------


class Fetches:
    """A fetch that records when each call began and can be held open."""

    def __init__(self) -> None:
        self.began: list[float] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> None:
        self.began.append(asyncio.get_running_loop().time())
        await self.release.wait()


@pytest.mark.anyio
async def test_callers_that_ask_together_share_one_fetch() -> None:
    fetch = Fetches()
    look = FreshLook(fetch, interval=0.1)
    await asyncio.gather(*(look() for _ in range(50)))
    assert len(fetch.began) == 1


@pytest.mark.anyio
async def test_a_caller_waits_for_a_fetch_begun_after_it_asked() -> None:
    loop = asyncio.get_running_loop()
    fetch = Fetches()
    fetch.release.clear()
    look = FreshLook(fetch, interval=0.1)
    first = asyncio.ensure_future(look())
    await asyncio.sleep(0.01)  # the first fetch is in flight, held
    asked = loop.time()
    second = asyncio.ensure_future(look())
    await asyncio.sleep(0.01)
    fetch.release.set()
    await asyncio.gather(first, second)
    assert len(fetch.began) == 2
    assert fetch.began[1] >= asked
    assert fetch.began[1] - fetch.began[0] >= 0.1 - 1e-3  # and not sooner than the interval


@pytest.mark.anyio
async def test_fetches_begin_at_least_an_interval_apart() -> None:
    fetch = Fetches()
    look = FreshLook(fetch, interval=0.05)
    for _ in range(5):
        await look()
    gaps = [b - a for a, b in zip(fetch.began, fetch.began[1:], strict=False)]
    assert len(fetch.began) == 5
    assert min(gaps) >= 0.05 - 1e-3


@pytest.mark.anyio
async def test_a_cancelled_caller_leaves_the_fetch_to_the_others() -> None:
    fetch = Fetches()
    fetch.release.clear()
    look = FreshLook(fetch, interval=0.1)
    gone = asyncio.ensure_future(look())
    staying = asyncio.ensure_future(look())
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    fetch.release.set()
    await staying
    assert gone.cancelled()
    assert len(fetch.began) == 1
