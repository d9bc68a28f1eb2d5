"""Bootstrap tokens from the environment: replicas share them, no token file is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from agentfirewall_server.app import create_app
from agentfirewall_server.bootstrap import ensure_data_dir
from agentfirewall_server.settings import Settings

ADMIN = "tfa_" + "a1" * 20
GATEWAY = "tfg_" + "g2" * 20


def test_tokens_from_the_environment_work_and_write_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFIREWALL_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTFIREWALL_GATEWAY_TOKEN", GATEWAY)
    settings = Settings(data_dir=tmp_path / "data")
    boot = ensure_data_dir(settings)
    assert (boot.admin_token, boot.gateway_token) == (ADMIN, GATEWAY)
    assert not (tmp_path / "data" / "admin.token").exists()
    assert not (tmp_path / "data" / "gateway.token").exists()
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.get("/api/v1/agents", headers=admin).status_code == 200
        gateway = {"Authorization": f"Bearer {GATEWAY}"}
        assert client.get("/api/v1/gateway/config", headers=gateway).status_code == 200
        wrong = {"Authorization": f"Bearer {ADMIN[:-1]}x"}
        assert client.get("/api/v1/agents", headers=wrong).status_code == 401
    assert not (tmp_path / "data" / "admin.token").exists()


def test_a_short_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFIREWALL_GATEWAY_TOKEN", "tfg_short")
    with pytest.raises(ValidationError, match="gateway_token"):
        Settings()
