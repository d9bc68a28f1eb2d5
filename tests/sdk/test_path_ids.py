"""An action id reaches the action's own route, or nothing is sent.

``quote("..", safe="")`` leaves dot segments as they are, and the URL resolves them:
``get_action("..")`` was ``GET /api/v1/`` and ``execute("..", token)`` ``POST
/api/v1/execute``. Every method taking an id takes an ``act_...`` id only (``act_`` and
letters, digits, ``_`` or ``-``), one path segment as written; anything else is a
ValueError (a TypeError when it is no string) before anything is sent. Against the live
server, through a transport that records what goes on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from agentfirewall.errors import NotFoundError
from tests.sdk.liveagent import LiveAgent

WELL_FORMED = re.compile(r"act_[A-Za-z0-9_-]{1,100}")
NOT_IDS = [
    ".", "..", "act_1/../x", "act_1/..", "%2e%2e", "act_%2e%2e", "act_1?x=1", "act_1#x",
    "act_1\\..\\x", "act_1 ", " act_1", "act_1\n", "act_", "act_é", "act_😀", "ACT_1", "apv_1",
    "stuck", "dry-run", "act_" + "x" * 101,
]  # fmt: skip
PIECES = [
    "act_",
    "act_1",
    ".",
    "..",
    "/",
    "%2e",
    "%2F",
    "?",
    "#",
    "\\",
    "-",
    "_",
    "a",
    "9",
    " ",
    "é",
]


class Recording(httpx.HTTPTransport):
    """httpx's own transport, keeping the method and raw path of each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.raw_path.decode("ascii")))
        return super().handle_request(request)


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.raw_path.decode("ascii")))
        return await super().handle_async_request(request)


@pytest.fixture
def recorded(agent: LiveAgent) -> Iterator[tuple[AgentFirewall, Recording]]:
    transport = Recording()
    client = AgentFirewall(
        api_key=agent.key, base_url=agent.server.api_url, transport=transport, max_retries=0
    )
    with client:
        yield client, transport


@pytest.mark.parametrize("bad", NOT_IDS, ids=repr)
def test_every_method_refuses_an_id_that_is_no_act_id_and_sends_nothing(
    recorded: tuple[AgentFirewall, Recording], bad: str
) -> None:
    tf, transport = recorded
    calls: dict[str, Callable[[], object]] = {
        "get_action": lambda: tf.get_action(bad),
        "execute": lambda: tf.execute(bad, "t.o.k"),
        "wait_for_approval": lambda: tf.wait_for_approval(bad, timeout_seconds=0),
    }
    for name, call in calls.items():
        with pytest.raises(
            ValueError, match=re.escape("is not an action id: pass the `act_...` id")
        ) as info:
            call()
        assert "`action_request_id`" in str(info.value), name
    assert transport.sent == []


@pytest.mark.parametrize("bad", [".", "..", "act_1/../x", "stuck"], ids=repr)
def test_the_async_client_refuses_them_too(agent: LiveAgent, bad: str) -> None:
    async def main() -> list[tuple[str, str]]:
        transport = AsyncRecording()
        async with AsyncAgentFirewall(
            api_key=agent.key, base_url=agent.server.api_url, transport=transport
        ) as tf:
            for call in (
                lambda: tf.get_action(bad),
                lambda: tf.execute(bad, "t.o.k"),
                lambda: tf.wait_for_approval(bad, timeout_seconds=0),
            ):
                with pytest.raises(ValueError, match="is not an action id"):
                    await call()
        return transport.sent

    assert anyio.run(main) == []


_IDS = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map("".join),
    st.from_regex(WELL_FORMED, fullmatch=True),
)


@given(action_id=_IDS)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_id_reaches_the_actions_own_route_or_nothing_is_sent(
    recorded: tuple[AgentFirewall, Recording], action_id: str
) -> None:
    """Sent as one segment of `/api/v1/actions/`, exactly as written, and answered by the
    action route (its 404 names the id, not `no route`); or refused, nothing sent."""
    tf, transport = recorded
    before = len(transport.sent)
    if not WELL_FORMED.fullmatch(action_id):
        with pytest.raises(ValueError, match="`action_request_id`"):
            tf.get_action(action_id)
        assert len(transport.sent) == before
        return
    with pytest.raises(NotFoundError) as info:
        tf.get_action(action_id)
    assert transport.sent[before:] == [("GET", f"/api/v1/actions/{action_id}")]
    assert f"no action request `{action_id}`" in str(info.value)


def test_a_real_id_still_works(recorded: tuple[AgentFirewall, Recording]) -> None:
    tf, transport = recorded
    result = tf.request_action("github.pr.merge", provider="github", target="acme/api")
    assert tf.get_action(result.action_request_id).status == "allowed"
    assert transport.sent[-1] == ("GET", f"/api/v1/actions/{result.action_request_id}")
