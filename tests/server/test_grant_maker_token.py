"""A grant is bound to the exact credential that made it (docs/budgets.md, Grants), on both
engines: the API token's row, not the token's name; the Slack member's link, not the email.

Before, the maker was read back from the approval's actor string (`token:<name>`,
`admin-token`, `slack:<email>`): a user holding two tokens of the default name "api token"
kept a grant made with one alive after revoking it (a leaked token's grant outlived the
token), the bootstrap admin token's rows after a rotation did the same, two users holding
tokens of the default name could make no grant with them at all (409 "cannot tell who"),
and a Slack grant was only skipped while its link was gone: `GET /api/v1/grants` showed it
active, and linking the email again brought it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import update

from agentfirewall_server.bootstrap import new_token, write_secret_file
from agentfirewall_server.identity import prefix_of
from agentfirewall_server.snapshot import put_setting
from agentfirewall_server.store.schema import tokens
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness
from tests.server.test_grant_maker_authority import MONTH, POLICY, Desk, _ok, desk
from tests.server.test_slack import _callback, _configure

__all__ = ["desk"]  # (a fixture, used here)

HELD = ("pending_approval", "pending")
PASSED = ("allowed", "approved")


def mint(desk: Desk, email: str, name: str | None = None) -> dict[str, Any]:
    """A token `email` mints signed in (the default name "api token" when `name` is None)."""
    h = desk.h
    csrf = desk.sign_in(email)
    made = h.call("POST", "/v1/tokens", json={} if name is None else {"name": name},
                  headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert made.status_code == 201, made.text
    h.client.cookies.clear()
    minted: dict[str, Any] = made.json()
    return minted


def grant_with(desk: Desk, token: str) -> str:
    """A 30-day grant on `desk`'s next held transfer, approved with `token`: its id."""
    body = {"grant": {"for_seconds": MONTH}}
    return desk.grant(
        lambda apv: _ok(desk.h.call("POST", f"/v1/approvals/{apv}/approve", token, json=body))
    )


def latest(h: Harness, event_type: str) -> dict[str, Any]:
    """The newest audit event of `event_type`."""
    answer = h.admin("GET", f"/v1/audit?event_type={event_type}&limit=1")
    found: dict[str, Any] = answer.json()["events"][0]
    return found


def revoke(h: Harness, prefix: str) -> list[str]:
    """Revoke the token `prefix` with the bootstrap admin token: the grants it ended."""
    assert h.admin("DELETE", f"/v1/tokens/{prefix}").status_code == 204
    revoked: list[str] = latest(h, "token.revoked")["data"].get("grants_revoked", [])
    return revoked


def test_revoking_a_leaked_token_ends_its_grant_not_the_grants_of_her_other_token(
    desk: Desk,
) -> None:
    """hunt-E item 1: two tokens of the default name; the grant made with the leaked one
    ends with it, at once, the one made with her laptop's token stands."""
    desk.person("ada@example.com", "owner")
    leaked, kept = mint(desk, "ada@example.com"), mint(desk, "ada@example.com")
    assert leaked["prefix"] != kept["prefix"]
    ops = desk.beside("Ops")
    by_leaked, by_kept = grant_with(desk, leaked["token"]), grant_with(ops, kept["token"])
    assert (desk.covered(), ops.covered()) == (PASSED, PASSED)

    assert revoke(desk.h, leaked["prefix"]) == [by_leaked]
    assert (desk.status(by_leaked), desk.status(by_kept)) == ("revoked", "active")
    (revoked,) = desk.revocations(by_leaked)
    assert revoked["data"]["reason"] == "the token that made it was revoked"
    assert (desk.covered(), ops.covered()) == (HELD, PASSED)
    assert revoke(desk.h, kept["prefix"]) == [by_kept]
    assert ops.covered() == HELD


