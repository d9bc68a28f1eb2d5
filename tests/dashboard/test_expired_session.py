"""A session that ended under an open page: one trip to the sign-in page, and back.

However the session ends (it expired, the person signed out in another browser, an owner
changed their password) and whatever notices it first (a click to another page, a live
update whose requests all come back 401 at once), the page leaves for the sign-in page
exactly once, with a `next=` naming the page once, and signing in returns there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from tests.dashboard.conftest import USERS
from tests.dashboard.scenario import create_agent

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser

OWNER = USERS["owner"]
LOGIN = "/dashboard/login"


def _expire(dash: Dashboard, page: Any) -> None:
    with sqlite3.connect(dash.data_dir / "agentfirewall.db", timeout=30) as db:
        assert db.execute("UPDATE sessions SET expires_at = 0").rowcount >= 1


def _sign_out_elsewhere(dash: Dashboard, page: Any) -> None:
    """The same session, signed out by another client (another tab, a script)."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=f"{dash.url}/api/v1", cookies=cookies, timeout=30) as other:
        csrf = other.get("/auth/me").json()["csrf_token"]
        assert other.post("/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204


def _change_password(dash: Dashboard, page: Any) -> None:
    """An owner sets the password again: every session of the person ends."""
    person = next(u for u in dash.api("GET", "/users")["users"] if u["email"] == OWNER)
    dash.api("PATCH", f"/users/{person['id']}", {"password": dash.password})


ENDINGS: dict[str, Callable[[Dashboard, Any], None]] = {
    "expired": _expire,
    "signed-out-elsewhere": _sign_out_elsewhere,
    "password-changed": _change_password,
}


@dataclass
class Trail:
    """Every document the page's main frame asked for, and every one it showed."""

    asked: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, page: Any) -> Trail:
        trail = cls()

        def on_request(request: Any) -> None:
            if request.is_navigation_request() and request.frame == page.main_frame:
                trail.asked.append(_local(request.url))

        def on_navigated(frame: Any) -> None:
            if frame == page.main_frame:
                trail.shown.append(_local(frame.url))

        page.on("request", on_request)
        page.on("framenavigated", on_navigated)
        return trail


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _sign_in_url(original: str) -> str:
    return f"{LOGIN}?next={quote(original, safe='')}"


def _assert_one_trip(trail: Trail, original: str) -> None:
    trips = [u for u in trail.asked if urlsplit(u).path == LOGIN]
    assert trips == [_sign_in_url(original)], trail
    (nxt,) = parse_qs(urlsplit(trips[0]).query)["next"]
    assert nxt == original
    assert urlsplit(nxt).path != LOGIN  # not nested
    assert nxt.startswith("/dashboard/")  # not another origin
    assert not nxt.startswith("//")


def _sign_in_again(dash: Dashboard, page: Any, original: str) -> None:
    page.get_by_label("Email").fill(OWNER)
    page.get_by_label("Password").fill(dash.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{dash.url}{original}")
    dash.wait_ready(page)


def _settle(page: Any) -> None:
    """Long enough for the live-update throttles (at most 1 s) and any late 401."""
    page.wait_for_timeout(1500)


def test_a_click_after_the_session_ended_signs_in_once_and_comes_back(dash: Dashboard) -> None:
    ending = "signed-out-elsewhere"  # (one ending: the page sees the same 401 for each)
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/approvals")
    trail = Trail.of(page)
    ENDINGS[ending](dash, page)
    page.get_by_role("link", name="Agents").click()
    page.wait_for_url(f"{dash.url}{_sign_in_url('/dashboard/agents')}")
    dash.wait_ready(page)
    _settle(page)
    assert trail.asked == ["/dashboard/agents", _sign_in_url("/dashboard/agents")], trail
    _assert_one_trip(trail, "/dashboard/agents")
    _sign_in_again(dash, page, "/dashboard/agents")
    _settle(page)
    assert trail.shown[-1] == "/dashboard/agents"
    assert len([u for u in trail.asked if urlsplit(u).path == LOGIN]) == 1, trail
    watched.assert_clean("status of 401")


def _register_agent(dash: Dashboard) -> None:
    """A `config` event: pages that show configuration refresh, several calls at once."""
    create_agent(dash, "Announcer Bot")


def _engage_two_kill_switches(dash: Dashboard) -> None:
    """Two `kill_switch` events back to back: the header's badge asks twice at once."""
    for scope in ("agent:Nobody Bot", "agent:Noone Bot"):  # not registered
        dash.api("POST", "/kill-switch", {"active": True, "scope": scope, "reason": "test"})


# What an owner does meanwhile elsewhere, announced to the open page, whose live update
# then sends several API calls at once, each coming back 401.
# Each ending once, on pages whose refresh asks several things at once (a browser run is
# ~8 s: the connectors page, approvals and traffic with its query behave the same).
LIVE = [
    ("expired", "/dashboard/overview", _register_agent),  # status, agents, hourly counts
    ("signed-out-elsewhere", "/dashboard/agents/Ops%20Bot", _register_agent),  # 3 calls
    ("password-changed", "/dashboard/traffic?agent=Ops+Bot&decision=deny",
     _engage_two_kill_switches),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ending", "original", "announce"), LIVE, ids=lambda v: getattr(v, "__name__", v)
)
def test_parallel_401s_of_a_live_update_sign_in_once_and_come_back(
    dash: Dashboard, ending: str, original: str, announce: Callable[[Dashboard], None]
) -> None:
    create_agent(dash, "Ops Bot")
    watched = dash.open()
    page = watched.page
    page.goto(f"{dash.url}{original}")
    dash.wait_ready(page)
    page.wait_for_timeout(300)  # the page's event stream is connected
    trail = Trail.of(page)
    ENDINGS[ending](dash, page)
    announce(dash)
    page.wait_for_url(f"{dash.url}{_sign_in_url(original)}")
    dash.wait_ready(page)
    _settle(page)
    assert trail.asked == [_sign_in_url(original)], trail
    _assert_one_trip(trail, original)
    _sign_in_again(dash, page, original)
    _settle(page)
    assert trail.shown[-1] == original
    watched.assert_clean("status of 401")


def test_signing_out_with_an_ended_session_goes_to_sign_in_once(dash: Dashboard) -> None:
    watched = dash.open()
    page = watched.page
    dash.goto(page, "/agents")
    trail = Trail.of(page)
    _expire(dash, page)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: LOGIN in url)
    _settle(page)
    assert [u for u in trail.asked if urlsplit(u).path == LOGIN] == [LOGIN], trail
    watched.assert_clean("status of 401")


@pytest.mark.parametrize(
    ("next_path", "lands_on"),
    [
        # a `next` that is itself the sign-in page: its own `next`, not another sign-in
        (
            _sign_in_url(_sign_in_url("/dashboard/audit?event_type=user.login")),
            "/dashboard/audit?event_type=user.login",
        ),
        (
            f"{LOGIN}?next={quote('//evil.example/dashboard/agents', safe='')}",
            "/dashboard/overview",
        ),
    ],
)
def test_a_next_naming_the_sign_in_page_is_not_followed_to_it(
    dash: Dashboard, next_path: str, lands_on: str
) -> None:
    watched = dash.open(role=None)
    page = watched.page
    page.goto(f"{dash.url}{_sign_in_url(next_path)}")
    dash.wait_ready(page)
    trail = Trail.of(page)
    page.get_by_label("Email").fill(OWNER)
    page.get_by_label("Password").fill(dash.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{dash.url}{lands_on}")
    dash.wait_ready(page)
    assert trail.asked == [lands_on], trail
    watched.assert_clean()
