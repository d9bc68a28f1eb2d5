"""`tf mcp wrap` never goes back to a configuration older than the one it enforces.

A control-plane replica cut off from the database answers with the snapshot it last read,
which may miss a kill switch: as at the gateway (tests/proxy/test_config_never_older.py),
that answer neither replaces the config in force nor counts as word from the control plane.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from agentfirewall_proxy.mcpwrap.follower import Follower
from tests.proxy.support import snapshot

pytestmark = pytest.mark.anyio


def _follower(in_force: object) -> tuple[Follower, Any]:
    gate = SimpleNamespace(
        config=in_force,
        agent_name="Bot",
        kill_switch=lambda: None,
        agent=lambda: SimpleNamespace(status="active"),
    )
    session = SimpleNamespace(closing=False)
    follower = Follower(session, gate, None, 5, wait=1.0, bound=10.0)  # type: ignore[arg-type]
    return follower, gate


async def test_an_older_config_is_neither_applied_nor_heard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    in_force = object()
    follower, gate = _follower(in_force)
    heard = follower.contact.heard_at
    for _ in range(2):
        assert await follower._answered({**snapshot(), "version": 4}) is False
    assert gate.config is in_force
    assert follower.version == 5
    assert follower.contact.heard_at == heard
    said = capsys.readouterr().err
    assert said.count("config 4 refused: older than configuration 5 in force") == 1


async def test_a_newer_or_unchanged_config_is_applied_and_heard() -> None:
    follower, gate = _follower(object())
    heard = follower.contact.heard_at
    assert await follower._answered(None) is True
    assert follower.contact.heard_at > heard
    assert await follower._answered({**snapshot(), "version": 6}) is True
    assert follower.version == 6
    assert gate.config.version == 6