def test_two_users_with_tokens_of_the_default_name_both_make_grants(desk: Desk) -> None:
    """hunt-E item 5: the maker is the caller the token authenticates, so a shared name is
    no longer refused (409 "cannot tell who"); each revocation ends its own grant."""
    desk.person("ada@example.com", "owner")
    desk.person("bob@example.com", "owner")
    ada, bob = mint(desk, "ada@example.com"), mint(desk, "bob@example.com")
    ops = desk.beside("Ops")
    by_ada, by_bob = grant_with(desk, ada["token"]), grant_with(ops, bob["token"])
    users = {u["email"]: u["id"] for u in desk.h.admin("GET", "/v1/users").json()["users"]}
    made = {g: desk.h.admin("GET", f"/v1/grants/{g}").json() for g in (by_ada, by_bob)}
    assert {g: m["created_by"] for g, m in made.items()} == {
        by_ada: "token:api token", by_bob: "token:api token"}  # fmt: skip
    assert (desk.covered(), ops.covered()) == (PASSED, PASSED)

    assert revoke(desk.h, bob["prefix"]) == [by_bob]
    assert (desk.status(by_ada), desk.status(by_bob)) == ("active", "revoked")
    assert (desk.covered(), ops.covered()) == (PASSED, HELD)
    demoted = desk.h.admin("PATCH", f"/v1/users/{users['ada@example.com']}",
                           json={"role": "admin"})  # fmt: skip
    assert demoted.status_code == 200, demoted.text  # (her tokens end: her grant too)
    assert desk.events("user.updated")[0]["data"]["grants_revoked"] == [by_ada]
    assert desk.covered() == HELD


def test_a_token_revoked_on_another_replica_makes_no_grant(desk: Desk) -> None:
    """The approve handler authenticates from the snapshot, which another replica's
    revocation reaches a moment later: the grant's transaction reads that token's row
    itself (not any live token of its name: she holds another), refuses (403), and the
    approval is undone with it."""
    desk.person("ada@example.com", "owner")
    stale, _ = mint(desk, "ada@example.com"), mint(desk, "ada@example.com")
    desk.h.state.db.write_sync(
        lambda c: c.execute(
            update(tokens).where(tokens.c.prefix == stale["prefix"]).values(kind="revoked")
        )
    )  # (as another replica writes it: this one's snapshot has not heard of it)
    held = desk.sdk()
    apv = held["approval"]["id"]
    answer = desk.h.call("POST", f"/v1/approvals/{apv}/approve", stale["token"],
                         json={"grant": {"for_seconds": MONTH}})  # fmt: skip
    assert answer.status_code == 403, answer.text
    assert "the token that made it was revoked" in answer.json()["message"]
    assert stale["token"] not in answer.text
    assert desk.h.admin("GET", f"/v1/approvals/{apv}").json()["status"] == "pending"
    assert desk.h.admin("GET", "/v1/grants?status=all").json()["grants"] == []


def _rotate(data_dir: Path) -> str:
    """Put a new bootstrap admin token in `data_dir` (as an operator rotating
    ``admin.token``, or AGENTFIREWALL_ADMIN_TOKEN, does): the new token."""
    token = new_token("tfa_")
    write_secret_file(data_dir / "admin.token", token.encode())
    return token


def test_a_grant_made_with_the_bootstrap_token_ends_with_that_token_after_a_rotation(
    harness_factory: Any,
) -> None:
    """The bootstrap admin token's rows all share one name and no user: after a rotation
    the old token is still live (until revoked) and so is its grant; revoking it ends that
    grant, not the one made with the new token."""
    first: Harness = harness_factory("rotating")
    assert first.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    old_desk = Desk(first)
    by_old = grant_with(old_desk, first.admin_token)
    first.client.__exit__(None, None, None)
    _rotate(first.data_dir)
    h: Harness = harness_factory("rotating")
    assert h.admin_token != first.admin_token
    desk, ops = old_desk.on(h), Desk(h, "Ops")
    by_new = grant_with(ops, h.admin_token)
    assert (desk.covered(), ops.covered()) == (PASSED, PASSED)  # (the old token is live)

    assert revoke(h, prefix_of(first.admin_token)) == [by_old]
    assert (desk.status(by_old), desk.status(by_new)) == ("revoked", "active")
    assert (desk.covered(), ops.covered()) == (HELD, PASSED)


