"""A damaged stored credential is a `VaultError` naming its owner, whatever the damage.

Never another exception (a traceback, a 500), never a wrong plaintext, never the secret in
the message; the server's readers of the vault turn it into their own answer (409 for the
gateway's refresh lease and rotated token, no message for Slack).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from agentfirewall.errors import VaultError
from agentfirewall_server.store.schema import credentials
from agentfirewall_server.vault import Keyring, Vault, generate_key_text
from tests.fuzzscale import examples
from tests.server.conftest import Harness

OWNER = "conn_github_1"
SECRET = "ghp_secret-value-1234"
KEY = Vault.from_text(generate_key_text())
RING = Keyring(Vault.from_text(generate_key_text()), [KEY])  # the damaged row's key: previous
SEALED = KEY.encrypt(SECRET, owner=OWNER)
PREFIX = f"v1:{KEY.key_id}:"
BLOB = SEALED[len(PREFIX) :]


def _opened(reader: Vault | Keyring, stored: str) -> tuple[bool, str]:
    """(True, the plaintext) or (False, the `VaultError`'s message); anything else raises."""
    try:
        return True, reader.decrypt(stored, owner=OWNER)
    except VaultError as exc:
        return False, str(exc)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(PREFIX + "abc", id="bad-padding"),  # the security review's row
        pytest.param(PREFIX, id="empty"),
        pytest.param(PREFIX + "AAAA", id="shorter-than-nonce-and-tag"),
        pytest.param(PREFIX + BLOB[:20], id="truncated"),
        pytest.param(PREFIX + "é" + BLOB[1:], id="not-ascii"),
        pytest.param(PREFIX + BLOB[:8] + "\n" + BLOB[8:], id="whitespace"),
        pytest.param(PREFIX + "!" + BLOB[1:], id="not-base64"),
        pytest.param(PREFIX + BLOB + "==", id="extra-padding"),
        pytest.param(f"v1:{KEY.key_id}", id="two-fields"),
        pytest.param("", id="blank"),
        pytest.param("v2:" + SEALED[3:], id="unknown-version"),
        pytest.param(KEY.encrypt(SECRET, owner="conn_github_2"), id="moved"),
    ],
)
def test_a_damaged_ciphertext_is_a_vault_error_naming_its_owner(stored: str) -> None:
    for reader in (RING, KEY):
        with pytest.raises(VaultError, match=f"`{OWNER}`") as raised:
            reader.decrypt(stored, owner=OWNER)
        assert SECRET not in str(raised.value)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.one_of(
        st.tuples(  # a splice: `cut` characters at `at` replaced by `put`
            st.integers(0, len(SEALED)), st.integers(0, 12), st.text(max_size=12)
        ).map(lambda t: SEALED[: t[0]] + t[2] + SEALED[t[0] + t[1] :]),
        st.text().map(lambda t: PREFIX + t),
        st.text(),
    )
)
def test_any_corruption_of_a_stored_ciphertext_is_a_vault_error(stored: str) -> None:
    for reader in (RING, KEY):
        opened, text = _opened(reader, stored)
        if opened:  # base64's unused low bits: another spelling of the same bytes
            assert text == SECRET
        else:
            assert f"`{OWNER}`" in text
            assert SECRET not in text


def _damage(harness: Harness, owner: str, stored: str) -> None:
    harness.state.db.write_sync(
        lambda c: c.execute(
            update(credentials).where(credentials.c.owner == owner).values(ciphertext=stored)
        )
    )
    harness.client.portal.call(harness.state.reload)  # type: ignore[union-attr]


def test_the_gateways_refresh_routes_answer_409_for_a_damaged_credential(
    harness: Harness,
) -> None:
    body = {"type": "generic", "domains": ["api.example.com"], "token": "tok-1"}
    cid = harness.admin("POST", "/v1/connectors", json=body).json()["id"]
    kid = harness.state.vault.key_id
    _damage(harness, cid, f"v1:{kid}:abc")
    lease = harness.gateway(
        "POST", f"/v1/gateway/connectors/{cid}/refresh-lease", json={"holder": "gw-1"}
    )
    assert lease.status_code == 409, lease.text
    assert f"the credential of `{cid}` cannot be read (vault)" in lease.json()["message"]
    rotated = harness.gateway(
        "POST",
        f"/v1/gateway/connectors/{cid}/refresh-token",
        json={"previous_sha256": "0" * 64, "refresh_token": "rt-new"},
    )
    assert rotated.status_code == 409, rotated.text
    assert f"the credential of `{cid}` cannot be read (vault)" in rotated.json()["message"]


def test_an_unreadable_slack_token_posts_nothing_and_refuses_interactivity(
    harness: Harness,
) -> None:
    settings_body = {
        "slack_bot_token": "xoxb-secret-token",
        "slack_signing_secret": "signing-secret",
        "slack_channel": "C123",
    }
    assert harness.admin("PATCH", "/v1/settings", json=settings_body).status_code == 200
    notifier = harness.state.slack
    assert notifier.secret("slack_bot_token") == "xoxb-secret-token"
    kid = harness.state.vault.key_id
    for name in ("slack_bot_token", "slack_signing_secret"):
        _damage(harness, f"settings:{name}", f"v1:{kid}:abc")
    assert notifier.secret("slack_bot_token") is None
    assert notifier._target() is None  # an approval is created; no message is posted
    refused = harness.call(
        "POST", "/api/v1/integrations/slack/interactivity", content=b"payload=%7B%7D"
    )
    assert refused.status_code == 404, refused.text
