"""No request passes under a grant after its maker's demotion commits (SQLite and
PostgreSQL, one server and two replicas).

The grant is checked against its maker's current role in the transaction that would use
it, and the demotion revokes it in its own: a use that races the demotion either commits
before it (its `grant.used` event comes before the `user.updated` one in the audit chain)
or is held. Two ways in: a demotion the routes never saw (written to the store as an
earlier version or another path would, nothing revoked: the interleaving where a grant is
made with a role read just before the demotion commits, forced), and real concurrent
requests.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import update

from agentfirewall_server.store.schema import users
from tests.scale.conftest import Pair, module_database, pair, wait_for
from tests.server.test_grant_maker_authority import POLICY, Desk, desk, transfer

__all__ = ["desk", "module_database", "pair"]  # (fixtures, used here)

HELD = ("pending_approval", "pending")
PASSED = ("allowed", "approved")


def test_a_demotion_the_routes_never_saw_still_ends_the_grant(desk: Desk) -> None:
    uid = desk.person("ada@example.com", "admin")
    grant = desk.grant_signed_in(desk.sign_in("ada@example.com"))
    assert desk.covered() == PASSED
    desk.h.state.db.write_sync(
        lambda c: c.execute(update(users).where(users.c.id == uid).values(role="viewer"))
    )
    dry = desk.h.agent(desk.key, "POST", "/v1/actions/dry-run",
                       json={"action_spec": transfer(5)})  # fmt: skip
    assert dry.status_code == 200, dry.text
    assert dry.json()["status"] == "pending_approval"  # (and it writes nothing:)
    assert desk.status(grant) == "active"
    assert desk.covered() == HELD
    assert desk.status(grant) == "revoked"
    (revoked,) = desk.revocations(grant)
    assert revoked["actor"] == "server"  # (what it found in the transaction using it)
    assert revoked["data"]["reason"] == "its maker's role is now viewer"


def _race(uses: Desk, demote: Any, rounds: int = 12) -> list[tuple[bool, str]]:
    """Requests of `uses`'s agent (SDK and gateway, two threads each) while `demote()`
    runs; each request's (sent after `demote` returned, its status)."""
    seen: list[tuple[bool, str]] = []
    started = threading.Event()
    demoted = threading.Event()

    def hammer(path: str) -> None:
        for n in range(rounds):
            after = demoted.is_set()
            answer = uses.sdk(1000 + n) if path == "sdk" else uses.gateway(1000 + n)
            seen.append((after, str(answer["status"])))
            started.set()

    threads = [threading.Thread(target=hammer, args=(p,)) for p in ("sdk", "gateway") * 2]
    for thread in threads:
        thread.start()
    assert started.wait(30)
    demote()
    demoted.set()
    for thread in threads:
        thread.join(120)
    for n in range(4):  # and after every thread's requests: held, each way
        seen.append((True, uses.sdk(2000 + n)["status"]))
        seen.append((True, uses.gateway(2000 + n)["status"]))
    return seen


def _assert_none_passed_after(desk: Desk, grant: str, seen: list[tuple[bool, str]]) -> None:
    assert {status for after, status in seen if after} <= set(HELD), seen
    demotion = desk.latest("user.updated")
    assert demotion["data"]["grants_revoked"] == [grant]
    uses = [e["id"] for e in desk.events("grant.used") if e["subject"] == grant]
    assert uses, "the grant was never used: no race"
    assert max(uses) < demotion["id"]  # every use committed before the demotion


def test_a_grant_use_racing_a_demotion_never_passes_after_it_commits(desk: Desk) -> None:
    uid = desk.person("ada@example.com", "admin")
    grant = desk.grant_signed_in(desk.sign_in("ada@example.com"))

    def demote() -> None:
        answer = desk.h.admin("PATCH", f"/v1/users/{uid}", json={"role": "viewer"})
        assert answer.status_code == 200, answer.text

    seen = _race(desk, demote)
    _assert_none_passed_after(desk, grant, seen)


@pytest.mark.postgres
def test_a_demotion_on_one_replica_ends_the_grant_on_the_other_at_once(pair: Pair) -> None:
    """Replica B reads the grant and its maker's role from the store in the transaction
    that would use it: the first request after A's demotion answered is held on B, without
    waiting for B to hear of the change."""
    a, b = pair.a, pair.b
    assert a.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    on_a = Desk(a, "Replicated-Bot")
    wait_for(lambda: b.state.snapshot.version == a.state.snapshot.version, what="B has A's config")
    on_b = on_a.on(b)
    uid = on_a.person("ada-replicas@example.com", "admin")
    grant = on_a.grant_signed_in(on_a.sign_in("ada-replicas@example.com"))
    assert on_b.covered() == PASSED

    def demote() -> None:
        answer = a.admin("PATCH", f"/v1/users/{uid}", json={"role": "viewer"})
        assert answer.status_code == 200, answer.text

    seen = _race(on_b, demote)
    _assert_none_passed_after(on_a, grant, seen)
