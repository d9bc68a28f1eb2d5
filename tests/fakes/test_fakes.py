"""The fakes themselves: real TLS, recording, streaming, git smart HTTP."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeUpstreams, start_fakes


@pytest.fixture(scope="module")
def running() -> Iterator[FakeUpstreams]:
    fakes = start_fakes()
    try:
        yield fakes
    finally:
        fakes.stop()


def test_tls_with_real_hostname_and_recording(running: FakeUpstreams) -> None:
    github = running["github"]
    github.clear()
    with httpx.Client(verify=running.ssl_context()) as client:
        answer = client.get(f"{github.url}/user", headers={"Authorization": "token ghp_x"})
    assert answer.json()["login"] == "fake-user"
    seen = github.last()
    assert (seen.method, seen.path, seen.scheme) == ("GET", "/user", "https")
    assert seen.header("authorization") == "token ghp_x"


def test_plain_http_and_stripe_form(running: FakeUpstreams) -> None:
    stripe = running["stripe"]
    stripe.clear()
    answer = httpx.post(f"{stripe.http_url}/v1/charges", data={"amount": "500", "currency": "usd"})
    assert answer.json()["object"] == "charge"
    assert answer.json()["amount"] == 500
    assert stripe.last().form() == {"amount": "500", "currency": "usd"}


def test_openai_stream_is_spaced(running: FakeUpstreams) -> None:
    openai = running["openai"]
    openai.settings.update(stream_delay=0.1, stream_chunks=3)
    arrivals = []
    with httpx.Client(verify=running.ssl_context()) as client:
        with client.stream(
            "POST", f"{openai.url}/v1/chat/completions", json={"model": "m", "stream": True}
        ) as answer:
            for _ in answer.iter_raw():
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 4  # 3 chunks + [DONE], each sent separately


def test_mcp_json_rpc(running: FakeUpstreams) -> None:
    mcp = running["mcp"]
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"}},
    }
    answer = httpx.post(f"{mcp.url}/mcp", json=body, verify=running.ssl_context())
    assert answer.json()["result"]["content"][0]["text"] == 'echo: {"text": "hi"}'
    assert answer.headers["mcp-session-id"] == "fake-session-1"


def test_git_ls_remote(running: FakeUpstreams) -> None:
    git = running["git"]
    env = {**os.environ, "GIT_SSL_CAINFO": str(running.ca_path), "GIT_TERMINAL_PROMPT": "0"}
    out = subprocess.run(
        ["git", "ls-remote", f"{git.url}/acme/api.git"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "refs/heads/main" in out.stdout
