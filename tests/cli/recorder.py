"""A server on 127.0.0.1 that writes down every request it gets: where a token must never go
(a planted `.tf/`'s server, a server named by --server, the user's HTTP proxy).

It answers like a bare control plane: ``answers`` maps a path to its JSON answer (``{}`` for
any other path; the JWKS has no key), so `tf` goes as far as it would with a real one; an
answer given as ``(status, bytes)`` is sent as it is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Recorded", "Recorder", "recording"]


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # the request line's target: a path, or a whole URL when used as a proxy
    authorization: str | None
    body: str
    content_type: str | None = None


@dataclass
class Recorder:
    url: str
    answers: dict[str, Any]
    requests: list[Recorded] = field(default_factory=list)

    def everything(self) -> str:
        """Every request as text, to search for a secret."""
        return "\n".join(f"{r.method} {r.target} {r.authorization} {r.body}" for r in self.requests)


@contextmanager
def recording(answers: dict[str, Any] | None = None) -> Iterator[Recorder]:
    lock = threading.Lock()
    recorder = Recorder("", {"/.well-known/jwks.json": {"keys": []}, **(answers or {})})

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size).decode("utf-8", "replace") if size else ""
            seen = Recorded(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                body,
                self.headers.get("Content-Type"),
            )
            with lock:
                recorder.requests.append(seen)
            answer = recorder.answers.get(urlsplit(self.path).path, {})
            if not isinstance(answer, tuple):
                answer = (200, json.dumps(answer).encode())
            status, data = answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
