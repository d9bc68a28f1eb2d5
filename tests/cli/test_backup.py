"""`tf backup` of a running server under load, `tf restore` into a new data directory.

Every record acknowledged before the backup started, and every credential, is present in
the restored server, whose audit log verifies; restore refuses a running server's data,
a non-empty target and an altered backup. SQLite and PostgreSQL.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy.cli.app import main as tf_main
from agentfirewall_server.vault import generate_key_text
from tests.livesrv import LiveServer
from tests.server.conftest import PG_ENV, _admin_url


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


_KEY_ENV = ("SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ENCRYPTION_KEY", "AGENTFIREWALL_DATABASE_URL")


def _fresh_pg(created: list[str]) -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV}")
    import psycopg

    name = f"af_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    created.append(name)
    return f"{base.rpartition('/')[0]}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """The source and the restore database (None: SQLite in the data directory)."""
    if request.param == "sqlite":
        yield None, None
        return
    created: list[str] = []
    try:
        yield _fresh_pg(created), _fresh_pg(created)
    finally:
        import psycopg

        with psycopg.connect(_admin_url(os.environ[PG_ENV]), autocommit=True) as conn:
            for name in created:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Load:
    """Agents created back to back; `acked` holds the names the server acknowledged."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        with httpx.Client(
            base_url=self.server.api_url,
            headers={"Authorization": f"Bearer {self.server.admin_token}"},
            timeout=30,
        ) as http:
            while not self.stop.is_set():
                n += 1
                name = f"Load {n}"
                if http.post("/v1/agents", json={"name": name}).status_code == 201:
                    self.acked.append(name)


def _tf(*argv: str) -> int:
    return tf_main(list(argv))


def _db_args(url: str | None) -> list[str]:
    return ["--database-url", url] if url else []


def test_backup_under_load_then_restore(
    tmp_path: Path, urls: tuple[str | None, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    source_url, restore_url = urls
    data = tmp_path / "tf"
    server = LiveServer.start(data, args=tuple(_db_args(source_url)))
    load = Load(server)
    try:
        tokens = {f"d{i}.example.com": f"secret-{i}" for i in range(5)}
        for domain, token in tokens.items():
            body = {"type": "generic", "domains": [domain], "token": token}
            assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
        load.thread.start()
        while len(load.acked) < 20:
            load.stop.wait(0.01)
        before = list(load.acked)  # acknowledged before the backup started
        out = tmp_path / "backup"
        assert _tf("backup", str(out), "--data-dir", str(data), *_db_args(source_url)) == 0
        while len(load.acked) < len(before) + 10:  # the load went on during the backup
            load.stop.wait(0.01)
        # refused: a running server's data directory
        args = ["restore", str(out), "--data-dir", str(data), *_db_args(source_url), "--force"]
        assert _tf(*args) == 1
    finally:
        load.stop.set()
        if load.thread.is_alive():
            load.thread.join(timeout=30)
        server.stop()
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert (out / "manifest.json").exists()

    restored = tmp_path / "restored"
    args = ["restore", str(out), "--data-dir", str(restored), *_db_args(restore_url)]
    assert _tf(*args) == 0
    assert _tf(*args) == 1  # the target holds data now: refused without --force
    server = LiveServer.start(restored, args=tuple(_db_args(restore_url)))
    try:
        agents = {a["name"] for a in server.admin("GET", "/v1/agents").json()["agents"]}
        assert set(before) <= agents
        config = server.gateway("GET", "/v1/gateway/config").json()
        served = {c["domains"][0]: c["credential"] for c in config["connectors"]}
        assert served == tokens
        assert server.admin("GET", "/v1/audit/verify").json()["ok"] is True
    finally:
        server.stop()


def test_restore_refuses_an_altered_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "tf"
    server = LiveServer.start(data)
    try:
        body = {"type": "generic", "domains": ["a.example.com"], "token": "tok"}
        assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
    finally:
        server.stop()
    out = tmp_path / "backup"
    assert _tf("backup", str(out), "--data-dir", str(data)) == 0
    key = out / "encryption.key"
    os.chmod(key, 0o600)
    key.write_text(key.read_text()[::-1])  # another key: the manifest no longer matches
    target = tmp_path / "restored"
    capsys.readouterr()
    assert _tf("restore", str(out), "--data-dir", str(target)) == 1
    assert "altered (manifest mismatch)" in capsys.readouterr().err
    assert not (target / "agentfirewall.db").exists()
    # the manifest made to match too: the credential does not decrypt, so still refused
    key.write_text(generate_key_text())
    manifest = json.loads((out / "manifest.json").read_text())
    digest = hashlib.sha256(key.read_bytes()).hexdigest()
    manifest["files"]["encryption.key"] = {"sha256": digest, "bytes": key.stat().st_size}
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert _tf("restore", str(out), "--data-dir", str(target)) == 1
    assert "need key id" in capsys.readouterr().err
    assert not (target / "agentfirewall.db").exists()
    assert not (tmp_path / "restored.restoring").exists()


def test_backup_of_a_half_rotated_vault_restores_every_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "tf"
    server = LiveServer.start(data)
    tokens = {f"r{i}.example.com": f"secret-{i}" for i in range(4)}
    try:
        for domain, token in tokens.items():
            body = {"type": "generic", "domains": [domain], "token": token}
            assert server.admin("POST", "/v1/connectors", json=body).status_code == 201
    finally:
        server.stop()
    env = {
        **{k: v for k, v in os.environ.items() if k not in _KEY_ENV},
        "AGENTFIREWALL_VAULT_ROTATE_BATCH": "2",
        "AGENTFIREWALL_FAULT_KILL_AT": "6",  # after the first batch's commit
    }
    cmd = [sys.executable, "-m", "agentfirewall_server", "rotate-key", "--data-dir", str(data)]
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == -9
    out = tmp_path / "backup"
    assert _tf("backup", str(out), "--data-dir", str(data)) == 0
    restored = tmp_path / "restored"
    assert _tf("restore", str(out), "--data-dir", str(restored)) == 0
    server = LiveServer.start(restored)
    try:
        config = server.gateway("GET", "/v1/gateway/config").json()
        assert {c["domains"][0]: c["credential"] for c in config["connectors"]} == tokens
        vault = server.admin("GET", "/v1/vault").json()
        assert len([k for k in vault["keys"] if k["credentials"]]) == 2  # half re-sealed
    finally:
        server.stop()
