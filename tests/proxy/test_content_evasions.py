"""The content guard reads what the upstream reads, and redaction leaves nothing behind:
the security review's evasions, through the real gateway (raw sockets, a raw upstream).

* A secret as a JSON key, a form field name or a query parameter name is denied, and the
  traffic log's reason shows where it was, never the secret.
* A body read differently by the upstream's parser: a key given twice (the first value
  is the one the guard never saw), UTF-16 JSON without a charset (``json.loads(bytes)``
  decodes it), JSON escapes in a ``text/json``, ``text/plain`` or untyped body.
* ``redact`` forwards none of the secret: a private key sent as a JSON array of its lines
  or without its END line, a 300-character password; a body with a Latin-1 byte is
  rewritten (not dropped with a traceback), its numbers untouched.
* The injected credential echoed base64-encoded at any offset comes back scrubbed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import Background, RunningGateway, connector, rule, snapshot
from tests.proxy.support import start_gateway as start

AWS = "AKIA" + "Q3V7WZ2MXK4PLRTY"
ESCAPED = "AKIA\\u0051" + "3V7WZ2MXK4PLRTY"  # the JSON escape of `Q`
CARD = "4242 4242 4242 4242"
CREDENTIAL = "gen-plain-secret-00000000"
HOSTS = ("deny.example.org", "redact.example.org")
_R = random.Random(11)
PASSWORD = "".join(_R.choice(string.ascii_letters + string.digits) for _ in range(300))
KEY_BODY = "MIIEowIBAAKCAQEA" + "".join(_R.choice(string.ascii_letters) for _ in range(120))

POLICY = {"name": "guard", "rules": [
    {"name": "deny-secrets", "decision": "deny",
     "conditions": [{"field": "content.secrets", "operator": "exists"},
                    {"field": "action_spec.resource.target", "operator": "equals",
                     "value": "deny.example.org"}]},
    {"name": "deny-pii", "decision": "deny",
     "conditions": [{"field": "content.pii", "operator": "exists"},
                    {"field": "action_spec.resource.target", "operator": "equals",
                     "value": "deny.example.org"}]},
    {"name": "redact-all", "decision": "redact",
     "conditions": [{"any": [{"field": "content.secrets", "operator": "exists"},
                             {"field": "content.pii", "operator": "exists"}]},
                    {"field": "action_spec.resource.target", "operator": "equals",
                     "value": "redact.example.org"}]},
]}  # fmt: skip


class Upstream:
    """Records each request's body; answers ``{"ok":true}``, or at ``/reflect`` the
    ``Authorization`` header it got, base64-encoded after 1 to 5 bytes of other data."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.server = Background(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                )
                body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
                self.bodies.append(body)
                answer = b'{"ok":true}'
                if head.split(b" ", 2)[1].endswith(b"/reflect"):
                    auth = fields.get(b"authorization", b"")
                    lead = [b"id=x&"[:n] for n in range(1, 6)]  # (offsets 1, 2, 0, 1, 2)
                    answer = json.dumps({f"at{len(x)}": base64.b64encode(x + auth).decode()
                                         for x in lead}).encode()  # fmt: skip
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%b" % (len(answer), answer))  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


class World:
    def __init__(self, running: RunningGateway, control: StaticControl, up: Upstream) -> None:
        self.running, self.control, self.up = running, control, up

    def send(self, method: str, host: str, path: str, headers: tuple[str, ...] = (),
             body: bytes = b"") -> tuple[bytes, bytes | None]:  # fmt: skip
        """(the answer, the body the upstream got or None if nothing was forwarded)."""
        lines = [f"{method} http://{host}{path} HTTP/1.1", f"Host: {host}", "Connection: close",
                 *headers, f"Content-Length: {len(body)}"]  # fmt: skip
        head, _, rest = ("\r\n".join(lines) + "\r\n\r\n").encode().partition(b"\r\n")
        before = len(self.up.bodies)
        with socket.create_connection(("127.0.0.1", self.running.port)) as sock:
            sock.sendall(head + b"\r\n" + auth_header() + rest + body)
            answer = read_all(sock)
        return answer, self.up.bodies[-1] if len(self.up.bodies) > before else None

    def reasons(self, count: int) -> list[str]:
        time.sleep(0.5)  # (the traffic log is flushed every 0.1 s)
        return [str(r.get("reason", "")) for r in list(self.control.traffic)[-count:]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    up = Upstream()
    conns = [connector("generic", id=f"c_{h.split('.')[0]}", name=h.split(".")[0], domains=[h],
                       credential=CREDENTIAL, base_url=f"http://{h}") for h in HOSTS]  # fmt: skip
    snap = snapshot([rule("http.*", "allow")], connectors=conns,
                    policies=[{"name": "guard", "document": POLICY}])  # fmt: skip
    resolve = parse_resolve([f"{h}:80=127.0.0.1:{up.server.port}" for h in HOSTS])
    tmp: Path = tmp_path_factory.mktemp("evasions")
    running, control = start(tmp, None, snap, resolve=resolve)
    yield World(running, control, up)
    running.stop()
    up.server.stop()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


JSON = ("Content-Type: application/json",)
FORM = ("Content-Type: application/x-www-form-urlencoded",)
NAMES: list[tuple[str, str, tuple[str, ...], bytes]] = [
    ("POST", "/x", JSON, json.dumps({AWS: "card " + CARD}).encode()),
    ("POST", "/x", FORM, f"{AWS}=4242+4242+4242+4242".encode()),
    ("GET", f"/x?{AWS}=4242+4242+4242+4242", (), b""),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), NAMES,
                         ids=["json key", "form field name", "query parameter name"])  # fmt: skip
