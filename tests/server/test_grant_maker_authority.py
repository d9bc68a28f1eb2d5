"""A grant lives no longer than its maker's authority (docs/budgets.md, Grants), on both
engines, on the SDK path and through the Gateway API.

0.1 kept the maker's role on the grant and checked only that copy: an admin who approved
with a 30-day grant and was then demoted to viewer, or removed, kept letting every later
request of that action through (any amount: the grant had no constraint), and so did the
Slack "Approve for 1 h" grant of a linked admin and a grant made with an API token that
was revoked since. Their sessions and tokens ended at once; their grants did not.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.store.schema import grants
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness
from tests.server.test_slack import _callback, _configure

POLICY = """
name: transfers
rules:
  - name: transfers-need-an-admin
    conditions: {field: action_spec.type, operator: equals, value: stripe.transfer.create}
    decision: requires_approval
    approval: {timeout_seconds: 3600, approver_roles: [admin]}
"""
MONTH = 30 * 86400


def transfer(amount: int = 100) -> dict[str, Any]:
    return {"type": "stripe.transfer.create",
            "resource": {"provider": "stripe", "target": "transfers"},
            "parameters": {"amount": amount, "currency": "usd"}}  # fmt: skip


class Desk:
    """One agent's transfers, held for an admin (`POLICY`), and the owner's calls."""

    def __init__(self, h: Harness, agent: str = "Bot", key: str | None = None) -> None:
        self.h, self.agent = h, agent
        self.key = key or h.create_agent(agent, rate_limit_per_minute=100_000)

    def beside(self, agent: str) -> Desk:
        """Another agent's desk on the same server (its grants are its own)."""
        return Desk(self.h, agent)

    def on(self, replica: Harness) -> Desk:
        """This agent's desk on another replica of the same database."""
        return Desk(replica, self.agent, self.key)

    def sdk(self, amount: int = 100) -> dict[str, Any]:
        """An SDK request: ``allowed`` when a grant covers it, else ``pending_approval``."""
        answer = self.h.agent(self.key, "POST", "/v1/actions",
                              json={"action_spec": transfer(amount)})  # fmt: skip
        assert answer.status_code in (200, 201, 202), answer.text
        body: dict[str, Any] = answer.json()
        return body

    def gateway(self, amount: int = 100) -> dict[str, Any]:
        """A request the gateway holds for an admin: ``approved`` when a grant covers it."""
        spec = transfer(amount)
        body = {"agent": self.agent, "connector": "stripe", "action_spec": spec, "reason": "held",
                "action_hash": parse_action_spec(spec).action_hash,
                "approver_roles": ["admin"]}  # fmt: skip
        answer = self.h.gateway("POST", "/v1/gateway/approvals", json=body)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    def covered(self) -> tuple[str, str]:
        """How the next SDK and gateway requests fare (each with a new amount)."""
        return self.sdk(999_999)["status"], self.gateway(999_999)["status"]

    def person(self, email: str, role: str) -> str:
        person = {"email": email, "password": "password-1", "role": role}
        made = self.h.admin("POST", "/v1/users", json=person)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def sign_in(self, email: str) -> str:
        """Sign `email` in (the client's cookie is theirs from now on): the CSRF token."""
        self.h.client.cookies.clear()
        login = self.h.call("POST", "/v1/auth/login",
                            json={"email": email, "password": "password-1"})  # fmt: skip
        assert login.status_code == 200, login.text
        return str(login.json()["csrf_token"])

    def grant(self, approve: Any) -> str:
        """Hold an SDK request, approve it with a grant through `approve(approval id)`: the
        grant's id."""
        held = self.sdk()
        assert held["status"] == "pending_approval", held
        apv = held["approval"]["id"]
        approve(apv)
        made = self.h.admin("GET", "/v1/grants?status=all").json()["grants"]
        (grant,) = [g["id"] for g in made if g["approval_id"] == apv]
        return str(grant)

    def grant_signed_in(self, csrf: str) -> str:
        return self.grant(lambda apv: _ok(self.h.call(
            "POST", f"/v1/approvals/{apv}/approve", json={"grant": {"for_seconds": MONTH}},
            headers={"X-CSRF-Token": csrf})))  # fmt: skip

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """The audit events of `event_type`, newest first."""
        answer = self.h.admin("GET", f"/v1/audit?event_type={event_type}&limit=1000")
        found: list[dict[str, Any]] = answer.json()["events"]
        return found

    def latest(self, event_type: str) -> dict[str, Any]:
        return self.events(event_type)[0]

    def status(self, grant_id: str) -> str:
        return str(self.h.admin("GET", f"/v1/grants/{grant_id}").json()["status"])

    def revocations(self, grant_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events("grant.revoked") if e["subject"] == grant_id]


