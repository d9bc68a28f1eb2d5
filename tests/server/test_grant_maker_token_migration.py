"""Migration 0022 on grants an earlier version stored (SQLite and PostgreSQL): each live
grant is bound to the one credential its ``created_by`` names, or to none.

The whole upgrade runs (0020 names the maker's user, 0022 the credential). A token's grant is
bound to the one token row of that name (live or revoked, any user's); a Slack grant to the
one member linked to that email. Where several could have made it, which one cannot be told:
it covers nothing from then on and is revoked (audited) when first consulted, as one whose
token or link is gone.
"""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import inspect, select

from agentfirewall_server.bootstrap import write_secret_file
from agentfirewall_server.grants import UNREGISTERED_BOOTSTRAP
from agentfirewall_server.identity import hash_password
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import alembic_config, upgrade
from agentfirewall_server.store.schema import grants, settings_table, tokens, users
from tests.server.conftest import Harness
from tests.server.migrating import stored_at
from tests.server.test_grant_maker_authority import POLICY, Desk
from tests.server.test_grant_maker_migration import _grant

HELD = ("pending_approval", "pending")
PASSED = ("allowed", "approved")
_USERS = {"usr_ada": "ada@example.com", "usr_bob": "bob@example.com",
          "usr_olga": "olga@example.com"}  # fmt: skip
#: prefix -> (user, name, kind) of the tokens 0.1 stored; each one's hash is its prefix's
_TOKENS = {
    "tfa_ci00": ("usr_ada", "ci", "admin"),
    "tfa_api1": ("usr_ada", "api token", "admin"),
    "tfa_api2": ("usr_ada", "api token", "admin"),  # her second token of the default name
    "tfa_old0": ("usr_ada", "old", "revoked"),
    "tfa_boot": (None, "bootstrap admin token", "admin"),  # (not the harness's: rotated)
}
_LINKS = {"U0BOB": "bob@example.com", "U0OLGA": "olga@example.com",
          "U0OLGA2": "olga@example.com"}  # fmt: skip
#: agent -> created_by of its grant (made as an owner), as 0.1 stored it
_GRANTS = {
    "Token": "token:ci",
    "Shared-Name": "token:api token",
    "Revoked-Token": "token:old",
    "Bootstrap": "admin-token",
    "Slack": "slack:bob@example.com",
    "Two-Members": "slack:olga@example.com",
    "Unlinked": "slack:ada@example.com",
}


def _hash(prefix: str) -> str:
    return prefix.encode().hex().ljust(64, "0")


#: agent -> the credential 0022 binds its grant to (made_via, token row, Slack member)
_BOUND: dict[str, tuple[str | None, str | None, str | None]] = {
    "Token": ("token", _hash("tfa_ci00"), None),
    "Shared-Name": (None, None, None),
    "Revoked-Token": ("token", _hash("tfa_old0"), None),
    "Bootstrap": ("token", _hash("tfa_boot"), None),
    "Slack": ("slack", None, "U0BOB"),
    "Two-Members": (None, None, None),
    "Unlinked": ("slack", None, None),
}
#: agent -> how its next request fares after the upgrade, and why its grant was revoked
_AFTER: dict[str, tuple[tuple[str, str], str | None]] = {
    "Token": (PASSED, None),
    "Shared-Name": (HELD, "its maker is unknown"),
    "Revoked-Token": (HELD, "the token that made it was revoked"),
    "Bootstrap": (PASSED, None),
    "Slack": (PASSED, None),
    "Two-Members": (HELD, "its maker is unknown"),
    "Unlinked": (HELD, "its maker's Slack link was removed"),
}


def _store_at_0019(url: str, grant_by: dict[str, str], with_tokens: bool = True) -> None:
    password = hash_password("password-1")
    rows = {
        users: [{"id": uid, "email": email, "password_hash": password, "role": "owner",
                 "created_at": 50.0} for uid, email in _USERS.items()],
        tokens: [{"token_hash": _hash(prefix), "prefix": prefix, "kind": kind, "user_id": uid,
                  "role": "owner" if kind == "admin" else None, "name": name,
                  "created_at": 60.0} for prefix, (uid, name, kind) in _TOKENS.items()],
        settings_table: [{"key": "slack_approvers", "value": json.dumps(_LINKS)}],
        grants: [_grant(agent, by, "owner") for agent, by in grant_by.items()],
    }  # fmt: skip
    if not with_tokens:
        del rows[tokens]
    stored_at(url, "0019", rows)


def _bound(h: Harness) -> dict[str, tuple[str | None, str | None, str | None]]:
    columns = (grants.c.agent, grants.c.made_via, grants.c.maker_token_id,
               grants.c.maker_slack_member)  # fmt: skip
    return h.state.db.read_sync(lambda c: {r[0]: tuple(r[1:]) for r in c.execute(select(*columns))})


def test_each_stored_grant_is_bound_to_the_one_credential_that_made_it(
    database_url: str, harness_factory: Any
) -> None:
    _store_at_0019(database_url, _GRANTS)
    h: Harness = harness_factory()  # the app migrates to the newest revision on start
    assert _bound(h) == _BOUND
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    desks = {agent: Desk(h, agent) for agent in _GRANTS}
    assert {agent: desk.covered() for agent, desk in desks.items()} == {
        agent: fared for agent, (fared, _) in _AFTER.items()}  # fmt: skip
    revoked = {e["subject"]: e["data"]["reason"] for e in desks["Token"].events("grant.revoked")}
    assert revoked == {f"grt_{a.lower()}": why for a, (_, why) in _AFTER.items() if why}
    # the bootstrap grant stands for its own row, beside the one the server registered
    gone = h.admin("DELETE", "/v1/tokens/tfa_boot")
    assert gone.status_code == 204, gone.text
    assert desks["Token"].latest("token.revoked")["data"]["grants_revoked"] == ["grt_bootstrap"]
    assert (desks["Bootstrap"].covered(), desks["Token"].covered()) == (HELD, PASSED)


def test_a_bootstrap_grant_in_a_database_with_no_bootstrap_token_yet(
    database_url: str, harness_factory: Any
) -> None:
    """A database no bootstrap admin token was registered in yet: its grants stand for the
    one the server registers next, while it is the only one; a second one (a rotation)
    makes which made them unknowable, and they end."""
    _store_at_0019(database_url, {"Bootstrap": "admin-token"}, with_tokens=False)
    h: Harness = harness_factory("rotating")
    assert _bound(h) == {"Bootstrap": ("token", UNREGISTERED_BOOTSTRAP, None)}
    assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    desk = Desk(h, "Bootstrap")
    assert desk.covered() == PASSED
    h.client.__exit__(None, None, None)
    write_secret_file(h.data_dir / "admin.token", b"tfa_" + b"r0tated" * 6)
    again: Harness = harness_factory("rotating")
    on_again = desk.on(again)
    assert on_again.covered() == HELD
    (revoked,) = on_again.revocations("grt_bootstrap")
    assert revoked["data"]["reason"] == "the token that made it was revoked"


def test_a_downgrade_drops_the_credentials(database_url: str) -> None:
    _store_at_0019(database_url, _GRANTS)
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn)
            command.downgrade(alembic_config(conn), "0021")
            conn.commit()
            columns = {c["name"] for c in inspect(conn).get_columns("grants")}
    finally:
        db.close()
    assert {"maker_user_id", "made_via"} <= columns
    assert {"maker_token_id", "maker_slack_member"}.isdisjoint(columns)