def _slack_desk(harness_factory: Any, fakes: FakeUpstreams) -> tuple[Harness, Desk]:
    """A server with Slack set up, ada (an admin) linked as U0ADA and bob as U0BOB."""
    h: Harness = harness_factory(slack_api_url=fakes["slack"].http_url + "/api")
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    _configure(h, {"U0ADA": "ada@example.com", "U0BOB": "bob@example.com"})
    for person in h.admin("GET", "/v1/users").json()["users"]:
        promoted = h.admin("PATCH", f"/v1/users/{person['id']}", json={"role": "admin"})
        assert promoted.status_code == 200, promoted.text
    return h, Desk(h)


def _click(desk: Desk, member: str) -> str:
    """An "Approve for 1 h" click by `member` on `desk`'s next held transfer: the grant."""
    return desk.grant(lambda apv: _ok(_callback(desk.h, apv, "approve_1h", member=member)))


def _link(h: Harness, links: dict[str, str]) -> dict[str, Any]:
    """Write the Slack links: the `settings.updated` event's data."""
    answer = h.admin("PATCH", "/v1/settings", json={"slack_approvers": links})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = latest(h, "settings.updated")["data"]
    return data


def test_removing_a_slack_link_revokes_its_grants_at_once_and_relinking_brings_none_back(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    """hunt-E item 3: the settings write that removes ada's link revokes her Slack grant
    in its own transaction (listed in its event, shown revoked at once); bob's stands; an
    unrelated settings write revokes nothing; linking her again brings nothing back."""
    h, desk = _slack_desk(harness_factory, fakes)
    ops = desk.beside("Ops")
    by_ada, by_bob = _click(desk, "U0ADA"), _click(ops, "U0BOB")
    assert (desk.covered(), ops.covered()) == (PASSED, PASSED)
    timeout = h.admin("PATCH", "/v1/settings", json={"approval_timeout_seconds": 600})
    assert timeout.status_code == 200, timeout.text
    assert "grants_revoked" not in latest(h, "settings.updated")["data"]

    unlinked = _link(h, {"U0BOB": "bob@example.com"})
    assert unlinked == {"changed": ["slack_approvers"], "grants_revoked": [by_ada]}
    assert (desk.status(by_ada), desk.status(by_bob)) == ("revoked", "active")
    (revoked,) = desk.revocations(by_ada)
    assert (revoked["actor"], revoked["data"]["reason"]) == (
        "admin-token", "its maker's Slack link was removed")  # fmt: skip
    relinked = _link(h, {"U0ADA": "ada@example.com", "U0BOB": "bob@example.com"})
    assert "grants_revoked" not in relinked
    assert desk.status(by_ada) == "revoked"
    assert (desk.covered(), ops.covered()) == (HELD, PASSED)


def test_a_slack_grant_is_bound_to_the_member_not_the_email(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    """Linking ada's email to another Slack member instead (her old account lost, say)
    ends what the old member's clicks granted; the new member's grant stands."""
    h, desk = _slack_desk(harness_factory, fakes)
    by_old = _click(desk, "U0ADA")
    moved = _link(h, {"U0ADANEW": "ada@example.com", "U0BOB": "bob@example.com"})
    assert moved["grants_revoked"] == [by_old]
    ops = desk.beside("Ops")
    by_new = _click(ops, "U0ADANEW")
    assert (desk.status(by_old), desk.status(by_new)) == ("revoked", "active")
    assert (desk.covered(), ops.covered()) == (HELD, PASSED)


def test_a_click_through_a_link_removed_on_another_replica_decides_nothing(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    """The click handler finds the member in the snapshot, which another replica's
    settings write reaches a moment later: the link is read again in the click's
    transaction, so the click is refused privately and neither approves nor grants."""
    h, desk = _slack_desk(harness_factory, fakes)
    h.state.db.write_sync(
        lambda c: put_setting(c, "slack_approvers", {"U0BOB": "bob@example.com"})
    )  # (as another replica writes it: this one's snapshot still links U0ADA)
    held = desk.sdk()
    answer = _callback(h, held["approval"]["id"], "approve_1h", member="U0ADA")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["ok"], body["response_type"]) == (False, "ephemeral")
    assert "no longer linked" in body["text"]
    assert h.admin("GET", f"/v1/approvals/{held['approval']['id']}").json()["status"] == "pending"
    assert h.admin("GET", "/v1/grants?status=all").json()["grants"] == []
