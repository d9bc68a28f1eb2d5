"""A server whose keys are not its database's refuses to start (SQLite and PostgreSQL).

- Vault: the database records the key its servers seal with. A server holding none of the
  keys it records is refused, even over an empty vault (it would seal credentials that no
  other replica opens, after which none of them could restart); each rotation, online and
  offline, records its new key.
- Signing: a server whose key is neither the one that signed the newest stored checkpoint
  (else the one the database's first start recorded) nor a retired one it is given
  (``AGENTFIREWALL_SIGNING_KEYS_PREVIOUS``) is refused: every verify would report a break,
  and replicas would publish different JWKS.
"""

from __future__ import annotations

import contextlib
import gc
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete
from starlette.testclient import TestClient

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.app import create_app
from agentfirewall_server.checkpoints import SigningKeyError
from agentfirewall_server.rotate import rotate_key
from agentfirewall_server.settings import Settings
from agentfirewall_server.state import SIGNING_KEY_ID
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import audit_checkpoints, settings_table
from agentfirewall_server.vault import generate_key_text, key_id, parse_key
from agentfirewall_server.vaultcheck import VaultStartError, preflight, recorded_keys
from tests.server.conftest import Harness, make_settings
from tests.server.test_vault import _no_key_env  # noqa: F401 (an autouse fixture)


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[Harness]:
    try:
        with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
            yield Harness(client, settings.data_dir)
    finally:
        with warnings.catch_warnings():  # as conftest.py: a stopped app's pool connections
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _recorded(url: str) -> list[str]:
    db = Database(url)
    try:
        return db.read_sync(recorded_keys)
    finally:
        db.close()


def _kid(key: str) -> str:
    return key_id(parse_key(key))


#: The one signing key of the vault tests' servers (each data directory would make its own).
SIGNING = generate_signing_key().to_pem().decode()


def _vault_settings(data_dir: Path, database_url: str, **extra: str) -> Settings:
    return make_settings(data_dir, database_url, signing_key=SIGNING, **extra)


def test_a_server_with_another_vault_key_is_refused_even_over_an_empty_vault(
    database_url: str, tmp_path: Path
) -> None:
    first, other = generate_key_text(), generate_key_text()
    with serving(_vault_settings(tmp_path / "a", database_url, encryption_key=first)):
        pass  # the vault is empty: only the database's record names the key
    wrong = _vault_settings(tmp_path / "b", database_url, encryption_key=other)
    with pytest.raises(VaultStartError, match=f"seal credentials with key id `{_kid(first)}`"):
        preflight(wrong)  # the command line's check, before anything is made
    with pytest.raises(VaultStartError, match=f"key ids found: {_kid(other)}"):
        with serving(wrong):
            pass
    keyless = _vault_settings(tmp_path / "c", database_url)  # no key given: none is made
    with pytest.raises(VaultStartError, match="no encryption key"):
        preflight(keyless)
    assert not (keyless.data_dir / "encryption.key").exists()
    right = _vault_settings(tmp_path / "b", database_url, encryption_key=first)
    with serving(right) as b:
        body = {"type": "generic", "domains": ["api.example.com"], "token": "s3cret-token"}
        assert b.admin("POST", "/v1/connectors", json=body).status_code == 201
    assert _recorded(database_url) == [_kid(first)]


def test_each_rotation_records_its_new_vault_key(database_url: str, tmp_path: Path) -> None:
    settings = _vault_settings(tmp_path / "a", database_url)  # the key file made at start
    with serving(settings) as a:
        first = (settings.data_dir / "encryption.key").read_text().strip()
        assert _recorded(database_url) == [_kid(first)]
        assert a.admin("POST", "/v1/vault/rotate").status_code == 202
        deadline = time.monotonic() + 10
        while a.state.rotation.state == "running":
            assert time.monotonic() < deadline, "the rotation did not end"
            time.sleep(0.01)
        online = a.state.vault.key_id
    assert online != _kid(first)
    assert _recorded(database_url) == [online]
    assert rotate_key(settings, None) == 0  # offline
    offline = (settings.data_dir / "encryption.key").read_text().strip()
    assert _recorded(database_url) == [_kid(offline)] != [online]
    retired = _vault_settings(tmp_path / "b", database_url, encryption_key=first)
    with pytest.raises(VaultStartError, match=f"key id `{_kid(offline)}`"):
        with serving(retired):
            pass


def _public_pem(key: str) -> str:
    signing = serialization.load_pem_private_key(key.encode(), password=None)
    return (
        signing.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _execute(url: str, statement: Any) -> None:
    db = Database(url)
    try:
        db.write_sync(lambda c: c.execute(statement))
    finally:
        db.close()


#: What a server is held to: the key its first start recorded (every checkpoint deleted:
#: none signed yet, the cluster's first minute), or the newest checkpoint's (the record
#: deleted: a database older than it).
EVIDENCE = {
    "record": delete(audit_checkpoints),
    "checkpoint": delete(settings_table).where(settings_table.c.key == SIGNING_KEY_ID),
}


@pytest.mark.parametrize("evidence", list(EVIDENCE))
def test_a_server_with_another_signing_key_is_refused(
    database_url: str, tmp_path: Path, evidence: str
) -> None:
    first, other = generate_signing_key(), generate_signing_key()
    old, new = first.to_pem().decode(), other.to_pem().decode()
    vault = generate_key_text()

    def keys(data: str, signing: str, *previous: str) -> Settings:
        return make_settings(tmp_path / data, database_url, signing_key=signing,
                             encryption_key=vault, signing_keys_previous=[*previous])  # fmt: skip

    with serving(keys("a", old)) as a:
        assert a.admin("POST", "/v1/audit/checkpoints").status_code in (200, 201)
    _execute(database_url, EVIDENCE[evidence])
    match = f"signed with key `{first.kid}`, but this server signs with key `{other.kid}`"
    with pytest.raises(SigningKeyError, match=match), serving(keys("b", new)):
        pass
    # a deliberate change of key: the old key's public half is given as a previous one
    with serving(keys("b", new, _public_pem(old))) as b:
        assert b.admin("GET", "/v1/audit/verify").json()["ok"] is True
    with pytest.raises(SigningKeyError, match=f"signed with key `{other.kid}`"):
        with serving(keys("a", old)):  # the old key alone, after the change
            pass
