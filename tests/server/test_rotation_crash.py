"""Key rotation killed (SIGKILL, a subprocess) at every step boundary, on both engines.

``AGENTFIREWALL_FAULT_KILL_AT=N`` makes the rotating process kill itself at its N-th step
boundary (before/after the new key is written, before/after the rename, mid-batch, after
each batch's commit, before/after the old key is retired). For every N: the process dies,
the server then starts and serves every credential, a re-run of the rotation finishes it,
and every credential is readable with the keys on disk. N grows until the rotation runs
to its end (exit 0), so every boundary is covered whatever their number.

The default run (CI) kills at every other boundary on each engine, the odd ones on SQLite
and the even ones on PostgreSQL, so the two together cover every boundary (half the
subprocesses: the matrix is among the slowest parts of the suite); `nox -s crash` sets
``AGENTFIREWALL_TEST_CRASH_ALL=1`` and covers every boundary on both engines.
"""

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

import httpx
import pytest
from sqlalchemy import Connection, select, update
from starlette.testclient import TestClient

from agentfirewall_server.app import create_app
from agentfirewall_server.main import main
from agentfirewall_server.rotate import FAULT_ENV
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, Vault, kid_of
from agentfirewall_server.vaultcheck import open_keyring, record_keys
from tests.livesrv import LiveServer
from tests.slices import CRASH_ALL_ENV, whole_matrix


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


SECRETS = {f"d{i}.example.com": f"secret-{i}-{'x' * i}" for i in range(4)}
BATCH = "2"  # 4 credentials: 2 batches, 10 step boundaries
BOUNDARIES = 10
KEY_ENV = (
    "SETTINGS_ENCRYPTION_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS",
    FAULT_ENV,
)


def _steps(database_url: str) -> range:
    """The step boundaries to kill at: all of them under `nox -s crash`, else every other
    one, the odd ones on SQLite and the even ones on PostgreSQL; past the last, the
    rotation ends."""
    if whole_matrix(CRASH_ALL_ENV):
        return range(1, 40)
    return range(1 if database_url.startswith("sqlite") else 2, 40, 2)


def _killed_expected(steps: range) -> int:
    return len(range(steps.start, BOUNDARIES + 1, steps.step))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_ENV}
    return {**env, "AGENTFIREWALL_VAULT_ROTATE_BATCH": BATCH, **extra}


def _add_connectors(call: Any) -> dict[str, str]:
    """Connector id -> its secret."""
    out = {}
    for domain, secret in SECRETS.items():
        body = {"type": "generic", "domains": [domain], "token": secret}
        response = call("POST", "/v1/connectors", json=body)
        assert response.status_code == 201, response.text
        out[response.json()["id"]] = secret
    return out


def _served(config: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["credential"] for c in config["connectors"]}


def _assert_readable(settings: Settings, expected: dict[str, str]) -> set[str]:
    """Every credential decrypts with the keys on disk; returns the key ids rows name."""
    db = Database(settings.resolved_database_url)
    try:
        keyring = open_keyring(settings, db.read_sync)
        rows = db.read_sync(lambda c: c.execute(select(credentials)).all())
    finally:
        db.close()
    assert {r.owner: keyring.decrypt(r.ciphertext, owner=r.owner) for r in rows} == expected
    return {kid_of(r.ciphertext) or "?" for r in rows}


