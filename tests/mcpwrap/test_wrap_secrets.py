"""TameFlare's own secrets never reach the wrapped server, nor through it the agent: the
gateway token in its environment would read every vaulted credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfirewall_proxy.mcpwrap.launch import HELD_BACK, child_env
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, wrap_env
from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio

#: A value for every variable TameFlare reads a secret from (the gateway's and admin tokens
#: are the live server's own).
OTHERS = {name: f"{name.lower()}-secret-value-0123456789" for name in HELD_BACK}


def test_the_child_environment_holds_back_every_tameflare_secret() -> None:
    base = {**OTHERS, "PATH": "/usr/bin", "SHORT": "x", "TF_SERVER": "http://127.0.0.1:1"}
    env, scrubber = child_env(base, {"GITHUB_TOKEN": "ghp_vaulted0123456789"}, ["tfg_fromafile01"])
    assert env == {"PATH": "/usr/bin", "SHORT": "x", "TF_SERVER": "http://127.0.0.1:1",
                   "GITHUB_TOKEN": "ghp_vaulted0123456789"}  # fmt: skip
    assert scrubber is not None
    for secret in [*OTHERS.values(), "ghp_vaulted0123456789", "tfg_fromafile01"]:
        out, count = scrubber.scrub(f"said {secret}.".encode())
        assert count == 1, secret
        assert secret.encode() not in out
    assert scrubber.scrub(b"x marks http://127.0.0.1:1")[1] == 0  # only secrets


async def test_the_server_never_gets_the_gateway_token_nor_leaks_it(
    server: LiveServer, tmp_path: Path
) -> None:
    """The documented set-up outside a project (TF_GATEWAY_TOKEN and TF_SERVER in the
    server's `env`), an admin token and the control plane's keys beside them: the server
    gets none, and one it finds (on disk) is scrubbed from its answers and its stderr."""
    agent = add_agent(server, "McpSecrets", {"mcp.rpc.*": "allow", "mcp.tools.*": "allow"})
    found = tmp_path / "found-on-disk.txt"
    found.write_text(server.gateway_token)
    env = {**OTHERS, **wrap_env(server)}
    async with wire(tmp_path, agent, env, stderr=True) as relay:
        seen = json.loads((await relay.call(1, "env"))["result"]["content"][0]["text"])
        read = (await relay.call(2, "read", path=str(found)))["result"]["content"][0]["text"]
    assert not set(HELD_BACK) & set(seen)
    assert server.gateway_token not in read
    assert read.startswith("[REDACTED by TameFlare]")
    assert server.gateway_token.encode() not in relay.stderr
    assert b"read [REDACTED by TameFlare]" in relay.stderr
