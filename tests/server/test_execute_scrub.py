"""SDK Mode A never hands the agent the credential it injected: an upstream that echoes it
(in its JSON body, its headers, base64'd or percent-encoded, gzip'd on the wire) answers
an execute whose result carries the redaction marker in its place. The same class of bug
the gateway's scrubbing closes, on the control plane's path."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from agentfirewall.scrubbing import MARKER
from tests.fakes.base import FakeUpstreams
from tests.fakes.reflect import reflector
from tests.server.conftest import Harness

SECRET = "whsec_Real0Credential1Never2Echoed3"


@pytest.fixture(scope="module")
def echo() -> Iterator[FakeUpstreams]:
    running = FakeUpstreams([reflector(("echo.example.com",))]).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("query", ["", "?forms=1", "?encoding=gzip", "?cut=7&length=1"])
def test_an_echoed_credential_is_scrubbed_from_the_result(
    harness_factory: Any, echo: FakeUpstreams, query: str
) -> None:
    h: Harness = harness_factory(webhook_allow_hosts=["127.0.0.1"])
    fake = next(iter(echo.fakes.values()))
    answer = h.admin("POST", "/v1/connectors", json={  # (a plain host, declared)
        "type": "generic", "domains": ["127.0.0.1"], "base_url": fake.http_url, "token": SECRET,
    })  # fmt: skip
    assert answer.status_code == 201, answer.text
    key = h.create_agent("Bot", sdk_default="allow")
    target = f"{fake.http_url}/echo{query}"
    spec = {"type": "http.get", "resource": {"provider": "generic", "target": target}}
    asked = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    result = h.agent(key, "POST", f"/v1/actions/{asked['action_request_id']}/execute",
                     json={"decision_token": asked["decision_token"]})  # fmt: skip
    assert result.status_code == 200, result.text
    (seen,) = fake.received("GET")[-1:]
    assert seen.header("authorization") == f"Bearer {SECRET}"  # it was injected, and echoed
    text = result.text
    for form in (SECRET, base64.b64encode(SECRET.encode()).decode(), quote(SECRET, safe="")):
        assert form not in text
    assert MARKER.decode() in json.dumps(result.json()["result"])
