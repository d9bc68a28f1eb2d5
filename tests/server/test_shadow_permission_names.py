"""Shadow and candidate permissions name an agent and a connector a rule can apply to.

`POST /api/v1/permissions` refuses names no rule can apply to (a blank at either end, an
invisible or control character, a `*` inside a name), but `PUT /api/v1/shadow/permissions`
and the candidate permissions of `POST /api/v1/policies/replay` took them: a shadow rule
becomes live when promoted, a `deny` for `Bot*` that denies nothing. Both now run the same
check (`check_names`), 422 naming the field of the rule (`permissions.1.agent`); `*`, free
names and an agent an earlier version stored under such a name keep working.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from agentfirewall_server.store.schema import agents
from tests.server.conftest import Harness
from tests.server.test_permission_names import NEVER

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no store here


def _rule(agent: str, connector: str) -> dict[str, str]:
    return {"agent": agent, "connector": connector, "action_pattern": "*", "decision": "deny"}


def _refusals(h: Harness, rules: list[dict[str, str]]) -> list[tuple[int, str | None]]:
    """The answers of the shadow set and of a replay with `rules`: (status, field)."""
    shadow = h.admin("PUT", "/v1/shadow/permissions", json={"permissions": rules})
    replay = h.admin("POST", "/v1/policies/replay", json={"permissions": rules})
    return [(a.status_code, a.json().get("field")) for a in (shadow, replay)]


@sqlite_only
def test_names_no_rule_can_apply_to_are_422_and_the_others_kept(harness: Harness) -> None:
    h = harness
    for name in NEVER:
        for field, bad in (("agent", _rule(name, "github")), ("connector", _rule("*", name))):
            expected = (422, f"permissions.1.{field}")
            assert _refusals(h, [_rule("Bot", "github"), bad]) == [expected] * 2, name
    assert h.admin("GET", "/v1/shadow").json()["permissions"] == []
    assert h.admin("POST", "/v1/shadow/promote").status_code == 409  # nothing to make live
    # `*`, free-form names and an agent an earlier version stored as `Bot* ` are kept
    h.create_agent("old")
    h.state.db.write_sync(
        lambda c: c.execute(update(agents).where(agents.c.name == "old").values(name="Bot* "))
    )
    h.client.portal.call(h.state.reload)  # type: ignore[union-attr]
    rules = [_rule(a, c) for a, c in (("*", "*"), ("Finance Bot", "acme mail"), ("Bot* ", "*"))]
    assert _refusals(h, rules) == [(200, None)] * 2
    shown = h.admin("GET", "/v1/shadow").json()["permissions"]
    assert sorted(p["agent"] for p in shown) == ["*", "Bot* ", "Finance Bot"]
