"""The vault's keys: key ids, the keyring, the start check, one bad credential, env keys."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from agentfirewall.errors import VaultError
from agentfirewall_server.app import create_app
from agentfirewall_server.main import main
from agentfirewall_server.rotate import rotate_key
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, Vault, generate_key_text, kid_of
from agentfirewall_server.vaultcheck import VaultStartError
from tests.fakes import FakeUpstreams
from tests.livesrv import LiveServer
from tests.server.conftest import SPEC, Harness


@pytest.fixture(autouse=True)
def _collect_closed_apps() -> Iterator[None]:
    """Pool connections of apps stopped here are finalised now, not in a later test.

    (As the harness fixture does: psycopg warns in ``__del__`` otherwise.)
    """
    yield
    _settle()


def _settle() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


_KEY_ENV = (
    "SETTINGS_ENCRYPTION_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS",
)


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _KEY_ENV}, **extra}


def _add(call: Any, domain: str, token: str) -> str:
    body = {"type": "generic", "domains": [domain], "token": token}
    response = call("POST", "/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _config(call: Any) -> dict[str, str]:
    response = call("GET", "/v1/gateway/config")
    assert response.status_code == 200, response.text
    return {c["id"]: c["credential"] for c in response.json()["connectors"]}


def _rows(settings: Settings) -> dict[str, str]:
    db = Database(settings.resolved_database_url)
    try:
        found = db.read_sync(lambda c: c.execute(select(credentials)).all())
    finally:
        db.close()
    return {str(r.owner): str(r.ciphertext) for r in found}


def test_every_ciphertext_names_its_key_and_the_keyring_opens_each() -> None:
    old, new = Vault.from_text(generate_key_text()), Vault.from_text(generate_key_text())
    sealed_old = old.encrypt("a", owner="conn_a")
    assert kid_of(sealed_old) == old.key_id
    ring = Keyring(new, [old])
    sealed_new = ring.encrypt("b", owner="conn_b")
    assert kid_of(sealed_new) == new.key_id
    assert ring.decrypt(sealed_old, owner="conn_a") == "a"
    assert ring.decrypt(sealed_new, owner="conn_b") == "b"
    assert kid_of(ring.reseal(sealed_old, owner="conn_a")) == new.key_id
    assert ring.reseal(sealed_new, owner="conn_b") == sealed_new
    with pytest.raises(VaultError, match=f"key id `{old.key_id}`"):
        Keyring(new).decrypt(sealed_old, owner="conn_a")
    with pytest.raises(VaultError, match="not in the vault format"):
        ring.decrypt("garbage", owner="conn_a")


def test_a_missing_key_with_sealed_rows_stops_the_start(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with TestClient(create_app(settings)) as client:
        admin = (settings.data_dir / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {admin}"}
        _add(lambda m, p, **kw: client.request(m, "/api" + p, headers=headers, **kw), "a.io", "s")
    key_file = settings.data_dir / "encryption.key"
    kid = Vault.from_file(key_file).key_id
    key_file.unlink()
    with (
        pytest.raises(VaultStartError, match=f"need key id `{kid}`"),
        TestClient(create_app(settings)),
    ):
        pass
    assert not key_file.exists()  # no fresh key for a vault that is not empty
    argv = ["--data-dir", str(settings.data_dir), "--database-url", settings.resolved_database_url]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"`{kid}`" in err
    assert str(key_file) in err  # where it looked
    assert "setup" not in capsys.readouterr().out  # no first-start banner, no new link
    key_file.write_text(generate_key_text())  # a wrong key: refused too, naming both ids
    with (
        pytest.raises(VaultStartError, match=f"`{kid}` \\(1 credential"),
        TestClient(create_app(settings)),
    ):
        pass


def test_a_fresh_key_only_for_an_empty_vault(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with TestClient(create_app(settings)):
        pass
    key_file = settings.data_dir / "encryption.key"
    first = key_file.read_text()
    key_file.unlink()
    # the database records the key its servers seal with: no fresh key for a lost one
    with pytest.raises(VaultStartError, match=f"`{Vault.from_text(first).key_id}`"):
        with TestClient(create_app(settings)):
            pass
    assert not key_file.exists()
    assert rotate_key(settings, None) == 0  # nothing was sealed: a new key, on purpose
    with TestClient(create_app(settings)):
        pass
    assert key_file.read_text() != first


def test_one_unreadable_credential_fails_only_its_connector(harness: Harness) -> None:
    good = _add(harness.admin, "good.example.com", "tok-good")
    bad = _add(harness.admin, "bad.example.com", "tok-bad")
    other = _add(harness.admin, "other.example.com", "tok-other")
    settings = harness.state.settings
    rows = _rows(settings)
    # a ciphertext moved onto another connector (or altered): it no longer opens
    harness.state.db.write_sync(
        lambda c: c.execute(
            update(credentials).where(credentials.c.owner == bad).values(ciphertext=rows[good])
        )
    )
    harness.client.portal.call(harness.state.reload)  # type: ignore[union-attr]
    assert _config(harness.gateway) == {good: "tok-good", other: "tok-other"}
    health = harness.call("GET", "/api/health").json()
    assert health["status"] == "degraded"
    assert [u["connector"] for u in health["vault"]["unreadable"]] == [bad]
    status = harness.admin("GET", "/v1/status").json()
    (problem,) = status["vault"]["unreadable"]
    assert problem["connector"] == bad
    assert "tf connector add" in problem["fix"]
    vault = harness.admin("GET", "/v1/vault").json()
    assert [u["owner"] for u in vault["unreadable"]] == [bad]


def test_online_rotation_then_new_connector_survives_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "tf"
    server = LiveServer.start(data, env=_env(), args=("--database-url", database_url))
    try:
        first = _add(server.admin, "a.example.com", "tok-a")
        old_kid = server.admin("GET", "/v1/vault").json()["current_key_id"]
        tf = [sys.executable, "-m", "agentfirewall_proxy.cli", "vault", "rotate", "--json"]
        env = _env(TF_SERVER=server.url, TF_ADMIN_TOKEN=server.admin_token)
        done = subprocess.run([*tf, "--server", server.url], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
        vault = server.admin("GET", "/v1/vault").json()
        assert vault["current_key_id"] != old_kid
        assert vault["pending"] == 0
        assert vault["rotation"]["retired_keys"] == [old_kid]
        second = _add(server.admin, "b.example.com", "tok-b")  # sealed with the new key
        server.restart()
        assert _config(server.gateway) == {first: "tok-a", second: "tok-b"}
        events = server.admin("GET", "/v1/audit?event_type=vault.rotated").json()["events"]
        assert events[0]["data"]["to"] == vault["current_key_id"]
    finally:
        server.stop()


def test_environment_key_rotation(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "tf"
    old, new = generate_key_text(), generate_key_text()
    args = ("--database-url", database_url)
    server = LiveServer.start(data, env=_env(SETTINGS_ENCRYPTION_KEY=old), args=args)
    try:
        conn = _add(server.admin, "a.example.com", "tok-a")
        refused = server.admin("POST", "/v1/vault/rotate")
        assert refused.status_code == 409
        assert refused.json()["error"] == "key_from_environment"
        server.stop()
        assert not (data / "encryption.key").exists()  # the key stays in the environment
        server.env = _env(SETTINGS_ENCRYPTION_KEY=new, AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS=old)
        server.launch(port=0)
        assert _config(server.gateway) == {conn: "tok-a"}  # read with the previous key
        assert server.admin("POST", "/v1/vault/rotate").status_code == 202
        for _ in range(400):
            vault = server.admin("GET", "/v1/vault").json()
            if vault["rotation"]["state"] != "running":
                break
            time.sleep(0.05)
        assert vault["rotation"]["state"] == "done"
        assert vault["pending"] == 0
        server.stop()
        server.env = _env(SETTINGS_ENCRYPTION_KEY=new)  # the old key is no longer needed
        server.launch(port=0)
        assert _config(server.gateway) == {conn: "tok-a"}
    finally:
        server.stop()
    settings = Settings(data_dir=data, database_url=database_url)
    assert {kid_of(v) for v in _rows(settings).values()} == {Vault.from_text(new).key_id}


def test_executing_on_a_connector_whose_credential_does_not_decrypt_is_a_clear_503(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    github = fakes["github"]
    github.clear()
    body = {"type": "github", "token": "ghp_secret_value", "base_url": github.http_url}
    created = harness.admin("POST", "/v1/connectors", json=body)
    assert created.status_code == 201, created.text
    conn = created.json()["id"]
    other = _add(harness.admin, "other.example.com", "tok-other")
    rows = _rows(harness.state.settings)
    harness.state.db.write_sync(
        lambda c: c.execute(
            update(credentials).where(credentials.c.owner == conn).values(ciphertext=rows[other])
        )
    )
    harness.client.portal.call(harness.state.reload)  # type: ignore[union-attr]
    key = harness.create_agent("Bot")
    decided = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    response = harness.agent(
        key,
        "POST",
        f"/v1/actions/{decided['action_request_id']}/execute",
        json={"decision_token": decided["decision_token"]},
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "credential_unavailable"
    assert conn in response.json()["message"]
    assert github.received("PUT") == []


def test_tf_status_and_health_name_the_broken_connector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentfirewall_proxy.cli.app import main as tf_main

    data = tmp_path / "tf"
    server = LiveServer.start(data, env=_env())
    try:
        good = _add(server.admin, "good.example.com", "tok-good")
        bad = _add(server.admin, "bad.example.com", "tok-bad")
    finally:
        server.stop()
    settings = Settings(data_dir=data)
    rows = _rows(settings)
    db = Database(settings.resolved_database_url)
    try:  # with the server stopped, one ciphertext is altered
        altered = rows[bad][:-6] + ("A" if rows[bad][-6] != "A" else "B") + rows[bad][-5:]
        db.write_sync(
            lambda c: c.execute(
                update(credentials).where(credentials.c.owner == bad).values(ciphertext=altered)
            )
        )
    finally:
        db.close()
    server.launch(port=0)
    try:
        health = server.request("GET", "/api/health").json()
        assert health["status"] == "degraded"
        assert health["vault"]["unreadable"][0]["connector"] == bad
        assert _config(server.gateway) == {good: "tok-good"}
        monkeypatch.setenv("TF_ADMIN_TOKEN", server.admin_token)
        capsys.readouterr()
        assert tf_main(["status", "--server", server.url]) == 0
        err = capsys.readouterr().err
        assert f"connector {bad} is down" in err
        assert "--replace" in err
        assert tf_main(["vault", "status", "--server", server.url]) == 1
    finally:
        server.stop()
