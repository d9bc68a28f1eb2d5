"""A real control-plane server in a subprocess, for tests of every package.

``LiveServer.start(data_dir)`` runs ``python -m agentfirewall_server --port 0`` on
127.0.0.1, reads the bound port from its log, waits for ``/api/health`` and reads the
admin and gateway tokens from the data directory. Helpers call the admin API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LiveServer"]

_PORT_RE = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
_STARTUP_SECONDS = 60.0


class LiveServer:
    """A running server; `url` is the origin, `api_url` is `url + "/api"`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.env = dict(env or {})
        self.args = args
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.api_url = ""
        self.admin_token = ""
        self.gateway_token = ""

    # lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> LiveServer:
        server = cls(data_dir, env=env, args=args)
        server.launch()
        return server

    def launch(self, port: int | None = None) -> None:
        """Start (or restart) the subprocess; reuses the last port when restarting."""
        env = {**os.environ, **self.env}
        cmd = [
            sys.executable,
            "-m",
            "agentfirewall_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port if port is not None else self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.port = self._wait_for_port(offset)
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.url + "/api"
        self._wait_healthy()
        self.admin_token = (self.data_dir / "admin.token").read_text().strip()
        self.gateway_token = (self.data_dir / "gateway.token").read_text().strip()

    def _wait_for_port(self, offset: int) -> int:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            text = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            found = _PORT_RE.search(text)
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at startup:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {_STARTUP_SECONDS} s: {self.log()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server never became healthy: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def kill(self) -> None:
        """SIGKILL: the crash a durability test needs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.launch(port=0)

    # helpers ---------------------------------------------------------------------------

    def _target(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith(("/api/", "/.well-known", "/metrics", "/dashboard")):
            return self.url + path
        return self.api_url + path

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 30)
        return httpx.request(method, self._target(path), headers=headers, **kwargs)

    def admin(self, method: str, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        """Call `path` (e.g. "/v1/agents") with the admin token (role owner)."""
        return self.request(method, path, self.admin_token, json=json, **kwargs)

    def gateway(self, method: str, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request(method, path, self.gateway_token, json=json, **kwargs)

    def agent(
        self, api_key: str, method: str, path: str, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        return self.request(method, path, api_key, json=json, **kwargs)

    def create_agent(self, name: str, **fields: Any) -> str:
        """Register agent `name` (extra fields as in POST /v1/agents); return its API key."""
        response = self.admin("POST", "/v1/agents", json={"name": name, **fields})
        if response.status_code != 201:
            raise RuntimeError(
                f"creating agent `{name}` failed: {response.status_code} {response.text}"
            )
        key: str = response.json()["api_key"]
        return key

    @contextmanager
    def events(self, *, until: str) -> Iterator[list[tuple[str, Any]]]:
        """The admin event stream (`GET /api/v1/events`) read in a thread, connected on
        entry; the list fills with `(event, data)` pairs up to the first `until` event,
        which the block must cause (the exit waits for it, 30 s at most)."""
        seen: list[tuple[str, Any]] = []
        ready = threading.Event()

        def listen() -> None:
            headers = {"Authorization": f"Bearer {self.admin_token}"}
            with httpx.stream("GET", self._target("/v1/events"), headers=headers,
                              timeout=30) as stream:  # fmt: skip
                kind = ""
                for line in stream.iter_lines():
                    if line.startswith(": connected"):
                        ready.set()
                    elif line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        seen.append((kind, json.loads(line.removeprefix("data: "))))
                        if kind == until:
                            return

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        if not ready.wait(20):
            raise RuntimeError("the event stream did not connect in 20 s")
        yield seen
        thread.join(30)
