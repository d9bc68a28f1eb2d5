"""A secret in the URL path reaches neither the traffic log nor the refusal.

The security review's case: ``/files/AKIA…/read`` was recorded with its key in the traffic
record's ``path`` (what ``GET /api/v1/traffic`` shows), and ``/x;AKIA…`` was refused with
the path quoted in the reason: the 403 body and the record both held the key. Now the
record of a request on which content detectors fired keeps its path masked as its
approver is shown it, and a refused path is named by the offending character and its
offset, never quoted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall.connectors.paths import decode_segment, split_path
from agentfirewall.errors import ConnectorError
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
GITHUB = "ghp_" + "Zx8Kq2Lm9Np4Rs7Tv1Wy3Ab5Cd6Ef7Gh8Ij9K"
#: What must never show: each secret, and its tail (a secret written with an escape first).
_NEVER = (AWS, AWS[1:], GITHUB, GITHUB[1:])


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (f"/x;{AWS}", "unexpected character `;` at offset 2"),
        (f"/x/{AWS} /y", "unexpected character ` ` at offset 23"),
        (f"/x/{AWS}é", "unexpected character `\\xe9` at offset 23"),
        (f"/{AWS}/%zz", "malformed escape at offset 22"),
        (f"/{AWS}/a%2Fb", "(`%2F` at offset 23)"),
        (f"/{AWS}//x", "empty or dot segment (segment 2)"),
        (f"/{AWS}/%2e%2e/x", "empty or dot segment (segment 2)"),
    ],
)
def test_a_refused_path_is_named_by_its_character_never_quoted(path: str, shown: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        split_path(path, connector="generic")
    assert shown in str(caught.value)
    assert not any(secret in str(caught.value) for secret in _NEVER)


def test_a_segment_that_is_not_utf8_is_refused_without_it() -> None:
    with pytest.raises(ConnectorError) as caught:
        decode_segment(f"{AWS}%ff", connector="generic")
    assert "not UTF-8" in str(caught.value)
    assert AWS not in str(caught.value)


class _World:
    def __init__(self, running: RunningGateway, control: StaticControl) -> None:
        self.running, self.control = running, control

    def get(self, host: str, path: str, extra: bytes = b"") -> tuple[bytes, dict[str, object]]:
        """(the answer, the traffic record shipped for it); `extra`: more header lines, and
        what follows the head."""
        count = len(self.control.traffic)
        with socket.create_connection(("127.0.0.1", self.running.port)) as sock:
            head = f"GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n".encode()
            sock.sendall(head + auth_header() + b"Connection: close\r\n" + (extra or b"\r\n"))
            answer = read_all(sock)
        deadline = time.monotonic() + 5
        while len(self.control.traffic) <= count and time.monotonic() < deadline:
            time.sleep(0.02)
        return answer, dict(self.control.traffic[-1])


def _start(tmp: Path, policies: list[dict[str, object]], **more: Any) -> _World:
    """A gateway with a generic connector for `api.example.org` (never reached: every
    request here is refused); `more`: the snapshot's other parts (kill switches)."""
    generic = connector("generic", domains=["api.example.org"], base_url="http://api.example.org")
    snap = snapshot([rule("http.*", "allow")], connectors=[generic], policies=policies, **more)
    resolve = parse_resolve(["api.example.org:80=127.0.0.1:9"])
    return _World(*start_gateway(tmp, None, snap, resolve=resolve))


_GUARD = {"name": "guard", "document": {"name": "guard", "rules": [
    {"name": "no-secrets", "decision": "deny",
     "conditions": [{"field": "content.secrets", "operator": "exists"}]}]}}  # fmt: skip


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    """A content rule reads requests: the detectors run on each."""
    world = _start(tmp_path_factory.mktemp("scanned"), [_GUARD])
    yield world
    world.running.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    """No content rule: nothing is scanned."""
    world = _start(tmp_path_factory.mktemp("plain"), [])
    yield world
    world.running.stop()


@pytest.mark.parametrize(
    "path",
    [
        f"/files/{AWS}/read",
        f"/files/{GITHUB}",
        "/files/%41" + AWS[1:] + "/read",  # `A` escaped
        f"/x;{AWS}",  # refused by the connector too
        f"/notes/{AWS}/%zz",
    ],
)
def test_neither_the_record_nor_the_refusal_holds_a_secret_in_the_path(
    scanned: _World, path: str
) -> None:
    answer, record = scanned.get("api.example.org", path)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    shown = answer.decode("latin-1") + json.dumps(record)
    assert not any(secret in shown for secret in _NEVER), shown
    assert "[REDACTED:" in str(record["path"])  # masked where it was, the rest kept


@pytest.mark.parametrize("path", [f"/x;{AWS}", f"/{GITHUB}//x", f"/{AWS}/%2F"])
def test_a_path_refusal_never_quotes_it_where_nothing_is_scanned(plain: _World, path: str) -> None:
    """No content rule: the connector's refusal, in the 403 body and the record's reason,
    names the character, not the path."""
    answer, record = plain.get("api.example.org", path)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    reason = json.loads(answer.partition(b"\r\n\r\n")[2])["reason"]
    assert reason.startswith("request not understood by connector `generic`: refused path")
    assert record["reason"] == reason
    assert not any(secret in answer.decode("latin-1") + reason for secret in _NEVER)


_UPGRADE_WITH_BODY = b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nxx"


@pytest.mark.parametrize(
    ("host", "extra", "status"),
    [
        ("evil.example.net", b"", 403),  # no connector for the host
        ("api.example.org", _UPGRADE_WITH_BODY, 400),  # refused before the detectors ran
    ],
)
def test_a_path_refused_before_it_is_scanned_is_recorded_masked(
    scanned: _World, host: str, extra: bytes, status: int
) -> None:
    """Refused before ``decide`` scanned the request, its path was recorded with the key in
    clear: with a content rule in force, the path alone is scanned as soon as it is known."""
    answer, record = scanned.get(host, f"/files/{AWS}/read", extra)
    assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:200]
    assert not any(secret in json.dumps(record) for secret in _NEVER), record
    assert record["path"] == "/files/[REDACTED:aws_access_key]/read"


def test_a_path_the_kill_switch_refuses_is_recorded_masked(tmp_path: Path) -> None:
    switch = {"scope": "all", "target": None, "reason": "incident"}
    world = _start(tmp_path, [_GUARD], kill_switches=[switch])
    try:
        answer, record = world.get("api.example.org", f"/files/{GITHUB}")
    finally:
        world.running.stop()
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert not any(secret in json.dumps(record) for secret in _NEVER), record
    assert "[REDACTED:" in str(record["path"])


def test_without_content_rules_a_refused_path_is_stored_masked(plain: _World) -> None:
    """No content rule reads the request, yet a credential in its path is never recorded:
    the control plane masks every record before it stores it
    (``agentfirewall_server.routes.trafficrows.masked_record``;
    tests/proxy/test_traffic_path_no_credential.py)."""
    from agentfirewall_server.routes.trafficrows import masked_record

    _, record = plain.get("evil.example.net", f"/files/{AWS}/read")
    assert masked_record(record)["path"] == "/files/[REDACTED:aws_access_key]/read"
