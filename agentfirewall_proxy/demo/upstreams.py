"""Fake GitHub and Stripe for `tf demo`: real HTTP over real TLS on 127.0.0.1, no network.

Each answers a few routes as the real API would, only when the request carries the
credential the demo gave its connector (so a 200 proves the gateway injected it: the agent
holds none), and records what reached it (so the demo shows what never did).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

from agentfirewall_proxy.certs import load_or_create_ca, mint_leaf

__all__ = ["FakeApi", "Upstreams"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Route = tuple[int, dict[str, Any] | None]

_GITHUB: dict[tuple[str, str], Route] = {
    ("GET", "/repos/acme/api"): (200, {"full_name": "acme/api", "default_branch": "main"}),
    ("DELETE", "/repos/acme/api"): (204, None),
    ("PUT", "/repos/acme/api/pulls/7/merge"): (200, {"merged": True, "message": "merged"}),
}
_STRIPE: dict[tuple[str, str], Route] = {
    ("GET", "/v1/balance"): (200, {"object": "balance", "available": [{"amount": 4200}]}),
}


class FakeApi:
    """One upstream as an ASGI app: its routes, its credential, what it received."""

    def __init__(self, name: str, host: str, token: str, routes: dict[tuple[str, str], Route]):
        self.name = name
        self.host = host
        self.token = token
        self.routes = routes
        self.received: list[tuple[str, str]] = []
        self.port = 0

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        given = value.decode("latin-1").rpartition(" ")[2]
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        method, path = str(scope["method"]), str(scope["path"])
        self.received.append((method, path))
        answer: Route = (401, {"message": "Bad credentials"})
        if self._authorized(list(scope["headers"])):
            answer = self.routes.get((method, path), (404, {"message": "Not Found"}))
        status, body = answer
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Upstreams:
    """GitHub and Stripe on free ports, with certificates from their own throwaway CA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = load_or_create_ca(directory)
        self.ca_path = directory / "ca.crt"
        self.github = FakeApi("github", "api.github.com", "ghp_demo" + secrets.token_hex(16),
                              _GITHUB)  # fmt: skip
        self.stripe = FakeApi("stripe", "api.stripe.com", "sk_test_demo" + secrets.token_hex(12),
                              _STRIPE)  # fmt: skip
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []

    @property
    def apis(self) -> tuple[FakeApi, FakeApi]:
        return self.github, self.stripe

    def resolve(self) -> dict[tuple[str, int | None], tuple[str, int]]:
        """What the gateway dials instead of the real hosts (its ``--resolve``)."""
        return {(api.host, 443): ("127.0.0.1", api.port) for api in self.apis}

    async def start(self) -> None:
        for api in self.apis:
            chain, key = mint_leaf(self.ca, api.host)
            cert_file, key_file = (
                self.directory / f"{api.name}.crt",
                self.directory / f"{api.name}.key",
            )
            cert_file.write_bytes(chain)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            api.port = sock.getsockname()[1]
            config = uvicorn.Config(
                api,
                log_level="error",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(cert_file),
                ssl_keyfile=str(key_file),
            )
            server = _Server(config)
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            self._servers.append((server, task))
            while not server.started:  # uvicorn exposes `started` as a flag only
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._servers), return_exceptions=True)
