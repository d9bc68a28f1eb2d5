"""A WebSocket's messages are relayed unread, so where a content rule could apply to its
action the upgrade is refused (403) before anything reaches the upstream, either way.

The security review's case: rules denied ``content.pii`` and cut ``response.secrets``;
once the handshake was allowed, frames carried the agent's card number upstream and the
upstream's key back to the agent. Through the real gateway, raw sockets both sides.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import Background, connector, rule, snapshot, start_gateway

CARD = "4242 4242 4242 4242"
AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
HOST = "ws.example.org"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _policy(*rules: dict[str, Any], scope: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "guard", **({"scope": scope} if scope else {}), "rules": list(rules)}


DENY_PII = {"name": "deny-pii", "decision": "deny",
            "conditions": [{"field": "content.pii", "operator": "exists"}]}  # fmt: skip
HOLD_PII = {**DENY_PII, "name": "hold-pii", "decision": "require_approval"}
REDACT_PII = {**DENY_PII, "name": "redact-pii", "decision": "redact"}
CUT_SECRETS = {"name": "cut-secrets", "decision": "deny",
               "conditions": [{"field": "response.secrets", "operator": "exists"}]}  # fmt: skip
REDACT_SECRETS = {**CUT_SECRETS, "name": "redact-secrets", "decision": "redact"}


class _WsUpstream:
    """Accepts a WebSocket handshake, reads one message, answers with a key in a frame."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.messages: list[bytes] = []
        self.server = Background(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # noqa: S324 (RFC 6455)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                     b"Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        _, size = await reader.readexactly(2)
        mask = await reader.readexactly(4)
        data = await reader.readexactly(size & 0x7F)
        self.messages.append(bytes(c ^ mask[i % 4] for i, c in enumerate(data)))
        reply = f"the key is {AWS}".encode()
        writer.write(bytes((0x81, len(reply))) + reply)
        await writer.drain()
        await reader.read()  # until the client goes


def _handshake(port: int) -> tuple[bytes, bytes]:
    """(the handshake's answer head, what came after it once a masked card was sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET http://{HOST}/socket HTTP/1.1\r\nHost: {HOST}\r\n".encode()
                     + auth_header() + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 101"):
            message, mask = f"card {CARD}".encode(), os.urandom(4)
            sock.sendall(bytes((0x81, 0x80 | len(message))) + mask
                         + bytes(c ^ mask[i % 4] for i, c in enumerate(message)))  # fmt: skip
            while len(rest) < 2 + len(f"the key is {AWS}") and (chunk := sock.recv(65536)):
                rest += chunk
        else:  # a refusal: its JSON body, then the connection closes
            rest += read_all(sock)
    return head, rest


def _run(
    tmp: Path, policy: dict[str, Any], level: str = "full_enforce"
) -> tuple[bytes, bytes, _WsUpstream, dict[str, Any]]:
    """The handshake through a gateway with `policy`: (answer head, what followed, the
    upstream, the traffic record)."""
    up = _WsUpstream()
    generic = connector("generic", domains=[HOST], base_url=f"http://{HOST}")
    snap = snapshot([rule("http.*", "allow")], connectors=[generic], level=level,
                    policies=[{"name": "guard", "document": policy}])  # fmt: skip
    resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{up.server.port}"])
    running, control = start_gateway(tmp, None, snap, resolve=resolve)
    try:
        head, rest = _handshake(running.port)
        deadline = time.monotonic() + 5
        while not control.traffic and time.monotonic() < deadline:
            time.sleep(0.02)
        return head, rest, up, dict(control.traffic[-1])
    finally:
        running.stop()
        up.server.stop()


@pytest.mark.parametrize(
    ("rules", "label"),
    [
        ((DENY_PII,), "deny-pii"),  # the agent's messages: denied on what they carry
        ((HOLD_PII,), "hold-pii"),
        ((REDACT_PII,), "redact-pii"),
        ((CUT_SECRETS,), "cut-secrets"),  # the upstream's messages: cut on what they carry
        ((REDACT_SECRETS,), "redact-secrets"),
    ],
)
def test_an_upgrade_a_content_rule_could_apply_to_is_refused(
    tmp_path: Path, rules: tuple[dict[str, Any], ...], label: str
) -> None:
    head, rest, up, record = _run(tmp_path, _policy(*rules))
    assert head.startswith(b"HTTP/1.1 403"), head
    reason = json.loads(rest)["reason"]
    assert reason.startswith("content rules cannot inspect WebSocket messages")
    assert f"`guard/{label}`" in reason
    assert up.heads == []  # the upstream never heard of it: no frame went either way
    assert (record["decision"], record["status_code"]) == ("deny", 403)
    assert record["reason"] == reason


def test_an_upgrade_no_content_rule_applies_to_is_relayed(tmp_path: Path) -> None:
    """A content rule scoped to other actions does not stop it (nor do allow rules)."""
    policy = _policy(DENY_PII, CUT_SECRETS, scope={"action_types": ["http.post"]})
    head, rest, up, _ = _run(tmp_path, policy)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert up.messages == [f"card {CARD}".encode()]
    assert rest.endswith(f"the key is {AWS}".encode())


def test_monitor_relays_it_and_records_what_enforcing_would_do(tmp_path: Path) -> None:
    head, _, up, record = _run(tmp_path, _policy(DENY_PII, CUT_SECRETS), level="monitor")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert len(up.heads) == 1
    assert (record["decision"], record["would_outcome"]) == ("allow", "would_deny")
    assert "content rules cannot inspect WebSocket messages" in record["reason"]
