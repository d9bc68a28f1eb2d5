"""The admin client's error mapping and target resolution, against a real HTTP server on
127.0.0.1 (`tf` speaks to it with the standard library: agentfirewall_proxy/cli/wire.py)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_proxy.cli.client import open_client, path_id
from agentfirewall_proxy.cli.output import EXIT_DENIED, EXIT_ERROR, CliError
from agentfirewall_proxy.cli.state import Config, Project, Target, resolve_target, save_config
from agentfirewall_proxy.cli.wire import Wire, WireError, _query
from tests.cli.recorder import Recorder, recording


@pytest.fixture
def server() -> Iterator[Recorder]:
    with recording() as running:
        yield running


@pytest.fixture
def target(server: Recorder) -> Target:
    return Target(server.url, "tfa_" + "x" * 40, "http://127.0.0.1:8443", None, "--server")


def test_requests_carry_the_admin_token(target: Target, server: Recorder) -> None:
    server.answers["/api/v1/agents/DevOps%20Bot"] = {"name": "DevOps Bot"}
    with open_client(target) as client:
        assert client.get(f"/v1/agents/{path_id('DevOps Bot')}") == {"name": "DevOps Bot"}
    seen = server.requests[-1]
    assert seen.target == "/api/v1/agents/DevOps%20Bot"
    assert seen.authorization == f"Bearer {target.admin_token}"


def test_bodies_and_parameters_arrive_as_sent(target: Target, server: Recorder) -> None:
    server.answers["/api/v1/agents"] = (201, b'{"ok": true}')
    server.answers["/api/v1/agents/x"] = (204, b"")
    with open_client(target) as client:
        assert client.post("/v1/agents", {"name": "Bot ✓"}, dry_run=True, note=None) == {"ok": True}
        assert client.delete("/v1/agents/x") is None
    posted, deleted = server.requests
    assert (posted.method, posted.target) == ("POST", "/api/v1/agents?dry_run=true")
    assert json.loads(posted.body) == {"name": "Bot ✓"}
    assert posted.content_type == "application/json"
    assert (deleted.method, deleted.body) == ("DELETE", "")


_VALUES = st.one_of(
    st.text(max_size=12), st.integers(), st.booleans(), st.lists(st.text(max_size=5), max_size=3)
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), _VALUES, max_size=4))
def test_query_strings_are_the_ones_httpx_writes(params: dict[str, Any]) -> None:
    """The server reads a query the way it read httpx's: one encoding for every value."""
    expected = httpx.URL("http://x/p", params=params).query.decode()
    assert _query(params) == (f"?{expected}" if expected else "")


@pytest.mark.parametrize(
    ("status", "body", "code", "fragment"),
    [
        (401, {"error": "unauthorized", "message": "bad token"}, EXIT_ERROR, "admin token"),
        (
            403,
            {"error": "forbidden", "message": "no", "required_role": "owner", "your_role": "admin"},
            EXIT_DENIED,
            "needs role `owner`, yours is `admin`",
        ),
        (404, {"error": "not_found", "message": "no agent `x`"}, EXIT_ERROR, "no agent `x`"),
        (409, {"error": "conflict", "message": "already decided"}, EXIT_ERROR, "already decided"),
        (
            422,
            {"error": "invalid_request", "message": "bad", "field": "domains"},
            EXIT_ERROR,
            "(`domains`)",
        ),
        (500, "boom", EXIT_ERROR, "server error 500"),
        (502, "\xff\xfe not utf-8", EXIT_ERROR, "server error 502"),
    ],
)
def test_error_answers_become_actionable_errors(
    target: Target, server: Recorder, status: int, body: object, code: int, fragment: str
) -> None:
    content = json.dumps(body) if isinstance(body, dict) else str(body)
    raw = content.encode("latin-1") if "\xff" in content else content.encode()
    server.answers["/api/v1/connectors"] = (status, raw)
    with open_client(target) as client, pytest.raises(CliError) as caught:
        client.post("/v1/connectors", {"type": "github"})
    assert caught.value.code == code
    assert fragment in caught.value.message


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_says_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    local = Target(url, "tfa_x", "http://127.0.0.1:8443", None, "default")
    with open_client(local) as client, pytest.raises(CliError) as caught:
        client.get("/v1/status")
    assert caught.value.message == f"no TameFlare server at {url}: connection refused"
    assert caught.value.hint is not None
    assert "tf up" in caught.value.hint


def _misbehaving(behaviour: str) -> tuple[socket.socket, threading.Thread]:
    """A listener that accepts and then hangs up at once, or never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        if behaviour == "silent":
            connection.recv(1)  # until the client gives up
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("hang-up", "the connection was closed before an answer"), ("silent", "timed out")],
)
def test_a_server_that_answers_nothing_is_an_error_not_a_hang(behaviour: str, reason: str) -> None:
    listener, thread = _misbehaving(behaviour)
    try:
        wire = Wire(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(WireError) as caught:
            wire.get("/api/v1/status")
        assert caught.value.reason == reason
        thread.join(timeout=10)
    finally:
        listener.close()


def test_https_servers_are_verified_against_certifi_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose certificate a local CA signed is not trusted, even with SSL_CERT_FILE
    naming that CA: no environment variable sends the admin token to a server `tf` cannot
    verify (the trust_env=False it had with httpx)."""
    from tests.fakes import start_fakes

    running = start_fakes(["github"])
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(running.ca_path))
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
        github = running["github"]
        with pytest.raises(WireError) as caught:
            Wire(github.url, timeout=10).get("/")
        assert caught.value.reason.startswith("TLS certificate not trusted")
    finally:
        running.stop()


def test_a_server_address_that_is_not_http_is_refused() -> None:
    target = Target("ftp://127.0.0.1:21", "tfa_x", "http://127.0.0.1:8443", None, "--server")
    with pytest.raises(CliError) as caught, open_client(target):
        pass
    assert "cannot use ftp://127.0.0.1:21 as a server address" in caught.value.message


def test_target_precedence(tmp_path: Path) -> None:
    state = tmp_path / ".tf"
    state.mkdir()
    save_config(state / "config.yaml", Config(server_url="http://127.0.0.1:3100"))
    (state / "admin.token").write_text("tfa_local\n")
    project = Project(state, Config(server_url="http://127.0.0.1:3100"))
    assert resolve_target(project, None, {}).server_url == "http://127.0.0.1:3100"
    assert resolve_target(project, None, {}).admin_token == "tfa_local"
    (state / "up.json").write_text(
        json.dumps({"pid": os.getpid(), "server_url": "http://a:1", "proxy_url": "http://a:2"})
    )
    running = resolve_target(project, None, {})
    assert (running.server_url, running.proxy_url, running.source) == (
        "http://a:1",
        "http://a:2",
        "tf up",
    )
    env = {"TF_SERVER": "https://tf.example/", "TF_ADMIN_TOKEN": "tfa_env"}
    remote = resolve_target(project, None, env)
    assert (remote.server_url, remote.admin_token, remote.local) == (
        "https://tf.example",
        "tfa_env",
        False,
    )
    flag = resolve_target(project, "http://flag:9", env)
    assert (flag.server_url, flag.source) == ("http://flag:9", "--server")
    # the project's own admin token never goes to a server named by --server / TF_SERVER
    assert resolve_target(project, "http://flag:9", {}).admin_token is None
