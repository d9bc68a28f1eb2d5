"""A secret joined to a word is refused by a ``content.secrets`` deny rule, through the gateway.

Known gap, closed: a request whose JSON body or query held ``x-amz-meta-sk-proj-<key>``
(a key joined to a header's prefix by ``-``, which its random part may hold), or
``meta%2Dghp_…``, went through a gateway whose deny rule refuses the same key alone. Now
both are refused 403, the traffic record's reason naming the detector and where, neither
the answer nor the record holding the key; a word that only looks joined
(``x-amz-meta-sk-learn``) is not refused.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.proxy.rawclient import auth_header, read_all
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

OPENAI = "sk-proj-" + "Ab3De5Fg7Hj9Kl1Mn2Pq4Rs6Tu8Vw0Xy2Za4Bc6De8_Qz7-Wk"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
#: (joined text, the detector that finds its secret, the secret)
JOINED = [
    (f"x-amz-meta-{OPENAI}", "openai_key", OPENAI),
    (f"meta%2D{GITHUB}", "github_token", GITHUB),
    (f"id-{JWT}", "jwt", JWT),
    (f"x-{SLACK}", "slack_token", SLACK),
]
_GUARD = {"name": "guard", "document": {"name": "guard", "rules": [
    {"name": "no-secrets", "decision": "deny",
     "conditions": [{"field": "content.secrets", "operator": "exists"}]}]}}  # fmt: skip


class _World:
    def __init__(self, running: RunningGateway, control: StaticControl) -> None:
        self.running, self.control = running, control

    def send(self, target: str, body: bytes = b"") -> tuple[int, str, dict[str, object]]:
        """(status, the answer's text, the traffic record shipped for it)."""
        count = len(self.control.traffic)
        head = f"POST http://api.example.org{target} HTTP/1.1\r\nHost: api.example.org\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        with socket.create_connection(("127.0.0.1", self.running.port)) as sock:
            sock.sendall(head.encode() + auth_header() + b"Connection: close\r\n\r\n" + body)
            answer = read_all(sock)
        deadline = time.monotonic() + 5
        while len(self.control.traffic) <= count and time.monotonic() < deadline:
            time.sleep(0.02)
        record = dict(self.control.traffic[-1]) if len(self.control.traffic) > count else {}
        return int(answer.split(b" ", 2)[1]), answer.decode("latin-1"), record


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    """A gateway with a deny rule on ``content.secrets`` and a generic connector whose
    upstream is never reached (a request let through fails to connect: 502)."""
    generic = connector("generic", domains=["api.example.org"], base_url="http://api.example.org")
    snap = snapshot([rule("http.*", "allow")], connectors=[generic], policies=[_GUARD])
    resolve = parse_resolve(["api.example.org:80=127.0.0.1:9"])
    running, control = start_gateway(tmp_path_factory.mktemp("joined"), None, snap,
                                     resolve=resolve)  # fmt: skip
    yield _World(running, control)
    running.stop()


def _said(answer: str, record: dict[str, object], secret: str) -> None:
    shown = answer + json.dumps(record)
    assert secret[4:24] not in shown, shown


@pytest.mark.parametrize(("text", "detector", "secret"), JOINED, ids=[j[1] for j in JOINED])
def test_a_joined_secret_in_a_json_body_is_refused(
    world: _World, text: str, detector: str, secret: str
) -> None:
    status, answer, record = world.send("/v1/notes", json.dumps({"meta": secret}).encode())
    assert status == 403, answer  # the key alone: refused, before and after
    status, answer, record = world.send("/v1/notes", json.dumps({"meta": text}).encode())
    assert status == 403, answer
    assert f"{detector} at body.meta" in str(record["reason"]), record
    _said(answer, record, secret)


@pytest.mark.parametrize(("text", "detector", "secret"), JOINED, ids=[j[1] for j in JOINED])
def test_a_joined_secret_in_the_query_is_refused(
    world: _World, text: str, detector: str, secret: str
) -> None:
    status, answer, record = world.send(f"/v1/notes?q={quote(text)}")
    assert status == 403, answer
    assert f"{detector} at query.q" in str(record["reason"]), record
    _said(answer, record, secret)
    status, answer, record = world.send(f"/v1/notes?{quote(text)}=1")  # as a name
    assert status == 403, answer
    _said(answer, record, secret)


def test_a_word_that_only_looks_joined_is_let_through(world: _World) -> None:
    body = json.dumps({"meta": "x-amz-meta-sk-learn"}).encode()
    status, answer, _ = world.send("/v1/notes?q=x-amz-meta-sk-your-key-here", body)
    assert status != 403, answer
