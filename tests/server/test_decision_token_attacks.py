"""An agent attacking ``execute`` with forged, re-spelled and misbound decision tokens.

Each forgery below uses the server's own private key where the attack needs a real
signature (so that only the property under test can refuse it), and checks that the
upstream saw nothing it should not have.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from agentfirewall.tokens import MAX_TOKEN_CHARS, sign_decision_token
from tests.core.test_tokens import malleate
from tests.fakes import FakeUpstreams
from tests.server.conftest import SPEC, Harness


def _github(h: Harness, fakes: FakeUpstreams) -> None:
    github = {"type": "github", "token": "ghp_secret_value", "base_url": fakes["github"].http_url}
    r = h.admin("POST", "/v1/connectors", json=github)
    assert r.status_code == 201, r.text


def _allowed(h: Harness, key: str) -> dict[str, Any]:
    body: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    assert body["status"] == "allowed", body
    return body


def _execute(h: Harness, key: str, action_id: str, token: str) -> Any:
    return h.agent(key, "POST", f"/v1/actions/{action_id}/execute", json={"decision_token": token})


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return found


def _merges(fakes: FakeUpstreams) -> int:
    return len(fakes["github"].received("PUT", "/repos/acme/api/pulls/42/merge"))


def test_a_malleated_signature_is_the_same_single_use_token(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    """(r, n - s) verifies, but it is the same jti: the action runs once, whichever comes
    first, and the other is refused."""
    fakes["github"].clear()
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action_id, token = body["action_request_id"], body["decision_token"]
    first = _execute(harness, key, action_id, malleate(token))
    assert first.status_code == 200, first.text
    again = _execute(harness, key, action_id, token)
    assert again.status_code == 409
    assert again.json()["error"] == "token_used"
    assert _merges(fakes) == 1


def test_forged_headers_and_respellings_are_401_and_send_nothing(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    fakes["github"].clear()
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action_id, token = body["action_request_id"], body["decision_token"]
    head, claims, sig = token.split(".")
    hs256 = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    forged = {
        "alg none": (f"{none}.{claims}.", "bad_algorithm"),
        "HS256 header on the real signature": (f"{hs256}.{claims}.{sig}", "bad_algorithm"),
        "padded signature": (f"{token}==", "malformed"),
        "other alphabet": (
            f"{head}.{claims}.{sig.replace('-', '+').replace('_', '/')}"
            if "-" in sig or "_" in sig
            else f"{head}.{claims}.{sig}=",
            "malformed",
        ),
        "four parts": (f"{token}.{sig}", "malformed"),
    }
    for name, (text, reason) in forged.items():
        r = _execute(harness, key, action_id, text)
        assert r.status_code == 401, (name, r.text)
        assert (r.json()["error"], r.json()["reason"]) == ("invalid_token", reason), name
    huge = _execute(harness, key, action_id, token + "A" * MAX_TOKEN_CHARS)
    assert huge.status_code == 422
    assert _merges(fakes) == 0
    assert _execute(harness, key, action_id, token).status_code == 200  # still usable


def test_a_token_issued_to_another_agent_is_refused(harness: Harness, fakes: FakeUpstreams) -> None:
    """Signed by the server, bound to this very action and its hash, but `sub` names
    another agent: 401 wrong_agent."""
    fakes["github"].clear()
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    harness.create_agent("Other")
    body = _allowed(harness, key)
    action_id = body["action_request_id"]
    real = _claims(body["decision_token"])
    for name in ("Other", "bot", "Bot "):
        forged = sign_decision_token(
            harness.state.signing_key, agent=name, action_request_id=action_id,
            action_hash=real["ahs"], now=int(time.time()))  # fmt: skip
        r = _execute(harness, key, action_id, forged)
        assert r.status_code == 401, r.text
        assert r.json()["reason"] == "wrong_agent"
    assert _merges(fakes) == 0


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_expired_and_not_yet_valid_tokens_are_refused(
    harness: Harness, fakes: FakeUpstreams, offset: int
) -> None:
    _github(harness, fakes)
    key = harness.create_agent("Bot")
    body = _allowed(harness, key)
    action_id = body["action_request_id"]
    real = _claims(body["decision_token"])
    forged = sign_decision_token(
        harness.state.signing_key, agent="Bot", action_request_id=action_id,
        action_hash=real["ahs"], now=int(time.time()) + offset)  # fmt: skip
    r = _execute(harness, key, action_id, forged)
    assert r.status_code == 401
    assert r.json()["reason"] == ("expired" if offset < 0 else "not_yet_valid")