def _serve_and_check(settings: Settings, expected: dict[str, str]) -> None:
    """The restarted server starts and the gateway gets every credential."""
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        token = (settings.data_dir / "gateway.token").read_text().strip()
        response = client.get(
            "/api/v1/gateway/config", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        assert _served(response.json()) == expected
        assert client.get("/api/health").json()["status"] == "ok"
    _settle()


def _reset(settings: Settings, rows: dict[str, str], key: str) -> None:
    """Back to the state before the rotation: the original key, the original ciphertexts."""
    (settings.data_dir / "encryption.key").write_text(key)
    (settings.data_dir / "encryption.keyring").unlink(missing_ok=True)

    def restore(conn: Connection) -> None:
        for owner, stored in rows.items():
            conn.execute(
                update(credentials).where(credentials.c.owner == owner).values(ciphertext=stored)
            )
        record_keys(conn, Keyring(Vault.from_text(key)))  # the key the database records

    db = Database(settings.resolved_database_url)
    try:
        db.write_sync(restore)
    finally:
        db.close()


def _seed(tmp_path: Path, database_url: str) -> tuple[Settings, dict[str, str], dict[str, str]]:
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        admin = (settings.data_dir / "admin.token").read_text().strip()
        expected = _add_connectors(
            lambda m, p, **kw: client.request(
                m, "/api" + p, headers={"Authorization": f"Bearer {admin}"}, **kw
            )
        )
    return settings, expected, _ciphertexts(settings)


def _ciphertexts(settings: Settings) -> dict[str, str]:
    db = Database(settings.resolved_database_url)
    try:
        rows = db.read_sync(lambda c: c.execute(select(credentials)).all())
    finally:
        db.close()
    return {str(r.owner): str(r.ciphertext) for r in rows}


def _rotate_cmd(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentfirewall_server",
        "rotate-key",
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.resolved_database_url,
    ]


@pytest.mark.timeout(900)  # one subprocess (or two servers) per boundary
def test_offline_rotation_killed_at_every_step(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTFIREWALL_VAULT_ROTATE_BATCH", BATCH)
    settings, expected, original = _seed(tmp_path, database_url)
    first_key = (settings.data_dir / "encryption.key").read_text()
    killed = 0
    steps = _steps(database_url)
    for step in steps:
        _reset(settings, original, first_key)
        done = subprocess.run(
            _rotate_cmd(settings), env=_env(**{FAULT_ENV: str(step)}), capture_output=True
        )
        if done.returncode == 0:
            break
        assert done.returncode == -9, done.stderr.decode()
        assert f"killed at step {step}" in done.stderr.decode()
        killed += 1
        _assert_readable(settings, expected)
        _serve_and_check(settings, expected)  # restart
        args = ["rotate-key", "--data-dir", str(settings.data_dir)]
        assert main([*args, "--database-url", settings.resolved_database_url]) == 0  # re-run
        kids = _assert_readable(settings, expected)
        current = (settings.data_dir / "encryption.key").read_text().strip()
        assert len(kids) == 1
        assert kids != {kid_of(original[next(iter(original))])}, current
        _serve_and_check(settings, expected)
    assert killed == _killed_expected(steps), f"expected {BOUNDARIES} step boundaries, saw {killed}"


def test_offline_rotation_refuses_while_a_server_runs(tmp_path: Path, database_url: str) -> None:
    settings, expected, original = _seed(tmp_path, database_url)
    key = (settings.data_dir / "encryption.key").read_text()
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000"):
        done = subprocess.run(_rotate_cmd(settings), env=_env(), capture_output=True)
        assert done.returncode == 1
        assert "a server is running" in done.stderr.decode()
    assert (settings.data_dir / "encryption.key").read_text() == key
    _assert_readable(settings, expected)
    assert _assert_readable(settings, expected) == {kid_of(next(iter(original.values())))}


def _wait_rotated(server: LiveServer) -> dict[str, Any]:
    for _ in range(600):
        vault = server.admin("GET", "/v1/vault").json()
        if vault["rotation"] and vault["rotation"]["state"] != "running":
            return dict(vault)
        time.sleep(0.05)
    raise AssertionError("the rotation did not finish")


@pytest.mark.timeout(900)  # one subprocess (or two servers) per boundary
def test_online_rotation_killed_at_every_step(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "tf"
    args = ("--database-url", database_url)
    server = LiveServer.start(data, env=_env(), args=args)
    try:
        expected = _add_connectors(server.admin)
    finally:
        server.stop()
    settings = Settings(data_dir=data, database_url=database_url)
    original = _ciphertexts(settings)
    first_key = (data / "encryption.key").read_text()
    killed = 0
    steps = _steps(database_url)
    for step in steps:
        _reset(settings, original, first_key)
        server = LiveServer.start(data, env=_env(**{FAULT_ENV: str(step)}), args=args)
        try:
            assert server.admin("POST", "/v1/vault/rotate").status_code == 202
            assert server.process is not None
            for _ in range(600):
                if server.process.poll() is not None:
                    break
                try:
                    vault = server.admin("GET", "/v1/vault").json()
                except httpx.TransportError:  # it is being killed: poll() says so next
                    time.sleep(0.05)
                    continue
                if vault["rotation"]["state"] != "running":
                    break
                time.sleep(0.05)
            if server.process.poll() is None:
                assert _wait_rotated(server)["rotation"]["state"] == "done"
                break
            assert server.process.returncode == -9
            killed += 1
            server.env = _env()  # restart without the fault
            server.launch(port=0)
            assert _served(server.gateway("GET", "/v1/gateway/config").json()) == expected
            assert server.admin("POST", "/v1/vault/rotate").status_code == 202  # re-run
            vault = _wait_rotated(server)
            assert vault["rotation"]["state"] == "done"
            assert vault["pending"] == 0
            assert _served(server.gateway("GET", "/v1/gateway/config").json()) == expected
        finally:
            server.stop()
        assert len(_assert_readable(settings, expected)) == 1
    assert killed == _killed_expected(steps), f"expected {BOUNDARIES} step boundaries, saw {killed}"