@pytest.fixture
def desk(harness: Harness) -> Desk:
    assert harness.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    return Desk(harness)


@pytest.mark.parametrize("change", ["viewer", "member", "removed"])
def test_a_grant_ends_with_its_makers_role(desk: Desk, change: str) -> None:
    uid = desk.person("ada@example.com", "admin")
    grant = desk.grant_signed_in(desk.sign_in("ada@example.com"))
    assert desk.covered() == ("allowed", "approved")
    if change == "removed":
        assert desk.h.admin("DELETE", f"/v1/users/{uid}").status_code == 204
        event = desk.latest("user.removed")
    else:
        changed = desk.h.admin("PATCH", f"/v1/users/{uid}", json={"role": change})
        assert changed.status_code == 200, changed.text
        event = desk.latest("user.updated")
    assert desk.covered() == ("pending_approval", "pending")  # as without the grant
    assert event["subject"] == uid
    assert event["data"]["grants_revoked"] == [grant]
    assert desk.status(grant) == "revoked"
    (revoked,) = desk.revocations(grant)
    assert revoked["actor"] == "admin-token"  # who changed the role
    assert revoked["data"]["reason"] == (
        "its maker was removed" if change == "removed" else f"its maker's role is now {change}"
    )


def test_a_grant_lives_on_while_its_maker_holds_the_role_it_was_made_with(desk: Desk) -> None:
    """A password reset, another person's demotion, a promotion and a demotion back to the
    role the grant was made with leave it; a demotion below that role ends it (an owner's
    grant ends when she becomes an admin, whatever the rule it was made on asked for)."""
    ada = desk.person("ada@example.com", "admin")
    bob = desk.person("bob@example.com", "admin")
    desk.person("olga@example.com", "owner")  # (the last owner is never demoted)
    grant = desk.grant_signed_in(desk.sign_in("ada@example.com"))
    for uid, patch in ((ada, {"password": "password-2"}), (bob, {"role": "viewer"}),
                       (ada, {"role": "owner"}), (ada, {"role": "admin"})):  # fmt: skip
        changed = desk.h.admin("PATCH", f"/v1/users/{uid}", json=patch)
        assert changed.status_code == 200, changed.text
        assert "grants_revoked" not in desk.latest("user.updated")["data"]
        assert desk.covered() == ("allowed", "approved"), patch
    cleo = desk.person("cleo@example.com", "owner")
    ops = desk.beside("Ops")
    made_as_owner = ops.grant_signed_in(desk.sign_in("cleo@example.com"))
    assert desk.h.admin("GET", f"/v1/grants/{made_as_owner}").json()["approver_role"] == "owner"
    assert desk.h.admin("PATCH", f"/v1/users/{cleo}", json={"role": "admin"}).status_code == 200
    assert desk.latest("user.updated")["data"]["grants_revoked"] == [made_as_owner]
    assert (desk.status(grant), desk.status(made_as_owner)) == ("active", "revoked")
    assert (desk.covered(), ops.covered()) == (
        ("allowed", "approved"), ("pending_approval", "pending"))  # fmt: skip


