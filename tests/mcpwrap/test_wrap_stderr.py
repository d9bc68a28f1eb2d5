"""The server's stderr passes whole, however long a line (a dumped payload longer than
`--max-message`), scrubbed of the secrets it may hold even where two reads split one: a
pump that died on one long line lost the logs, then the server blocked on a full pipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio

SNAPSHOT = {
    "agents": [{"name": "Bot", "api_keys": ["unused"]}],
    "permissions": [
        {"agent": "Bot", "connector": "mcp", "action_pattern": p, "decision": "allow"}
        for p in ("mcp.rpc.*", "mcp.tools.*")
    ],
}


async def test_a_stderr_line_of_any_length_is_relayed_and_scrubbed(tmp_path: Path) -> None:
    config = tmp_path / "snapshot.yaml"
    config.write_text(yaml.safe_dump(SNAPSHOT), encoding="utf-8")
    secret = "tfg_" + "GatewayTokenFoundOnDisk0123456789"
    found = tmp_path / "found.txt"
    found.write_text(secret)
    env = {**os.environ, "TF_GATEWAY_TOKEN": secret}  # held back, so scrubbed
    flags = ("--config", str(config), "--max-message", "100000")
    sizes = (200_000, (1 << 16) - 10)  # over --max-message; the secret across a 64 KiB read
    async with wire(tmp_path, "Bot", env, *flags, stderr=True) as relay:
        for number, size in enumerate(sizes):
            answer = await relay.call(number, "stderr", size=size, path=str(found))
            assert answer["result"]["content"][0]["text"] == "written"
        for number in range(2, 5):  # the session goes on, its stderr still read
            assert "result" in await relay.call(number, "echo", n=number)
    written = bytes(relay.stderr)
    assert written.count(b"\nafter\n") == 2
    assert written.count(b"x") >= sum(sizes)
    assert secret.encode() not in written
    assert written.count(b"[REDACTED by TameFlare]") == 2
