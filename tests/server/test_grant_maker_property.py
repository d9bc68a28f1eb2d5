"""Whatever happens to its maker, a grant covers a request exactly while it stands for them
(SQLite and PostgreSQL): a model of the maker, checked against the server after each step.

A grant is made signed in (as a member, admin or owner) or with the maker's API token (an
owner's: only owners mint tokens); then any sequence of role changes, password resets,
token revocations and a removal. It stands while the maker is a user, holds at least the
role it was made with, and, for a token's grant, the token is live (a role change or a
password reset ends the user's tokens). After each step the next request passes exactly
when it stands, and the grant is revoked exactly when it does not: by the change itself.

Each example makes users, tokens and grants through the app: CI tries a few
(`tests/slices.py`), nox -s deep the count written beside it times its scale.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_server.roles import ROLES
from tests.server.conftest import Harness
from tests.server.test_grant_maker_authority import MONTH, Desk
from tests.slices import expensive_examples

POLICY = """
name: transfers-any-member
rules:
  - name: transfers-need-a-person
    conditions: {field: action_spec.type, operator: equals, value: stripe.transfer.create}
    decision: requires_approval
    approval: {timeout_seconds: 3600, approver_roles: [member]}
"""
_ROLE = st.sampled_from(["viewer", "member", "admin", "owner"])
_STEP = st.one_of(
    st.tuples(st.just("role"), _ROLE),
    st.tuples(st.just("password"), st.just("")),
    st.tuples(st.just("revoke token"), st.just("")),
    st.tuples(st.just("remove"), st.just("")),
)
_COUNT = itertools.count()


@dataclass
class Maker:
    """The model: what the server should know of the grant's maker."""

    role: str
    made_as: str
    with_token: bool
    token_live: bool = True
    removed: bool = False
    ended: bool = False  # once ended, a grant stays revoked (a promotion back revives none)

    def stands(self) -> bool:
        live = self.token_live or not self.with_token
        holds = ROLES[self.role] >= ROLES[self.made_as]
        return not self.ended and not self.removed and holds and live


def _made(desk: Desk, role: str, with_token: bool) -> tuple[str, str, str | None]:
    """A user of `role` and a grant they made: (user id, grant id, token prefix)."""
    h, n = desk.h, next(_COUNT)
    email = f"maker-{n}@example.com"
    uid = desk.person(email, role)
    csrf = desk.sign_in(email)
    if not with_token:
        return uid, desk.grant_signed_in(csrf), None
    minted = h.call("POST", "/v1/tokens", json={"name": f"maker {n}"},
                    headers={"X-CSRF-Token": csrf}).json()  # fmt: skip
    h.client.cookies.clear()
    body = {"grant": {"for_seconds": MONTH}}
    grant = desk.grant(
        lambda apv: h.call("POST", f"/v1/approvals/{apv}/approve", minted["token"], json=body)
    )
    return uid, grant, str(minted["prefix"])


def _apply(h: Harness, maker: Maker, step: tuple[str, str], uid: str, prefix: str | None) -> None:
    """Do `step` on the server and in the model."""
    kind, role = step
    if kind == "role":
        assert h.admin("PATCH", f"/v1/users/{uid}", json={"role": role}).status_code == 200
        maker.role, maker.token_live = role, False
    elif kind == "password":
        changed = h.admin("PATCH", f"/v1/users/{uid}", json={"password": "password-2"})
        assert changed.status_code == 200
        maker.token_live = False
    elif kind == "revoke token" and prefix is not None and maker.token_live:
        assert h.admin("DELETE", f"/v1/tokens/{prefix}").status_code == 204
        maker.token_live = False
    elif kind == "remove":
        assert h.admin("DELETE", f"/v1/users/{uid}").status_code == 204
        maker.removed = True


@settings(
    max_examples=expensive_examples(12, ci=5),  # each: users, tokens, requests
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    made_as=st.sampled_from(["member", "admin", "owner"]),
    with_token=st.booleans(),
    steps=st.lists(_STEP, min_size=1, max_size=5),
)
def test_a_grant_covers_exactly_while_its_maker_holds_it(
    harness: Harness, made_as: str, with_token: bool, steps: list[tuple[str, str]]
) -> None:
    h = harness
    if not h.admin("GET", "/v1/policies").json().get("policies"):
        assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
        olga = {"email": "olga@example.com", "password": "password-1", "role": "owner"}
        assert (
            h.admin("POST", "/v1/users", json=olga).status_code == 201
        )  # (the maker is never the last owner)
    desk = Desk(h, f"Bot-{next(_COUNT)}")
    made_as = "owner" if with_token else made_as  # (only owners mint tokens)
    uid, grant, prefix = _made(desk, made_as, with_token)
    maker = Maker(made_as, made_as, with_token)
    assert desk.sdk(7)["status"] == "allowed"
    for step in steps:
        if maker.removed:
            break
        _apply(h, maker, step, uid, prefix)
        maker.ended = not maker.stands()
        expected = "allowed" if maker.stands() else "pending_approval"
        fared: dict[str, Any] = desk.sdk(7)
        assert fared["status"] == expected, (step, maker)
        assert desk.status(grant) == ("active" if maker.stands() else "revoked"), (step, maker)
