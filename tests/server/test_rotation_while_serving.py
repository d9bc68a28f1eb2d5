"""Vault rotation while the server serves, and with credentials that do not decrypt.

- A rotation forgets a retired key only after the configuration snapshot holds the
  re-sealed ciphertexts: an execute in between decrypts as before (it was a 500).
- A credential the keyring cannot open at execute is a 503 ``credential_unavailable``
  that claims nothing: the same decision token works once it can be read.
- A credential that does not decrypt is skipped and named, online and offline; every other
  one is re-sealed, its key stays in the keyring, and the next rotation is not blocked.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from agentfirewall.tokens import generate_signing_key
from agentfirewall_server.app import create_app
from agentfirewall_server.main import main
from agentfirewall_server.settings import Settings
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Vault, generate_key_text, kid_of
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness
from tests.server.test_vault import _no_key_env, _rows  # noqa: F401 (an autouse fixture)


def _github(harness: Harness, fakes: FakeUpstreams, token: str) -> str:
    github = fakes["github"]
    github.clear()
    body = {"type": "github", "token": token, "base_url": github.http_url}
    created = harness.admin("POST", "/v1/connectors", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _decide(harness: Harness, key: str) -> dict[str, Any]:
    decided = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    assert decided.status_code == 200, decided.text
    return dict(decided.json())


def _execute(harness: Harness, key: str, decided: dict[str, Any]) -> Any:
    path = f"/v1/actions/{decided['action_request_id']}/execute"
    return harness.agent(key, "POST", path, json={"decision_token": decided["decision_token"]})


def _rotated(harness: Harness) -> dict[str, Any]:
    """Start an online rotation and wait (bounded) for its end."""
    assert harness.admin("POST", "/v1/vault/rotate").status_code == 202
    for _ in range(1000):
        if harness.state.rotation.state != "running":
            break
        time.sleep(0.01)
    return dict(harness.admin("GET", "/v1/vault").json())


def _set_ciphertext(harness: Harness, owner: str, stored: str) -> None:
    harness.state.db.write_sync(
        lambda c: c.execute(
            update(credentials).where(credentials.c.owner == owner).values(ciphertext=stored)
        )
    )


def test_an_execute_while_a_rotation_retires_the_old_key_still_decrypts(
    harness: Harness, fakes: FakeUpstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    _github(harness, fakes, "ghp_rotation_window")
    key = harness.create_agent("Bot")
    state = harness.state
    old_kid = state.vault.key_id
    reload = state.reload
    outcomes: list[int] = []  # the execute's status, answered in the window

    async def execute_then_reload() -> None:
        # the re-seal is committed and the old key retired from the keyring file, but the
        # snapshot still holds the ciphertexts it sealed: an execute lands in this window
        if state.rotation is not None and not outcomes:
            outcomes.append(0)
            outcomes[0] = await asyncio.to_thread(
                lambda: _execute(harness, key, _decide(harness, key)).status_code
            )
        await reload()

    monkeypatch.setattr(state, "reload", execute_then_reload)
    vault = _rotated(harness)
    assert outcomes == [200]
    (sent,) = fakes["github"].received("PUT")
    assert sent.header("authorization") == "token ghp_rotation_window"
    assert vault["rotation"]["state"] == "done"
    assert vault["rotation"]["retired_keys"] == [old_kid]
    assert old_kid not in state.vault.keys  # forgotten once the snapshot no longer names it
    assert {kid_of(v) for v in state.snapshot.credentials.values()} == {state.vault.key_id}
    assert _execute(harness, key, _decide(harness, key)).status_code == 200


def test_a_credential_the_keyring_cannot_open_at_execute_is_a_503_that_keeps_the_token(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    conn = _github(harness, fakes, "ghp_kept_token")
    key = harness.create_agent("Bot")
    keyring = harness.state.vault
    old = keyring.current
    keyring.set_current(Vault.from_text(generate_key_text()))
    del keyring.keys[old.key_id]  # the snapshot's ciphertext names a key this keyring lacks
    decided = _decide(harness, key)
    refused = _execute(harness, key, decided)
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert body["error"] == "credential_unavailable"
    assert body["retryable"] is True
    assert f"connector `{conn}` is unavailable" in body["message"]
    assert "ghp_kept_token" not in refused.text
    assert fakes["github"].received("PUT") == []
    keyring.keys[old.key_id] = old
    done = _execute(harness, key, decided)  # the same token: nothing was claimed
    assert done.status_code == 200, done.text
    assert len(fakes["github"].received("PUT")) == 1


def test_online_rotation_reseals_the_readable_and_names_the_unreadable(harness: Harness) -> None:
    ids = {}
    for name in ("good", "damaged", "moved"):
        body = {"type": "generic", "domains": [f"{name}.example.com"], "token": f"tok-{name}"}
        ids[name] = harness.admin("POST", "/v1/connectors", json=body).json()["id"]
    first = harness.state.vault.key_id
    rows = _rows(harness.state.settings)
    _set_ciphertext(harness, ids["damaged"], f"v1:{first}:abc")
    _set_ciphertext(harness, ids["moved"], rows[ids["good"]])
    harness.client.portal.call(harness.state.reload)  # type: ignore[union-attr]
    unreadable = sorted([ids["damaged"], ids["moved"]])
    seen = [first]
    for _ in range(2):  # the second is not blocked by what the first left
        vault = _rotated(harness)
        rotation = vault["rotation"]
        assert rotation["state"] == "done", rotation
        assert rotation["error"] is None
        assert sorted(rotation["unreadable"]) == unreadable
        assert (rotation["total"], rotation["resealed"]) == (1, 1)
        assert vault["current_key_id"] not in seen  # a new key each time
        seen.append(vault["current_key_id"])
        keys = {k["key_id"]: k for k in vault["keys"]}
        assert keys[first]["in_keyring"]
        assert keys[first]["credentials"] == 2
        assert keys[vault["current_key_id"]]["credentials"] == 1
    assert rotation["retired_keys"] == [seen[1]]
    assert set(harness.state.vault.keys) == {first, seen[2]}
    config = harness.gateway("GET", "/v1/gateway/config").json()
    assert {c["id"]: c["credential"] for c in config["connectors"]} == {ids["good"]: "tok-good"}
    events = harness.admin("GET", "/v1/audit?event_type=vault.rotated").json()["events"]
    assert sorted(events[0]["data"]["unreadable"]) == unreadable
    assert "abc" not in str(events)
    assert "tok-" not in str(events)


def test_offline_rotation_skips_and_names_an_unreadable_credential(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "tf", database_url=database_url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        admin = {"Authorization": f"Bearer {(settings.data_dir / 'admin.token').read_text()}"}
        ids = [
            client.post(
                "/api/v1/connectors",
                headers=admin,
                json={"type": "generic", "domains": [f"{n}.example.com"], "token": f"tok-{n}"},
            ).json()["id"]
            for n in ("good", "bad")
        ]
    good, bad = ids
    first = Vault.from_file(settings.data_dir / "encryption.key").key_id
    db = Database(settings.resolved_database_url)
    try:
        db.write_sync(
            lambda c: c.execute(
                update(credentials)
                .where(credentials.c.owner == bad)
                .values(ciphertext=f"v1:{first}:abc")
            )
        )
    finally:
        db.close()
    capsys.readouterr()
    args = ["rotate-key", "--data-dir", str(settings.data_dir)]
    assert main([*args, "--database-url", settings.resolved_database_url]) == 1
    out, err = capsys.readouterr()
    assert "re-sealed 1 credential(s)" in out
    assert f"the credential of `{bad}` does not decrypt" in err
    assert "abc" not in err
    assert "tok-" not in out + err
    current = Vault.from_file(settings.data_dir / "encryption.key").key_id
    assert current != first
    rows = _rows(settings)
    assert (kid_of(rows[good]), rows[bad]) == (current, f"v1:{first}:abc")
    keyring_file = (settings.data_dir / "encryption.keyring").read_text()
    assert first in {Vault.from_text(line).key_id for line in keyring_file.split()}
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        gateway = {"Authorization": f"Bearer {(settings.data_dir / 'gateway.token').read_text()}"}
        config = client.get("/api/v1/gateway/config", headers=gateway).json()
        assert {c["id"]: c["credential"] for c in config["connectors"]} == {good: "tok-good"}


def test_another_replica_serves_throughout_and_reloads_the_resealed_credentials(
    harness_factory: Any, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL database")
    old, new = generate_key_text(), generate_key_text()
    keys = {"encryption_key": new, "encryption_keys_previous": old,  # as docs/server.md says
            "signing_key": generate_signing_key().to_pem().decode()}  # fmt: skip
    rotating, other = harness_factory("a", **keys), harness_factory("b", **keys)
    body = {"type": "generic", "domains": ["api.example.com"], "token": "tok-a"}
    cid = rotating.admin("POST", "/v1/connectors", json=body).json()["id"]
    _set_ciphertext(rotating, cid, Vault.from_text(old).encrypt("tok-a", owner=cid))
    for replica in (rotating, other):  # both serve the ciphertext the old key sealed
        replica.client.portal.call(replica.state.reload)  # type: ignore[union-attr]
    assert _rotated(rotating)["rotation"]["resealed"] == 1
    new_kid = Vault.from_text(new).key_id
    for _ in range(500):  # the new configuration version reaches the other replica
        config = other.gateway("GET", "/v1/gateway/config")
        assert config.status_code == 200, config.text
        assert {c["id"]: c["credential"] for c in config.json()["connectors"]} == {cid: "tok-a"}
        if kid_of(other.state.snapshot.credentials[cid]) == new_kid:
            break
        time.sleep(0.02)
    assert kid_of(other.state.snapshot.credentials[cid]) == new_kid
    assert Vault.from_text(old).key_id in other.state.vault.keys  # it forgets nothing itself
