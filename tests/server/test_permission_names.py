"""An access rule names an agent and a connector a rule can apply to, or `*`.

`POST /api/v1/permissions` (and `/preset`) stored rules for names no agent or connector
can have: a blank at either end, an invisible or bidirectional character, a `*` inside a
name (`Bot*`: the wildcard is `*` alone). Such a rule never applies, so a `deny` written
so denies nothing. Now each is 422 naming the field; `*`, any other name (names are
case-sensitive and free-form: `GitHub`, a provider of SDK actions) and an agent an earlier
version stored under such a name keep working.
"""

from __future__ import annotations

from sqlalchemy import update

from agentfirewall_server.store.schema import agents
from tests.server.conftest import Harness

NEVER = [" Bot", "Bot ", "B\u200bot", "Bot\u202e", "Bo\u00adt", "Bot*", "*Bot", "git*hub"]


def _rule(agent: str, connector: str) -> dict[str, str]:
    return {"agent": agent, "connector": connector, "action_pattern": "*", "decision": "deny"}


def test_a_name_no_rule_can_apply_to_is_422_naming_its_field(harness: Harness) -> None:
    h = harness
    for name in NEVER:
        for field, agent, connector in (("agent", name, "github"), ("connector", "*", name)):
            preset = {"agent": agent, "connector": connector, "preset": "read-only"}
            for path, body in (
                ("/v1/permissions", _rule(agent, connector)),
                ("/v1/permissions/preset", preset),
            ):
                answer = h.admin("POST", path, json=body)
                assert answer.status_code == 422, (name, path, answer.text)
                assert answer.json()["field"] == field, answer.text
    assert h.admin("GET", "/v1/permissions").json()["permissions"] == []


def test_wildcards_and_free_form_names_are_kept(harness: Harness) -> None:
    h = harness
    for agent, connector in (("*", "*"), ("Bot", "GitHub"), ("Finance Bot", "acme mail")):
        answer = h.admin("POST", "/v1/permissions", json=_rule(agent, connector))
        assert answer.status_code == 200, answer.text
    preset = {"agent": "Bot", "connector": "*", "preset": "read-only"}
    assert h.admin("POST", "/v1/permissions/preset", json=preset).status_code == 200


def test_an_agent_an_earlier_version_named_so_keeps_its_rules(harness: Harness) -> None:
    h = harness
    key = h.create_agent("old")
    h.state.db.write_sync(
        lambda c: c.execute(update(agents).where(agents.c.name == "old").values(name="Bot* "))
    )
    h.client.portal.call(h.state.reload)  # type: ignore[union-attr]
    answer = h.admin("POST", "/v1/permissions", json=_rule("Bot* ", "github"))
    assert answer.status_code == 200, answer.text
    spec = {"type": "github.pr.merge", "resource": {"provider": "github"}}
    decided = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec}).json()
    assert decided["status"] == "denied"
