"""The stand-ins `tf run`'s Node preload is tested against (tests/cli/test_node_*preload*.py).

Servers on 127.0.0.1 that record every request: origins that answer whoever connects (a client
that went around the gateway succeeds quietly, so none may ever see a request unless NO_PROXY
names its host), and a gateway that answers like a forward proxy (absolute-form requests and
CONNECT, whose tunnel it opens with a certificate the test CA signed to read the request
inside; a wrong proxy credential gets 407). ``Stage.env`` is what `tf run` gives a Node agent.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

from agentfirewall_proxy.cli.run_cmd import NODE_PRELOAD
from agentfirewall_proxy.runenv import control_plane_hosts, proxy_url_for

KEY = "aaf_test_" + "k3y" * 8
GATEWAY_AUTH = "Basic " + base64.b64encode(f"Bot:{KEY}".encode()).decode()
REMOTE = "https://cp.example.com"  # a remote control plane: loopback is not exempt
LOCAL = "http://127.0.0.1:3000"  # `tf up`: both loopback names are


@dataclass(frozen=True)
class Seen:
    """One request as a server read it."""

    method: str
    target: str  # the request line's: an absolute URL, a CONNECT authority, or a path
    host: str | None
    proxy_auth: str | None
    probe: str | None
    tunnel: str | None  # the CONNECT authority a request came through, if any


def _head(conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _skip_body(conn: socket.socket, buffer: bytes, length: int) -> bytes:
    while len(buffer) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("body cut short")
        buffer += chunk
    return buffer[length:]


def _skip_chunked(conn: socket.socket, buffer: bytes) -> bytes:
    """Past a chunked body (no trailers): what follows it."""
    while True:
        while b"\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("body cut short")
            buffer += chunk
        line, _, buffer = buffer.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        buffer = _skip_body(conn, buffer, size + 2)  # the data and its CRLF
        if size == 0:
            return buffer


class Loopback:
    """A server on 127.0.0.1 that records every request and answers its `role` itself:
    ``origin`` (TLS from the first byte when `tls`), or ``gateway`` (a forward proxy, which
    answers a proxy request that carries ``X-Location`` with a 302 to it, as the gateway relays
    an upstream's redirect)."""

    def __init__(self, role: str, ca: trustme.CA, *, tls: bool = False) -> None:
        self.role = role
        self.seen: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._tls)
        self._direct_tls = tls
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def records(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._direct_tls:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self._requests(conn, None)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def _requests(self, conn: socket.socket, tunnel: str | None) -> None:
        buffer = b""
        while True:
            head, buffer = _head(conn, buffer)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            auth = headers.get("proxy-authorization")
            with self._lock:
                self.seen.append(
                    Seen(method, target, headers.get("host"), auth, headers.get("x-probe"), tunnel)
                )
            if self.role == "gateway" and tunnel is None and auth != GATEWAY_AUTH:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")  # fmt: skip
                return
            if self.role == "gateway" and method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                with self._tls.wrap_socket(conn, server_side=True) as inner:
                    self._requests(inner, target)
                return
            if headers.get("transfer-encoding", "").lower() == "chunked":
                buffer = _skip_chunked(conn, buffer)
            else:
                buffer = _skip_body(conn, buffer, int(headers.get("content-length") or 0))
            location = headers.get("x-location")
            if self.role == "gateway" and tunnel is None and location:
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                             % location.encode())  # fmt: skip
                continue
            answer = self.role.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))


@dataclass
class Stage:
    gateway: Loopback
    http_origin: Loopback
    tls_origin: Loopback
    ca_file: Path
    workdir: Path  # where node runs (its node_modules decide which undici the preload uses)

    def env(self, server_url: str, key: str = KEY) -> dict[str, str]:
        """The variables `tf run` sets that matter here, for a control plane at `server_url`."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        proxy = proxy_url_for(f"http://127.0.0.1:{self.gateway.port}", "Bot", key)
        env.update(dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), proxy))
        no_proxy = ",".join(control_plane_hosts(server_url))
        env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, NODE_EXTRA_CA_CERTS=str(self.ca_file))
        env["NODE_OPTIONS"] = f"--require {NODE_PRELOAD}"
        return env

    def origin(self, scheme: str) -> Loopback:
        return self.tls_origin if scheme == "https" else self.http_origin
