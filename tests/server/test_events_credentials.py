"""An open event stream (`GET /api/v1/events`) ends with its caller's credential: signed
out, the user removed or demoted, the API token revoked. Before, a stream opened earlier
kept receiving every held action, with its parameters, after the credential was gone."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from tests.livesrv import LiveServer

PASSWORD = "correct horse battery staple"


class Stream:
    """`GET /api/v1/events` read in a thread: the event names it got, and whether it ended."""

    def __init__(self, server: LiveServer, headers: dict[str, str]) -> None:
        self.events: list[str] = []
        self.ended = threading.Event()
        ready = threading.Event()

        def listen() -> None:
            url = server.api_url + "/v1/events"
            try:
                with httpx.stream("GET", url, headers=headers, timeout=30) as stream:
                    for line in stream.iter_lines():
                        if line.startswith(": connected"):
                            ready.set()
                        elif line.startswith("event: "):
                            self.events.append(line.removeprefix("event: "))
            finally:
                ready.set()
                self.ended.set()

        threading.Thread(target=listen, daemon=True).start()
        assert ready.wait(20)
        assert not self.ended.is_set()


def _signed_in(server: LiveServer, email: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """A new owner's id, its session's headers and its API token's headers."""
    made = server.admin(
        "POST", "/v1/users", {"email": email, "password": PASSWORD, "role": "owner"}
    )
    assert made.status_code == 201, made.text
    login = httpx.post(
        server.api_url + "/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    session = {
        "Cookie": f"tf_session={login.cookies['tf_session']}",
        "X-CSRF-Token": login.json()["csrf_token"],
    }
    token = server.request("POST", "/v1/tokens", headers=session, json={"name": "cli"})
    assert token.status_code == 201, token.text
    return made.json()["id"], session, {"Authorization": f"Bearer {token.json()['token']}"}


def _sign_out(server: LiveServer, uid: str, session: dict[str, str]) -> None:
    assert server.request("POST", "/v1/auth/logout", headers=session).status_code == 204


def _remove(server: LiveServer, uid: str, session: dict[str, str]) -> None:
    assert server.admin("DELETE", f"/v1/users/{uid}").status_code == 204


def _demote(server: LiveServer, uid: str, session: dict[str, str]) -> None:
    assert server.admin("PATCH", f"/v1/users/{uid}", {"role": "viewer"}).status_code == 200


def _revoke(server: LiveServer, uid: str, session: dict[str, str]) -> None:
    prefix = next(
        t["prefix"]
        for t in server.admin("GET", "/v1/tokens").json()["tokens"]
        if t["name"] == "cli" and t.get("user_id") == uid
    )
    assert server.admin("DELETE", f"/v1/tokens/{prefix}").status_code == 204


Ending = Callable[[LiveServer, str, dict[str, str]], None]


@pytest.mark.parametrize(
    ("ending", "ends_session", "ends_token"),
    [
        (_sign_out, True, False),
        (_remove, True, True),
        (_demote, True, True),
        (_revoke, False, True),
    ],
)
def test_a_stream_ends_with_its_credential(
    live_server: LiveServer, ending: Ending, ends_session: bool, ends_token: bool
) -> None:
    spare = {"email": "spare@example.com", "password": PASSWORD, "role": "owner"}
    assert live_server.admin("POST", "/v1/users", spare).status_code == 201  # not the last owner
    uid, session, token = _signed_in(live_server, "streamer@example.com")
    by_session = Stream(live_server, {"Cookie": session["Cookie"]})
    by_token = Stream(live_server, token)
    ending(live_server, uid, session)
    # the next event: a held action's parameters are what a dead credential must not read
    assert live_server.admin("POST", "/v1/kill-switch", {"active": True}).status_code == 200
    for stream, ended in ((by_session, ends_session), (by_token, ends_token)):
        if ended:
            assert stream.ended.wait(10), "the stream outlived its credential"
            assert "kill_switch" not in stream.events
    live_server.admin("POST", "/v1/kill-switch", {"active": False})
    if not ends_token:
        assert _until(by_token, "kill_switch")


def _until(stream: Stream, event: str) -> bool:
    for _ in range(100):
        if event in stream.events:
            return True
        stream.ended.wait(0.1)
    return False