def test_a_slack_grant_ends_with_its_makers_role_and_with_the_link(
    harness_factory: Any, fakes: FakeUpstreams
) -> None:
    h: Harness = harness_factory(slack_api_url=fakes["slack"].http_url + "/api")
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    desk = Desk(h)
    _configure(h, {"U0ADA": "ada@example.com"})  # (made a member)
    users = {u["email"]: u["id"] for u in h.admin("GET", "/v1/users").json()["users"]}
    ada = users["ada@example.com"]
    assert h.admin("PATCH", f"/v1/users/{ada}", json={"role": "admin"}).status_code == 200

    def click(apv: str) -> None:
        _ok(_callback(h, apv, "approve_1h", member="U0ADA"))

    first = desk.grant(click)
    assert desk.covered() == ("allowed", "approved")
    assert h.admin("PATCH", f"/v1/users/{ada}", json={"role": "member"}).status_code == 200
    assert desk.latest("user.updated")["data"]["grants_revoked"] == [first]
    assert desk.covered() == ("pending_approval", "pending")

    assert h.admin("PATCH", f"/v1/users/{ada}", json={"role": "admin"}).status_code == 200
    second = desk.grant(click)
    assert desk.covered() == ("allowed", "approved")
    unlinked = h.admin("PATCH", "/v1/settings", json={"slack_approvers": {}})
    assert unlinked.status_code == 200, unlinked.text
    assert desk.covered() == ("pending_approval", "pending")  # her Slack link is gone
    assert desk.status(second) == "revoked"
    (revoked,) = desk.revocations(second)
    assert revoked["data"]["reason"] == "its maker's Slack link was removed"


def _ok(answer: Any) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json().get("ok", True) is True, answer.text


def test_a_grant_made_with_an_api_token_ends_with_the_token(desk: Desk) -> None:
    h = desk.h
    ada = desk.person("ada@example.com", "owner")
    csrf = desk.sign_in("ada@example.com")
    minted = [h.call("POST", "/v1/tokens", json={"name": f"ci {n}"},
                     headers={"X-CSRF-Token": csrf}).json() for n in (1, 2)]  # fmt: skip
    h.client.cookies.clear()

    def with_token(on: Desk, token: str) -> str:
        return on.grant(lambda apv: _ok(h.call(
            "POST", f"/v1/approvals/{apv}/approve", token,
            json={"grant": {"for_seconds": MONTH}})))  # fmt: skip

    ops = desk.beside("Ops")
    first, second = with_token(desk, minted[0]["token"]), with_token(ops, minted[1]["token"])
    assert (desk.covered(), ops.covered()) == (("allowed", "approved"), ("allowed", "approved"))
    assert h.admin("DELETE", f"/v1/tokens/{minted[0]['prefix']}").status_code == 204
    assert desk.latest("token.revoked")["data"]["grants_revoked"] == [first]
    assert (desk.status(first), desk.status(second)) == ("revoked", "active")
    assert (desk.covered(), ops.covered()) == (
        ("pending_approval", "pending"), ("allowed", "approved"))  # fmt: skip
    changed = h.admin("PATCH", f"/v1/users/{ada}", json={"password": "password-2"})
    assert changed.status_code == 200  # her tokens end with a password reset: their grants too
    assert changed.json()["role"] == "owner"
    assert desk.latest("user.updated")["data"]["grants_revoked"] == [second]
    assert ops.covered() == ("pending_approval", "pending")


def test_a_grant_whose_maker_cannot_be_told_lets_nothing_through(desk: Desk) -> None:
    """Fail closed: a grant naming no maker (as an earlier version's grant whose maker the
    upgrade could not find) covers nothing, and is revoked when first consulted."""
    desk.person("ada@example.com", "admin")
    grant = desk.grant_signed_in(desk.sign_in("ada@example.com"))
    stored = desk.h.state.db.read_sync(
        lambda c: c.execute(select(grants.c.maker_user_id).where(grants.c.id == grant)).scalar()
    )
    assert stored is not None
    desk.h.state.db.write_sync(
        lambda c: c.execute(
            grants.update().where(grants.c.id == grant).values(maker_user_id=None, made_via=None)
        )
    )
    assert desk.covered() == ("pending_approval", "pending")
    assert desk.status(grant) == "revoked"
    (revoked,) = desk.revocations(grant)
    assert revoked["data"]["reason"] == "its maker is unknown"
