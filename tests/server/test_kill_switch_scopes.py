"""A kill switch's scope reads one way only at the API (SQLite and PostgreSQL).

The server read a bare scope as `all`, else a connector type, else an agent: stopping the
agent `github` by its name stopped every GitHub call, and lifting it lifted the connector's
switch; an agent named `all` could not be named at all. Now no new agent may be named `all`
or start with `agent:` / `connector:` (in any case), and a bare name that is both an
agent's and a connector type's is refused, activating and deactivating alike: write
`agent:NAME` or `connector:TYPE`. An agent stored under such a name before keeps working,
addressed with `agent:`.

A scope that names nothing no longer stores a switch that stops no one: `ALL`,
`Connector:github` (a name no agent can bear) and an agent's id were stored as agent
switches on those names, answered 200 and audited while every agent ran on. Now such a name
is 422 with the scope it meant, an id stands for its agent, and a bare name that names
neither an agent nor a connector type (a typo) is 422: an agent not registered yet is
stopped on purpose, as `agent:NAME`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from agentfirewall_server.store.schema import agents
from tests.server.conftest import SPEC, Harness

KILLED = "kill_switch_active"


def _kill(h: Harness, active: bool, scope: str) -> Any:
    return h.admin("POST", "/v1/kill-switch", json={"active": active, "scope": scope})


def _switches(h: Harness) -> list[tuple[str, str | None]]:
    return [(s["scope"], s["target"]) for s in h.admin("GET", "/v1/kill-switch").json()["active"]]


def _reason(h: Harness, key: str) -> str:
    """Why the agent's next action is decided as it is (`KILLED` while a switch covers it)."""
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    assert answer.status_code == 200, answer.text
    reason: str = answer.json()["decision"]["reason"]
    return reason


def _refused(answer: Any, field: str, *words: str) -> None:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == field, body
    assert all(w in body["message"] for w in words), body


def test_an_agent_name_a_kill_switch_scope_reads_otherwise_is_422(harness: Harness) -> None:
    h = harness
    for name in ("all", "ALL", "agent:x", "Agent:Bot", "connector:github", "CONNECTOR:x"):
        for path in ("/v1/agents", "/v1/agents/ensure"):
            _refused(h.admin("POST", path, json={"name": name}), "name", f"`{name}`", "scope")
    assert h.admin("GET", "/v1/agents").json()["agents"] == []
    for name in ("all hands", "Bot agent:1", "github"):  # only the whole word or a prefix
        h.create_agent(name)

    # stored before the rule (renamed here in the database): addressed with `agent:`
    keys = {name: h.create_agent(f"old {name}") for name in ("all", "agent:x")}
    h.state.db.write_sync(lambda c: [
        c.execute(update(agents).where(agents.c.name == f"old {n}").values(name=n)) for n in keys
    ])  # fmt: skip
    h.client.portal.call(h.state.reload)  # type: ignore[union-attr]
    bystander = h.create_agent("Bot")
    for name, key in keys.items():
        ensured = h.admin("POST", "/v1/agents/ensure", json={"name": name})
        assert ensured.status_code == 200, ensured.text  # `tf run --name` still runs it
        assert _kill(h, True, f"agent:{name}").status_code == 200
        assert _switches(h) == [("agent", name)]
        assert (_reason(h, key), _reason(h, bystander) != KILLED) == (KILLED, True)
        assert _kill(h, False, f"agent:{name}").status_code == 200
        assert _reason(h, key) != KILLED
    assert _kill(h, True, "all").status_code == 200  # `all` is still every agent
    assert _switches(h) == [("all", None)]


def test_a_bare_scope_naming_an_agent_and_a_connector_type_is_refused(harness: Harness) -> None:
    h = harness
    assert _kill(h, True, "github").status_code == 200  # no agent bears it: the connector
    assert _switches(h) == [("connector", "github")]
    key = h.create_agent("github")
    for active in (True, False):  # stopping the agent, or lifting it, names the kind
        _refused(_kill(h, active, "github"), "scope", "`agent:github` or `connector:github`")
    assert _switches(h) == [("connector", "github")]  # neither added to nor lifted

    assert _kill(h, True, "agent:github").status_code == 200
    assert _kill(h, False, "connector:github").status_code == 200
    assert _switches(h) == [("agent", "github")]
    other = h.create_agent("Bot")
    assert (_reason(h, key), _reason(h, other) != KILLED) == (KILLED, True)
    assert _kill(h, True, "Bot").status_code == 200  # a bare agent name: that agent
    assert _switches(h) == [("agent", "github"), ("agent", "Bot")]


def test_a_scope_no_agent_can_bear_is_422_with_the_scope_it_meant(harness: Harness) -> None:
    h = harness
    key = h.create_agent("Bot")
    meant = {
        "ALL": "write `all` to stop every agent",
        "All": "write `all` to stop every agent",
        "agent:ALL": "write `all` to stop every agent",
        "Connector:github": "write `connector:github`",
        "CONNECTOR:stripe": "write `connector:stripe`",
        "Agent:Bot": "write `agent:Bot`",
        "agent:AGENT:Bot": "write `agent:Bot`",
        "agent:*": "`*` is the wildcard",
        "Bot*": "`*` is the wildcard",
        "agt_0000000000000000000000000": "no agent has the id `agt_0000000000000000000000000`",
    }
    for active in (True, False):  # activating and lifting alike
        for scope, hint in meant.items():
            _refused(_kill(h, active, scope), "scope", f"`{scope}`", hint)
    assert _switches(h) == []
    assert _reason(h, key) != KILLED


def test_an_agents_id_stops_that_agent(harness: Harness) -> None:
    h = harness
    key, bystander = h.create_agent("Bot"), h.create_agent("Other")
    ident = h.admin("GET", "/v1/agents/Bot").json()["id"]
    for scope in (ident, f"agent:{ident}"):
        assert _kill(h, True, scope).status_code == 200
        assert _switches(h) == [("agent", "Bot")]  # stored by name, as the core reads it
        assert (_reason(h, key), _reason(h, bystander) != KILLED) == (KILLED, True)
        assert _kill(h, False, scope).status_code == 200
        assert _switches(h) == []


def test_a_bare_name_that_names_nothing_is_422_and_agent_name_stops_one_to_come(
    harness: Harness,
) -> None:
    """The CLI refuses a typo (`--force`: `agent:NAME`); the API stored it and stopped no
    one. A switch for an agent not registered yet is written `agent:NAME`."""
    h = harness
    key = h.create_agent("Finance Bot")
    for active in (True, False):
        _refused(_kill(h, active, "Finanse Bot"), "scope", "no agent or connector type",
                 "write `agent:Finanse Bot`")  # fmt: skip
    assert _switches(h) == []
    assert _reason(h, key) != KILLED

    assert _kill(h, True, "agent:Future Bot").status_code == 200
    assert _kill(h, True, "Future Bot").status_code == 422  # a bare name: still no agent
    future = h.create_agent("Future Bot")
    assert _reason(h, future) == KILLED
    assert _kill(h, False, "Future Bot").status_code == 200  # now the agent's name
    assert _kill(h, True, "agent:Later Bot").status_code == 200
    assert _kill(h, False, "Later Bot").status_code == 200  # its switch names it
    assert _switches(h) == []
