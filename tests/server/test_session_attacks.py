"""A cross-site attacker against dashboard sessions: CSRF on every state-changing route
(logout included), login CSRF, session fixation, cookie flags, dead sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from starlette.routing import BaseRoute, Mount, Route

from agentfirewall_server.store.schema import sessions
from tests.server.apiwalk import SEEDS
from tests.server.conftest import Harness
from tests.server.test_sessions import PASSWORD, SignedIn

#: The state-changing routes a session cannot call at all: each authenticates otherwise
#: (nothing, a setup token, a Slack signature). Any other route must check the CSRF token.
NO_SESSION = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/setup"),
    ("POST", "/api/v1/integrations/slack/interactivity"),
}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) & _UNSAFE):
                yield method, prefix + route.path


def test_every_state_changing_route_needs_the_sessions_csrf_token(harness: Harness) -> None:
    """Walk the app's real route table: with the owner's session cookie and no, a wrong,
    or another session's CSRF token, every POST/PUT/PATCH/DELETE is 403 csrf_failed."""
    owner = SignedIn(harness, "owner@example.com")
    other = SignedIn(harness, "other@example.com")
    routes = sorted(set(_routes(harness.client.app.routes)))  # type: ignore[attr-defined]
    assert ("POST", "/api/v1/auth/logout") in routes
    assert set(routes) >= NO_SESSION
    before = harness.audit_count()
    for sent in (None, "", "wrong", other.csrf, owner.csrf.upper(), owner.cookie):
        headers = {"Cookie": f"tf_session={owner.cookie}"}
        if sent is not None:
            headers["X-CSRF-Token"] = sent
        for method, template in routes:
            if (method, template) in NO_SESSION:
                continue
            path = re.sub(r"\{[^}]+\}", "x", template)
            answer = harness.client.request(
                method, path, json=SEEDS.get(template, {}), headers=headers
            )
            assert answer.status_code == 403, (method, template, sent, answer.text)
            assert answer.json()["error"] == "csrf_failed", (method, template)
    assert harness.audit_count() == before  # nothing happened
    assert owner.session_works()
    assert owner.call("POST", "/v1/agents", json={"name": "A"}).status_code == 201


def test_logout_needs_the_csrf_token_and_then_the_cookie_is_dead(harness: Harness) -> None:
    user = SignedIn(harness, "u@example.com")
    bare = harness.call("POST", "/v1/auth/logout", headers={"Cookie": f"tf_session={user.cookie}"})
    assert bare.status_code == 403  # a cross-site page cannot sign the user out
    assert user.session_works()
    out = user.call("POST", "/v1/auth/logout")
    assert out.status_code == 204
    cleared = out.headers["set-cookie"].lower()
    assert cleared.startswith("tf_session=")
    assert "max-age=0" in cleared
    assert not user.session_works()  # replaying the old cookie: the session is gone
    assert user.call("POST", "/v1/agents", json={"name": "A"}).status_code == 401
    assert user.token_works()  # an API token is not a session


def test_signing_in_mints_a_new_session_whatever_cookie_was_planted(harness: Harness) -> None:
    """Session fixation: a cookie planted before sign-in (made up, or the attacker's own
    session) never becomes the victim's session."""
    attacker = SignedIn(harness, "attacker@example.com")
    harness.admin("POST", "/v1/users", {"email": "victim@example.com", "password": PASSWORD,
                                        "role": "owner"})  # fmt: skip
    for planted in ("chosen-by-the-attacker", attacker.cookie):
        harness.client.cookies.clear()
        answer = harness.call(
            "POST", "/v1/auth/login", json={"email": "victim@example.com", "password": PASSWORD},
            headers={"Cookie": f"tf_session={planted}"})  # fmt: skip
        assert answer.status_code == 200
        fresh = answer.cookies["tf_session"]
        assert fresh != planted
        harness.client.cookies.clear()
        me = harness.call("GET", "/v1/auth/me", headers={"Cookie": f"tf_session={planted}"})
        if planted == attacker.cookie:
            assert me.json()["user"]["email"] == "attacker@example.com"
        else:
            assert me.status_code == 401
        victim = harness.call("GET", "/v1/auth/me", headers={"Cookie": f"tf_session={fresh}"})
        assert victim.json()["user"]["email"] == "victim@example.com"
        assert victim.json()["csrf_token"] != attacker.csrf


def test_the_session_cookie_is_httponly_lax_and_site_wide(harness: Harness) -> None:
    harness.admin("POST", "/v1/users", {"email": "c@example.com", "password": PASSWORD})
    answer = harness.call("POST", "/v1/auth/login",
                          json={"email": "c@example.com", "password": PASSWORD})  # fmt: skip
    flags = [f.strip().lower() for f in answer.headers["set-cookie"].split(";")]
    assert flags[0].startswith("tf_session=")
    assert {"httponly", "samesite=lax", "path=/", "max-age=43200"} <= set(flags[1:])
    assert answer.json()["csrf_token"] not in answer.headers["set-cookie"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/jsonp", "text/json", "application/json-patch+json"],
)  # fmt: skip
def test_sign_in_and_setup_refuse_what_a_cross_site_form_can_send(
    harness: Harness, content_type: str | None
) -> None:
    """Login CSRF: an HTML form (enctype text/plain) can spell a JSON body, so a page on
    another site could sign the victim's browser in to the attacker's account."""
    harness.admin("POST", "/v1/users", {"email": "a@example.com", "password": "pw=xyz-12345"})
    form = b'{"email":"a@example.com","password":"pw=xyz-12345"}'  # name=`...pw`, value=`xyz..."}`
    headers = {"Content-Type": content_type} if content_type else {}
    login = harness.call("POST", "/v1/auth/login", content=form, headers=headers)
    assert login.status_code == 415, login.text
    assert login.json()["error"] == "unsupported_media_type"
    assert "set-cookie" not in login.headers
    setup = harness.call("POST", "/v1/auth/setup", content=b"{}", headers=headers)
    assert setup.status_code == 415


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_sign_in_takes_json(harness: Harness, content_type: str) -> None:
    harness.admin("POST", "/v1/users", {"email": "a@example.com", "password": PASSWORD})
    body = b'{"email":"a@example.com","password":"%s"}' % PASSWORD.encode()
    login = harness.call("POST", "/v1/auth/login", content=body,
                         headers={"Content-Type": content_type})  # fmt: skip
    assert login.status_code == 200, login.text


def test_an_expired_session_is_refused(harness: Harness) -> None:
    user = SignedIn(harness, "u@example.com")
    assert user.session_works()
    harness.state.db.write_sync(lambda c: c.execute(update(sessions).values(expires_at=0.0)))
    assert not user.session_works()
    assert user.call("POST", "/v1/agents", json={"name": "A"}).status_code == 401


def test_a_session_cookie_or_csrf_token_is_no_bearer_token(harness: Harness) -> None:
    user = SignedIn(harness, "u@example.com")
    for secret in (user.cookie, user.csrf):
        assert harness.call("GET", "/v1/agents", secret).status_code == 401