def test_a_secret_as_a_name_is_denied_and_never_logged(
    world: World, method: str, path: str, headers: tuple[str, ...], body: bytes
) -> None:
    answer, forwarded = world.send(method, "deny.example.org", path, headers, body)
    assert _status(answer) == 403
    assert forwarded is None
    (reason,) = world.reasons(1)
    assert "aws_access_key at" in reason
    assert "[REDACTED:aws_access_key]" in reason
    assert AWS not in reason
    assert AWS.lower() not in reason


READ_AS_THE_UPSTREAM_READS: list[tuple[str, tuple[str, ...], bytes]] = [
    ("duplicate key, secret first", JSON, f'{{"t":"{AWS}","t":"hi"}}'.encode()),
    ("UTF-16 JSON, no charset", JSON, json.dumps({"t": AWS}).encode("utf-16")),
    ("UTF-16-BE JSON, no mark", JSON, json.dumps({"t": AWS}).encode("utf-16-be")),
    ("text/json with an escape", ("Content-Type: text/json",), f'{{"t":"{ESCAPED}"}}'.encode()),
    ("no type, an escape", (), f'{{"t":"{ESCAPED}"}}'.encode()),
    ("text/plain first, then JSON", ("Content-Type: text/plain", *JSON),
     f'{{"t":"{ESCAPED}"}}'.encode()),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "body"), [c[1:] for c in READ_AS_THE_UPSTREAM_READS],
                         ids=[c[0] for c in READ_AS_THE_UPSTREAM_READS])  # fmt: skip
def test_a_secret_the_upstream_parser_would_read_is_denied(
    world: World, headers: tuple[str, ...], body: bytes
) -> None:
    answer, forwarded = world.send("POST", "deny.example.org", "/x", headers, body)
    assert _status(answer) == 403, answer[:300]
    assert forwarded is None


def _upstream_reads(body: bytes) -> str:
    """Everything a JSON reader could take from `body` (every member of every object)."""
    try:
        return json.dumps(json.loads(body, object_pairs_hook=lambda p: p))
    except ValueError:
        return body.decode("utf-8", "replace")


def test_redacting_a_private_key_sent_line_by_line_forwards_none_of_it(world: World) -> None:
    lines = ["-----BEGIN RSA PRIVATE KEY-----", KEY_BODY[:64], KEY_BODY[64:],
             "-----END RSA PRIVATE KEY-----", "next"]  # fmt: skip
    answer, forwarded = world.send("POST", "redact.example.org", "/x", JSON,
                                   json.dumps({"file_lines": lines, "n": 1}).encode())  # fmt: skip
    assert _status(answer) == 200
    assert forwarded is not None
    assert json.loads(forwarded) == {"file_lines": ["[REDACTED:private_key]"] * 4 + ["next"],
                                     "n": 1}  # fmt: skip


@pytest.mark.parametrize(("headers", "body"), [
    (("Content-Type: text/plain",), f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY[:64]}\n"
                                    f"{KEY_BODY[64:]}\n".encode()),
    (("Content-Type: text/plain",), f"password={PASSWORD}\n".encode()),
    (JSON, json.dumps({"lines": ["-----BEGIN RSA PRIVATE KEY-----", KEY_BODY[:64],
                                 KEY_BODY[64:]]}).encode()),
], ids=["key without END", "300-character password", "key lines without END"])  # fmt: skip
def test_redaction_forwards_no_part_of_the_secret(
    world: World, headers: tuple[str, ...], body: bytes
) -> None:
    answer, forwarded = world.send("POST", "redact.example.org", "/x", headers, body)
    assert _status(answer) == 200
    assert forwarded is not None
    read = _upstream_reads(forwarded)
    for part in (KEY_BODY[:20], KEY_BODY[-20:], PASSWORD[-40:], PASSWORD[:40]):
        assert part not in read


def test_redaction_rewrites_only_the_strings_that_held_a_detection(world: World) -> None:
    body = (b'{"name":"Jos\xe9","amount":1.10,"big":1e400,"id":12345678901234567890123,'
            b'"t":"card ' + CARD.encode() + b'","t":"card ' + CARD.encode() + b'"}')  # fmt: skip
    answer, forwarded = world.send("POST", "redact.example.org", "/x", JSON, body)
    assert _status(answer) == 200
    assert forwarded == body.replace(CARD.encode(), b"[REDACTED:card_number]")


def test_an_echoed_credential_is_scrubbed_at_any_base64_offset(world: World) -> None:
    answer, _ = world.send("GET", "redact.example.org", "/reflect")
    assert _status(answer) == 200
    echoed: dict[str, Any] = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert len(echoed) == 5
    for value in echoed.values():
        letters = "".join(c for c in value if c.isalnum() or c in "+/")
        for shift in range(4):
            part = letters[shift:][: (len(letters) - shift) // 4 * 4]
            assert CREDENTIAL.encode() not in base64.b64decode(part)
