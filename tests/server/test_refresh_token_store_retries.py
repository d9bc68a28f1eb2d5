"""The control plane stores its own rotated refresh token through a failing store.

The defect (security review, probe 4's server side): a rotation the control plane made
itself (SDK Mode A) was stored once; a database error (a restart, a failover) dropped it,
and the vault kept the refresh token the endpoint had spent. ``ServerTokens`` now tries
again while the store fails (bounded: about a minute), saying each failure in its log
without the token, and gives up with an error it logs.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from agentfirewall.credentials import Rotation
from agentfirewall_server import tokens
from agentfirewall_server.store.db import StoreError
from agentfirewall_server.tokens import ServerTokens

TOKEN = "rt_rotated_never_logged_0000"


def _flaky(failures: int, stored: list[dict[str, Any]]) -> Any:
    errors = [StoreError("the database is restarting"),
              OperationalError("UPDATE credentials", {"x": TOKEN}, Exception("gone"))]  # fmt: skip

    async def store(state: object, cid: str, previous: str, token: str, **kw: Any) -> bool:
        if len(stored) < failures:
            stored.append({})
            raise errors[len(stored) % 2]
        stored.append({"cid": cid, "previous": previous, "token": token, **kw})
        return True

    return store


@pytest.mark.parametrize("failures", [0, 1, len(tokens._STORE_RETRIES)])
def test_a_rotation_is_stored_through_store_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failures: int
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tokens, "store_refresh_token", _flaky(failures, calls))
    monkeypatch.setattr(tokens, "_STORE_RETRIES", (0.0,) * len(tokens._STORE_RETRIES))
    server = ServerTokens(SimpleNamespace())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="agentfirewall_server.tokens"):
        asyncio.run(server._store(Rotation("conn_1", "ab" * 32, TOKEN, "rfl_1")))
    assert len(calls) == failures + 1
    assert calls[-1] == {"cid": "conn_1", "previous": "ab" * 32, "token": TOKEN,
                         "actor": "server", "lease": "rfl_1"}  # fmt: skip
    assert len(caplog.records) == failures
    assert all("is not stored yet" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


def test_a_store_failing_past_the_retries_is_logged_as_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(tokens, "store_refresh_token", _flaky(10**6, calls))
    monkeypatch.setattr(tokens, "_STORE_RETRIES", (0.0, 0.0))
    server = ServerTokens(SimpleNamespace())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="agentfirewall_server.tokens"):
        asyncio.run(server._store(Rotation("conn_1", "ab" * 32, TOKEN)))
    assert len(calls) == 3
    assert caplog.records[-1].levelno == logging.ERROR
    assert "was not stored" in caplog.records[-1].getMessage()
    assert TOKEN not in caplog.text
