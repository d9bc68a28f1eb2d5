"""The admin client's error mapping and target resolution (no server: respx answers)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from agentfirewall_proxy.cli.client import open_client, path_id
from agentfirewall_proxy.cli.output import EXIT_DENIED, EXIT_ERROR, CliError
from agentfirewall_proxy.cli.state import Config, Project, Target, resolve_target, save_config

SERVER = "http://tf.test:3000"


@pytest.fixture
def target() -> Target:
    return Target(SERVER, "tfa_" + "x" * 40, "http://127.0.0.1:8443", None, "--server")


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=SERVER, assert_all_called=False) as router:
        yield router


def test_requests_carry_the_admin_token(target: Target, mock: respx.MockRouter) -> None:
    route = mock.get("/api/v1/agents/DevOps%20Bot").respond(200, json={"name": "DevOps Bot"})
    with open_client(target) as client:
        assert client.get(f"/v1/agents/{path_id('DevOps Bot')}") == {"name": "DevOps Bot"}
    assert route.calls.last.request.headers["authorization"] == f"Bearer {target.admin_token}"


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
    ],
)
def test_error_answers_become_actionable_errors(
    target: Target, mock: respx.MockRouter, status: int, body: object, code: int, fragment: str
) -> None:
    content = json.dumps(body) if isinstance(body, dict) else str(body)
    mock.post("/api/v1/connectors").respond(status, content=content)
    with open_client(target) as client, pytest.raises(CliError) as caught:
        client.post("/v1/connectors", {"type": "github"})
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_unreachable_server_says_how_to_start_one(mock: respx.MockRouter) -> None:
    local = Target(SERVER, "tfa_x", "http://127.0.0.1:8443", None, "default")
    mock.get("/api/v1/status").mock(side_effect=httpx.ConnectError("refused"))
    with open_client(local) as client, pytest.raises(CliError) as caught:
        client.get("/v1/status")
    assert "no TameFlare server at http://tf.test:3000" in caught.value.message
    assert caught.value.hint is not None
    assert "tf up" in caught.value.hint


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
