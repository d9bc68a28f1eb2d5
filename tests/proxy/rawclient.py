"""Raw sockets for attack tests: exact bytes in, whatever comes back out."""

from __future__ import annotations

import base64
import socket
import ssl
import weakref
from pathlib import Path

from tests.proxy.support import KEY


def auth_header(key: str = KEY, name: str = "Bot") -> bytes:
    token = base64.b64encode(f"{name}:{key}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n".encode()


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the peer closes (or `timeout` of silence)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except (TimeoutError, ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


# bytes read past one response (a pipelined next one that came in the same recv): the next
# read_response on that socket starts with them
_unread: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """One response head and its Content-Length body (bytes after it are kept for the next
    call on `sock`: two responses can arrive in one read)."""
    sock.settimeout(timeout)
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if len(body) > length:
        _unread[sock] = body[length:]
        body = body[:length]
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def send(port: int, data: bytes, *, timeout: float = 5.0, everything: bool = False) -> bytes:
    """Send `data`; return the first response (or all bytes until close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock, timeout) if everything else read_response(sock, timeout)


def tunnel(
    port: int, host: str, ca: Path, *, sni: str | None = None, key: str = KEY
) -> ssl.SSLSocket:
    """CONNECT to `host`:443 through the gateway, then TLS with SNI `sni` (default host)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n".encode()
                 + auth_header(key) + b"\r\n")  # fmt: skip
    answer = read_response(sock)
    if status_of(answer) != 200:
        sock.close()
        raise ConnectionRefusedError(answer.decode("latin-1"))
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    return ctx.wrap_socket(sock, server_hostname=sni or host.rstrip("."))
