"""Stopping the server while long-polls and an SSE stream are open."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx

from tests.livesrv import LiveServer

# A correctness bound, not a timing: without the fix the stop takes uvicorn's whole
# graceful wait (the long-poll's 30 s, the SSE stream forever).
STOP_BOUND_SECONDS = 8.0


def _long_poll(server: LiveServer, version: int, out: dict[str, Any]) -> None:
    try:
        response = httpx.get(
            f"{server.api_url}/v1/gateway/config",
            params={"since": version, "wait": 30},
            headers={"Authorization": f"Bearer {server.gateway_token}"},
            timeout=60,
        )
        out["config"] = response.status_code
    except httpx.HTTPError as exc:
        out["config"] = repr(exc)


def _sse(server: LiveServer, opened: threading.Event, out: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    try:
        with httpx.stream(
            "GET", f"{server.api_url}/v1/events", headers=headers, timeout=60
        ) as response:
            lines = response.iter_lines()
            out["first"] = next(lines)
            opened.set()
            out["rest"] = list(lines)
            out["sse"] = response.status_code
    except httpx.HTTPError as exc:
        out["sse"] = repr(exc)
    finally:
        opened.set()


def test_sigterm_ends_open_long_polls_and_event_streams(live_server: LiveServer) -> None:
    version = live_server.request("GET", "/v1/gateway/config", live_server.gateway_token).json()[
        "version"
    ]
    out: dict[str, Any] = {}
    opened = threading.Event()
    threads = [
        threading.Thread(target=_long_poll, args=(live_server, version, out)),
        threading.Thread(target=_sse, args=(live_server, opened, out)),
    ]
    for thread in threads:
        thread.start()
    assert opened.wait(30)
    time.sleep(0.5)  # let the long-poll reach its wait (it answers 304 below if it did)
    assert live_server.process is not None
    live_server.process.send_signal(signal.SIGTERM)
    live_server.process.wait(timeout=STOP_BOUND_SECONDS)
    for thread in threads:
        thread.join(timeout=STOP_BOUND_SECONDS)
    # uvicorn re-raises the signal once its graceful shutdown is done
    assert live_server.process.returncode in (0, -signal.SIGTERM)
    assert out["config"] == 304  # answered "unchanged", not cut off
    assert out["first"] == ": connected"
    assert out["sse"] == 200
