"""Sessions and sign-in (docs/server.md): revocation at once, throttling, Secure cookies."""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall_server.clock import now
from agentfirewall_server.signin import _delay, retry_after
from tests.server.conftest import Harness

PASSWORD = "correct horse battery"


def _login(h: Harness, email: str, password: str = PASSWORD) -> Any:
    return h.call("POST", "/v1/auth/login", json={"email": email, "password": password})


class SignedIn:
    """A user's dashboard session (cookie + CSRF) and an API token made in it."""

    def __init__(self, h: Harness, email: str, role: str = "owner") -> None:
        made = h.admin("POST", "/v1/users", {"email": email, "password": PASSWORD, "role": role})
        assert made.status_code == 201, made.text
        self.h, self.id = h, made.json()["id"]
        login = _login(h, email)
        assert login.status_code == 200, login.text
        self.cookie = login.cookies["tf_session"]
        self.csrf = login.json()["csrf_token"]
        h.client.cookies.clear()
        token = self.call("POST", "/v1/tokens", json={"name": "cli"})
        assert token.status_code == 201, token.text
        self.token: str = token.json()["token"]

    def call(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"X-CSRF-Token": self.csrf, "Cookie": f"tf_session={self.cookie}"}
        return self.h.call(method, path, headers=headers, **kw)

    def session_works(self) -> bool:
        status: int = self.call("GET", "/v1/auth/me").status_code
        assert status in (200, 401)
        return status == 200

    def token_works(self) -> bool:
        status: int = self.h.call("GET", "/v1/agents", self.token).status_code
        assert status in (200, 401)
        return status == 200


def _last_event(h: Harness, event_type: str) -> dict[str, Any]:
    events = h.admin("GET", f"/v1/audit?event_type={event_type}").json()["events"]
    assert events, event_type
    found: dict[str, Any] = events[0]
    return found


@pytest.mark.parametrize(
    "change", [{"password": "a new password 1"}, {"role": "admin"}, {"role": "viewer"}]
)
def test_a_password_reset_or_role_change_ends_sessions_and_tokens(
    harness: Harness, change: dict[str, str]
) -> None:
    SignedIn(harness, "keep@example.com")  # a second owner: the user may be demoted
    user = SignedIn(harness, "u@example.com")
    other = SignedIn(harness, "other@example.com")
    assert user.session_works()
    assert user.token_works()
    r = harness.admin("PATCH", f"/v1/users/{user.id}", change)
    assert r.status_code == 200, r.text
    assert not user.session_works()
    assert not user.token_works()
    assert other.session_works()
    assert other.token_works()
    data = _last_event(harness, "user.updated")["data"]
    assert data["sessions_ended"] == 1
    assert data["tokens_revoked"] == 1
    password = change.get("password", PASSWORD)
    assert _login(harness, "u@example.com", password).status_code == 200


def test_removing_a_user_ends_sessions_and_tokens(harness: Harness) -> None:
    first = SignedIn(harness, "first@example.com")
    refused = harness.admin("DELETE", f"/v1/users/{first.id}")
    assert refused.status_code == 409  # the last owner stays
    assert first.session_works()
    user = SignedIn(harness, "gone@example.com", role="owner")
    assert harness.admin("DELETE", f"/v1/users/{user.id}").status_code == 204
    assert not user.session_works()
    assert not user.token_works()
    assert first.session_works()
    assert first.token_works()
    emails = [u["email"] for u in harness.admin("GET", "/v1/users").json()["users"]]
    assert "gone@example.com" not in emails
    event = _last_event(harness, "user.removed")
    assert event["data"] == {"email": "gone@example.com", "sessions_ended": 1, "tokens_revoked": 1}
    assert _login(harness, "gone@example.com").status_code == 401
    assert harness.admin("DELETE", f"/v1/users/{user.id}").status_code == 404


def test_failed_sign_ins_are_throttled_per_account_and_audited(harness: Harness) -> None:
    harness.admin("POST", "/v1/users", {"email": "o@example.com", "password": PASSWORD})
    for _ in range(5):
        assert _login(harness, "o@example.com", "wrong password").status_code == 401
    r = _login(harness, "o@example.com")  # the right password, too early: not even checked
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"] == "rate_limited"
    assert r.json()["retry_after"] == int(r.headers["Retry-After"])
    failures = harness.admin("GET", "/v1/audit?event_type=user.login_failed").json()["events"]
    assert len(failures) == 5
    assert {e["subject"] for e in failures} == {"o@example.com"}
    assert all(e["data"]["address"] for e in failures)
    db = harness.state.db
    later = now() + 2
    # per account: another address is throttled as well ...
    assert db.read_sync(retry_after("o@example.com", "203.0.113.9", now(), 5, 900))
    # ... until the delay has passed (the store decides, no clock is waited for)
    assert db.read_sync(retry_after("o@example.com", "203.0.113.9", later, 5, 900)) is None


def test_failed_sign_ins_are_throttled_per_address(harness: Harness) -> None:
    harness.admin("POST", "/v1/users", {"email": "fresh@example.com", "password": PASSWORD})
    for i in range(5):  # a different account each time, from one address
        assert _login(harness, f"guess{i}@example.com", "wrong password").status_code == 401
    assert _login(harness, "fresh@example.com").status_code == 429


def test_the_delays_grow_and_are_capped() -> None:
    failures = [100.0] * 5
    waits = []
    for _ in range(14):
        waits.append(_delay(failures, 5, 900, now=100.0))
        failures.append(100.0)
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
    assert waits == sorted(waits)
    assert waits[-1] == 900.0
    assert _delay([100.0] * 4, 5, 900, now=100.0) == 0.0


def test_a_successful_sign_in_resets_the_account_count(harness: Harness) -> None:
    harness.admin("POST", "/v1/users", {"email": "r@example.com", "password": PASSWORD})
    for _ in range(4):
        assert _login(harness, "r@example.com", "wrong password").status_code == 401
    assert _login(harness, "r@example.com").status_code == 200
    db = harness.state.db
    # the address keeps its four failures; the account starts again from none
    assert db.read_sync(retry_after("r@example.com", "203.0.113.9", now(), 1, 900)) is None


@pytest.mark.parametrize(
    ("public_url", "secure"), [("https://tf.example.com", True), (None, False)]
)
def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    harness_factory: Any, public_url: str | None, secure: bool
) -> None:
    h: Harness = harness_factory(public_url=public_url)
    h.admin("POST", "/v1/users", {"email": "c@example.com", "password": PASSWORD})
    r = _login(h, "c@example.com")
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert ("; secure" in cookie.lower()) is secure
    assert "httponly" in cookie.lower()
