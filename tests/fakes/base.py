"""The machinery shared by every fake upstream: real HTTP and real TLS on 127.0.0.1.

Each :class:`FakeUpstream` is a Starlette app served by uvicorn twice: over TLS with a
certificate for its real hostnames (issued by one trustme CA) and over plain HTTP, both on
ephemeral ports. Every request it receives is recorded (method, path, query, headers, body)
before the app sees it, so tests can assert what reached "GitHub" and what did not.

:class:`FakeUpstreams` runs a set of fakes on one background event loop in a daemon thread,
so sync tests, anyio tests and subprocess-based tests can all use them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import trustme
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    scheme: str

    @property
    def host(self) -> str | None:
        return self.header("host")

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.headers if k == lowered]

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def raw_text(self) -> str:
        """Every header and the body as text: for "this secret never arrived" assertions."""
        lines = [f"{k}: {v}" for k, v in self.headers]
        return (
            "\n".join([f"{self.method} {self.path}?{self.query}", *lines])
            + "\n"
            + (self.body.decode("utf-8", "replace"))
        )


@dataclass
class FakeUpstream:
    """A fake API: its hostnames, its app, and what it received."""

    name: str
    hostnames: tuple[str, ...]
    app: ASGIApp
    requests: list[RecordedRequest] = field(default_factory=list)
    tls_port: int = 0
    http_port: int = 0
    #: Free-form knobs the apps read (e.g. OpenAI's ``stream_delay``).
    settings: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hostname(self) -> str:
        return self.hostnames[0]

    @property
    def url(self) -> str:
        """The TLS endpoint by IP (certificate also covers 127.0.0.1)."""
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def resolve_entries(self) -> list[str]:
        """``--resolve`` entries: every hostname to the TLS port, and ``:80`` to plain HTTP."""
        entries = []
        for host in self.hostnames:
            entries.append(f"{host}=127.0.0.1:{self.tls_port}")
            entries.append(f"{host}:80=127.0.0.1:{self.http_port}")
        return entries

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def received(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally filtered by method and exact path."""
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def last(self) -> RecordedRequest:
        with self._lock:
            if not self.requests:
                raise AssertionError(f"fake `{self.name}` received no request")
            return self.requests[-1]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests were received (or raise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"fake `{self.name}` received {len(self.requests)} < {count}")

    def asgi(self, scheme: str) -> ASGIApp:
        """The app wrapped by the recorder (reads the whole body, then replays it)."""

        async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            self.record(
                RecordedRequest(
                    method=scope["method"],
                    path=scope["raw_path"].decode("latin-1")
                    if scope.get("raw_path")
                    else scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    headers=tuple(
                        (k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in scope["headers"]
                    ),
                    body=body,
                    scheme=scheme,
                )
            )
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)

        return recorder


class FakeUpstreams:
    """Run fakes on 127.0.0.1 (TLS + plain HTTP each) until :meth:`stop`.

    ``ca_path`` is the PEM of the CA that signed every fake's certificate: give it to the
    gateway as ``--upstream-ca``, or to a client that talks to a fake directly.
    """

    def __init__(self, fakes: Iterable[FakeUpstream]) -> None:
        self.fakes = {f.name: f for f in fakes}
        self.ca = trustme.CA()
        self._dir = tempfile.TemporaryDirectory(prefix="tf-fakes-")
        self.ca_path = Path(self._dir.name) / "fake-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._servers: list[uvicorn.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the fakes' CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def __getitem__(self, name: str) -> FakeUpstream:
        return self.fakes[name]

    def resolve_entries(self) -> list[str]:
        return [e for f in self.fakes.values() for e in f.resolve_entries()]

    def start(self) -> FakeUpstreams:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_all())
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_until_complete(self._serve_until_stopped())
            loop.close()

        self._thread = threading.Thread(target=run, name="tf-fakes", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    async def _start_all(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        for fake in self.fakes.values():
            leaf = self.ca.issue_cert(*fake.hostnames, "localhost", "127.0.0.1")
            base = Path(self._dir.name) / fake.name
            leaf.cert_chain_pems[0].write_to_path(str(base) + ".crt")
            for blob in leaf.cert_chain_pems[1:]:
                blob.write_to_path(str(base) + ".crt", append=True)
            leaf.private_key_pem.write_to_path(str(base) + ".key")
            fake.tls_port = await self._serve(
                fake.asgi("https"), certfile=f"{base}.crt", keyfile=f"{base}.key"
            )
            fake.http_port = await self._serve(fake.asgi("http"))

    async def _serve(
        self, app: ASGIApp, certfile: str | None = None, keyfile: str | None = None
    ) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        server.config.install_signal_handlers = False  # type: ignore[attr-defined]
        self._servers.append(server)
        self._tasks.append(asyncio.ensure_future(server.serve(sockets=[sock])))
        while not server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
            await asyncio.sleep(0.005)
        port: int = sock.getsockname()[1]
        return port

    async def _serve_until_stopped(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._dir.cleanup()

    def __enter__(self) -> FakeUpstreams:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
