"""An ``Upgrade`` request is decided on its head alone, so only a bodiless GET may ask.

httptools (llhttp) switches at the end of an upgrade's head: a body after it became the
upgraded stream's first bytes, the gateway decided the request as bodiless and sent it on
with ``Content-Length: 0``. A Stripe refund of ``amount=500`` reached Stripe without its
amount: a refund of the whole charge. Now an ``Upgrade`` request with a body
(``Content-Length`` above 0 or chunked) or another method than GET is refused (400), never
forwarded; WebSocket handshakes pass as before (``test_features.py``, ``test_scrub_live.py``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.proxy.rawclient import auth_header, read_all, read_response
from tests.proxy.rawupstream import RawUpstream, json_body, start_raw_gateway, status_of
from tests.proxy.support import RunningGateway, connector, rule

STRIPE = "api.stripe.com"
APP = "app.example.org"
UPGRADE = ("Connection: Upgrade", "Upgrade: websocket")
FORM = "Content-Type: application/x-www-form-urlencoded"


class World:
    def __init__(self, running: RunningGateway, upstream: RawUpstream) -> None:
        self.running, self.upstream = running, upstream

    def send(self, first: str, host: str, headers: tuple[str, ...], body: bytes = b"") -> bytes:
        """One request as raw bytes; the first answer (all that comes, when it closes)."""
        lines = [first, f"Host: {host}", *headers]
        head = ("\r\n".join(lines) + "\r\n").encode() + auth_header() + b"\r\n"
        with socket.create_connection(("127.0.0.1", self.running.port), timeout=10) as sock:
            sock.sendall(head + body)
            return read_response(sock, 10)

    def forwarded(self, path: str) -> list[bytes]:
        return [head for head, _ in self.upstream.received if head.split(b" ")[1] == path.encode()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    upstream = RawUpstream()
    connectors = [connector("stripe", base_url=f"http://{STRIPE}"),
                  connector("generic", domains=[APP], credential=None)]  # fmt: skip
    rules = [rule("stripe.refund.create", "allow"), rule("http.*", "allow")]
    running, _ = start_raw_gateway(tmp_path_factory.mktemp("upgrade"), upstream, connectors,
                                   rules)  # fmt: skip
    yield World(running, upstream)
    running.stop()
    upstream.stop()


def test_a_refund_with_an_upgrade_never_reaches_stripe_without_its_amount(world: World) -> None:
    path = "/v1/charges/ch_1/refunds"
    first = f"POST http://{STRIPE}{path} HTTP/1.1"
    answer = world.send(first, STRIPE, (FORM, *UPGRADE, "Content-Length: 10"), b"amount=500")
    assert status_of(answer) == 400
    assert "cannot carry a body" in json_body(answer)["reason"]
    assert world.forwarded(path) == []
    answer = world.send(first, STRIPE, (FORM, "Content-Length: 10"), b"amount=500")
    assert status_of(answer) == 200  # without the Upgrade: forwarded with its body
    assert world.upstream.received[-1][1] == b"amount=500"


REFUSED = {
    "websocket, length": ("POST", (FORM, *UPGRADE, "Content-Length: 3"), b"a=1", "a body"),
    "websocket, chunked": ("POST", (FORM, *UPGRADE, "Transfer-Encoding: chunked"),
                           b"3\r\na=1\r\n0\r\n\r\n", "a body"),
    "GET with a body": ("GET", (*UPGRADE, "Content-Length: 3"), b"a=1", "a body"),
    "h2c (curl --http2 -d)": ("POST", (FORM, "Connection: Upgrade, HTTP2-Settings",
                                       "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
                                       "Content-Length: 3"), b"a=1", "a body"),
    "no Connection: upgrade": ("POST", (FORM, "Upgrade: websocket", "Content-Length: 3"),
                               b"a=1", "a body"),
    "expect 100-continue": ("POST", (FORM, *UPGRADE, "Expect: 100-continue",
                                     "Content-Length: 3"), b"", "a body"),
    "POST without a body": ("POST", (*UPGRADE, "Content-Length: 0"), b"", "only a GET"),
    "DELETE": ("DELETE", UPGRADE, b"", "only a GET"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSED))
def test_an_upgrade_with_a_body_or_not_a_get_is_refused(world: World, name: str) -> None:
    method, headers, body, reason = REFUSED[name]
    path = "/refused/" + name.replace(" ", "-")
    answer = world.send(f"{method} http://{APP}{path} HTTP/1.1", APP, headers, body)
    assert status_of(answer) == 400, answer
    assert json_body(answer)["error"] == "bad_request"
    assert reason in json_body(answer)["reason"]
    assert world.forwarded(path) == []


def test_an_upgrade_header_the_parser_does_not_switch_on_is_a_plain_request(
    world: World,
) -> None:
    """Without ``Connection: upgrade`` there is no switch: answered (it used to wait for the
    end of a body already taken), and forwarded without the ``Upgrade``."""
    answer = world.send(f"GET http://{APP}/stray HTTP/1.1", APP, ("Upgrade: websocket",))
    assert status_of(answer) == 200
    (head,) = world.forwarded("/stray")
    assert b"upgrade" not in head.lower()


def test_an_upgrade_the_upstream_declines_closes_the_connection(world: World) -> None:
    """After a switch the parser reads nothing more: a connection kept open would hang."""
    head = (f"GET http://{APP}/declined HTTP/1.1\r\nHost: {APP}\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\n").encode() + auth_header() + b"\r\n"  # fmt: skip
    with socket.create_connection(("127.0.0.1", world.running.port), timeout=10) as sock:
        sock.sendall(head)
        answer = read_all(sock, 10)
    assert status_of(answer) == 200
    assert b"Connection: close" in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert len(world.forwarded("/declined")) == 1
