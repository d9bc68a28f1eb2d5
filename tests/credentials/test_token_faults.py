"""A token that cannot be had fails closed with a clean 502, whatever went wrong.

The defects (second security review):

- probe 1: a token endpoint answering a ``refresh_token`` with a lone surrogate (valid JSON:
  ``"rt\\ud800z"``) made the gateway's ``prepare`` raise UnicodeEncodeError (building the
  scrubber): the agent's connection was dropped, and, the token being cached first, every
  request of the connector for an hour. The control plane's executor answered 500. Now the
  answer is refused before anything is cached (``test_token_answers.py``), and any exception
  but a CredentialError (a defect) in getting a token or its scrubber is a 502
  ``credential_unavailable`` too, said with its traceback but never its message;
- (read in code) a control plane answering a refresh lease 200 with a body that is no JSON
  object raised ValueError or AttributeError in ``prepare``: a ControlError now, and no
  lease is no refresh (fail closed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.credentials import TokenRequest
from agentfirewall_proxy.control import ControlError, HttpControl
from agentfirewall_proxy.injection import TokenBroker, prepare
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.refreshlease import ControlLeases
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server.executor import _computed_headers
from agentfirewall_server.tokens import ServerTokens
from agentfirewall_server.web import ApiError
from tests.proxy.support import connector, snapshot

SECRET = "cs_0123456789abcdef"
#: What an exception's message may hold (a value it could not handle): never said.
LEAKED = "rt_leaked_in_a_message"
DOCUMENT = {"kind": "oauth2", "client_id": "c", "token_url": "https://auth.example.com/token",
            "client_secret": SECRET}  # fmt: skip
SURROGATE = b'{"access_token": "at_ok_123456", "expires_in": 3600, "refresh_token": "rt\\ud800z"}'


def _gateway(**extra: Any) -> tuple[TokenBroker, Flow, list[str]]:
    oauth2 = connector("generic", domains=["api.example.com"], auth_type="oauth2",
                       credential=json.dumps({**DOCUMENT, **extra}))  # fmt: skip
    entry = compile_snapshot(snapshot(connectors=[oauth2])).connectors["conn_generic_1"]
    said: list[str] = []
    broker = TokenBroker(Options(), say=lambda message, _level: said.append(message))
    return broker, Flow(request_id="r", method="GET", host="api.example.com", connector=entry), said


def _refused(broker: TokenBroker, flow: Flow) -> Refusal:
    with pytest.raises(Refusal) as caught:
        asyncio.run(prepare(broker, flow))
    assert (caught.value.status, caught.value.error) == (502, "credential_unavailable")
    return caught.value


def test_a_refresh_token_no_request_can_carry_is_a_clean_502_every_time() -> None:
    broker, flow, _ = _gateway()
    sent: list[TokenRequest] = []

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        sent.append(request)
        return 200, SURROGATE

    broker.send = send
    for _ in range(3):  # (it was cached: every later request was dropped too)
        assert "refresh_token" in str(_refused(broker, flow))
    assert len(sent) == 3


@pytest.mark.parametrize("where", ["token", "scrubber"])
def test_a_defect_in_getting_a_token_is_a_502_said_without_its_message(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, flow, said = _gateway()

    def defect(*_args: object) -> Any:
        raise UnicodeEncodeError("utf-8", LEAKED, 0, 1, "surrogates not allowed")

    async def failing(*args: object) -> Any:
        defect()

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        return 200, b'{"access_token": "at_ok_123456"}'

    broker.send = send
    monkeypatch.setattr(broker, where, failing if where == "token" else defect)
    refusal = _refused(broker, flow)
    assert "internal error" in str(refusal)
    (message,) = said
    assert "UnicodeEncodeError" in message
    assert "in defect" in message  # (its traceback)
    assert LEAKED not in message
    assert LEAKED not in str(refusal)


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'"lease"', b"null", b"not json", b"\xff", pytest.param(b"[" * 5000, id="deep")],
)
def test_a_lease_answer_that_is_no_object_is_no_lease(body: bytes) -> None:
    """200 with a body that is no JSON object: ValueError or AttributeError reached
    ``prepare``; a ControlError now, and the refresh fails closed (no token request)."""
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=body))
    control = HttpControl("http://127.0.0.1:9", "gw-token", transport=transport)
    broker, flow, _ = _gateway(grant="refresh_token", refresh_token="rt_vaulted_0000")
    broker.leases = ControlLeases(control, "gw_1", lambda _message, _level: None)
    sent: list[TokenRequest] = []

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        sent.append(request)
        return 200, b'{"access_token": "at_ok_123456"}'

    async def asked() -> None:
        with pytest.raises(ControlError) as caught:
            await control.refresh_lease("conn_generic_1", "gw_1")
        assert caught.value.status == 200

    broker.send = send
    asyncio.run(asked())
    assert "no refresh lease" in str(_refused(broker, flow))
    assert sent == []
    asyncio.run(control.aclose())


# -- the control plane's executor (SDK Mode A) ---------------------------------------------


def _execute(tokens: ServerTokens) -> None:
    """The executor's computed headers for a GET through the oauth2 connector."""
    request = HttpRequest("GET", "https", "api.example.com", path="/v1/x")
    state: Any = SimpleNamespace(tokens=tokens)
    generic, secret = get_connector("generic"), json.dumps(DOCUMENT)
    asyncio.run(_computed_headers(state, generic, request, "conn_1", "oauth2", secret))


@pytest.mark.parametrize("fault", ["surrogate", "send", "scrubber"])
def test_an_execution_whose_token_cannot_be_had_is_a_502(
    fault: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor answered 500 to the surrogate (its scrubber); any defect is a 502 now."""
    tokens = ServerTokens(SimpleNamespace())  # type: ignore[arg-type]

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        if fault == "send":
            raise RuntimeError(LEAKED)
        return 200, SURROGATE if fault == "surrogate" else b'{"access_token": "at_ok_123456"}'

    def defect(*_args: object) -> Any:
        raise RuntimeError(LEAKED)

    tokens.broker.send = send
    if fault == "scrubber":
        monkeypatch.setattr(tokens.broker.sent, "scrubber", defect)
    with caplog.at_level(logging.ERROR, "agentfirewall_server.tokens"):
        with pytest.raises(ApiError) as caught:
            _execute(tokens)
    assert (caught.value.status, caught.value.code) == (502, "credential_unavailable")
    assert LEAKED not in caught.value.message
    assert LEAKED not in caplog.text
    assert ("RuntimeError" in caplog.text) is (fault != "surrogate")
