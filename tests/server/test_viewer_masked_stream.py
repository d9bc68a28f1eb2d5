"""A viewer never reads an action's secrets on the event stream or in the traffic rows.

`GET /api/v1/events` sends each approval (`approval.created`, `approval.decided`) with its
action spec, and `GET /api/v1/traffic` each row's stored decision input (`input`: the
resource, parameters and risk hints a rule may read, of the gateway's requests and of the
SDK's actions the shadow configuration decided otherwise). A caller whose role cannot
approve (a viewer: its session or its API token) reads them masked as
`GET /api/v1/approvals` masks a spec (tests/server/test_viewer_masked.py); a member and up
read them as sent. Before, a viewer's stream and traffic list held every value as sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.livesrv import LiveServer
from tests.server.test_viewer_masked import (
    ALLOWED,
    HELD,
    HOLD,
    SECRETS,
    _reader,
    _request,
    _session,
    _spec,
    _stored_token,
    _user,
)

SHADOW_DENIES = """\
name: shadow-denies-all
rules:
  - name: nothing
    conditions: [{field: action_spec.type, operator: glob, value: "*"}]
    decision: deny
"""
#: A gateway's traffic record whose stored input keeps values no secret name withholds.
GATEWAY_INPUT = {
    "v": 1, "t": "http.post", "m": "proxy",
    "r": {"provider": "generic", "target": f"https://ops:{SECRETS['the password in a URL']}@x.io"},
    "p": {"note": f"then password={SECRETS['password= inside a text']}", "to": "a@b.example",
          "found": SECRETS["an AWS key"]},
}  # fmt: skip


@dataclass
class Stream:
    """`GET /api/v1/events` read in a thread by one reader: what it got."""

    events: list[tuple[str, Any]]
    text: list[str]
    done: threading.Event


def _listen(client: httpx.Client, count: int) -> Stream:
    stream = Stream([], [], threading.Event())
    ready = threading.Event()

    def listen() -> None:
        try:
            with client.stream("GET", "/api/v1/events", timeout=30) as answer:
                kind = ""
                for line in answer.iter_lines():
                    if line.startswith(": connected"):
                        ready.set()
                    elif line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: ") and kind.startswith("approval."):
                        stream.text.append(line)
                        stream.events.append((kind, json.loads(line.removeprefix("data: "))))
                        if len(stream.events) >= count:
                            return
        finally:
            ready.set()
            stream.done.set()

    threading.Thread(target=listen, daemon=True).start()
    assert ready.wait(20)
    return stream


@dataclass
class Desk:
    server: LiveServer
    key: str
    readers: dict[str, httpx.Client]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    server = LiveServer.start(tmp_path_factory.mktemp("viewer-stream") / "tf")
    readers: dict[str, httpx.Client] = {}
    try:
        assert server.admin("POST", "/v1/policies", {"document": HOLD}).status_code == 201
        shadow = server.admin("POST", "/v1/shadow/policies", {"document": SHADOW_DENIES})
        assert shadow.status_code == 201, shadow.text
        viewer = _user(server, "viewer@example.com", "viewer")
        _user(server, "member@example.com", "member")
        token = _stored_token(server, viewer, "viewer")
        key = server.create_agent("Bot", sdk_default="allow", rate_limit_per_minute=100_000)
        readers = {
            "viewer session": _session(server, "viewer@example.com"),
            "viewer token": _reader(server, token),
            "member session": _session(server, "member@example.com"),
        }
        yield Desk(server, key, readers)
    finally:
        for reader in readers.values():
            reader.close()
        server.stop()


def _leaked(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_a_viewer_s_event_stream_holds_no_secret_of_an_approval(desk: Desk) -> None:
    streams = {name: _listen(reader, 2) for name, reader in desk.readers.items()}
    held = _request(desk.server, desk.key, _spec(HELD))
    member = desk.readers["member session"]
    csrf = member.get("/api/v1/auth/me").json()["csrf_token"]
    decided = member.post(f"/api/v1/approvals/{held['approval']['id']}/deny", json={},
                          headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert decided.status_code == 200, decided.text
    for name, stream in streams.items():
        assert stream.done.wait(30), name
        kinds = [kind for kind, _ in stream.events]
        assert kinds == ["approval.created", "approval.decided"], name
        text = "\n".join(stream.text)
        if name.startswith("viewer"):
            assert _leaked(text) == [], name
            assert [data["id"] for _, data in stream.events] == [held["approval"]["id"]] * 2
        else:
            assert [data["action_spec"] for _, data in stream.events] == [_spec(HELD)] * 2


def test_a_viewer_s_traffic_rows_hold_no_secret_of_an_input(desk: Desk) -> None:
    _request(desk.server, desk.key, _spec(ALLOWED))  # decided otherwise by the shadow policy
    record = {"request_id": "req-viewer-1", "agent": "Bot", "connector": "generic",
              "action": "http.post", "decision": "allow", "input": GATEWAY_INPUT}  # fmt: skip
    sent = desk.server.gateway("POST", "/v1/gateway/traffic", {"records": [record]})
    assert sent.status_code == 200, sent.text
    for path in ("/api/v1/traffic", "/api/v1/traffic?shadow=diverged"):
        for name, reader in desk.readers.items():
            listed = reader.get(path)
            assert listed.status_code == 200, listed.text
            rows = listed.json()["traffic"]
            assert rows, (name, path)
            if name.startswith("viewer") or path == "/api/v1/traffic":
                # (a gateway's record is stored with no credential in its input, whoever
                # reads it: tests/proxy/test_traffic_path_no_credential.py)
                assert _leaked(listed.text) == [], (name, path)
            else:
                assert _leaked(listed.text) != [], (name, path)  # the SDK's, as it was sent
