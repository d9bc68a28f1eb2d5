# ruff: noqa: RUF001, RUF002, RUF003  (look-alike characters are what this file is about)
"""One live agent per name as it shows, held by the database (SQLite and PostgreSQL).

A new name was checked against the live agents' names in the write's own transaction, and
that read alone kept `Bоt` (a Cyrillic `о`) from being registered beside `Bot`: a request
or replica whose check ran before another's insert was committed could register a twin.
Agents now carry their name's key (`agentnames.name_key`) under a unique index over the
live ones: the insert that loses is refused by the store, and answered the route's 409.
Migration 0016 gives existing agents their keys, and 0017 gives them again under the rule
that maps a letter in both its cases; a live twin an earlier version stored keeps working.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall_server.agentnames import name_key
from agentfirewall_server.routes import agents as agent_routes
from agentfirewall_server.store.schema import agents
from tests.scale.conftest import replica_keys
from tests.server.conftest import Harness
from tests.server.migrating import stored_at

#: `Bot` as typed, with a Cyrillic `о`, with a Greek beta and omicron, in full width.
_TWINS = ["Bot", "Bоt", "Βοt", "Ｂｏｔ"]


def _register(h: Harness, name: str, *, ensure: bool = False) -> Any:
    path = "/v1/agents/ensure" if ensure else "/v1/agents"
    return h.admin("POST", path, json={"name": name})


def _unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The route's read of the live names sees no twin, as when another request's or
    replica's insert is committed after it: what holds then is the store alone."""
    monkeypatch.setattr(agent_routes, "_check_name", lambda conn, name: None)


def _live_keys(h: Harness) -> list[str]:
    live = select(agents.c.name_key).where(agents.c.status != "revoked")
    keys: list[str] = h.state.db.read_sync(lambda c: c.execute(live).scalars().all())
    return keys


@pytest.mark.parametrize("ensure", [False, True], ids=["create", "ensure"])
def test_a_twin_the_check_did_not_see_is_refused_by_the_store(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, ensure: bool
) -> None:
    h = harness
    h.create_agent("Bot")
    _unchecked(monkeypatch)
    answer = _register(h, "Bоt", ensure=ensure)
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["field"] == "name"
    assert "an agent named `Bot` already exists and `Bоt` reads the same" in body["message"]
    assert _live_keys(h) == [name_key("Bot")]
    assert _register(h, "bot", ensure=ensure).status_code == 201  # case twins stay apart


def test_concurrent_look_alikes_register_one_agent(
    harness_factory: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four look-alikes of `Bot` at once, by both routes, on two apps sharing one PostgreSQL
    database (one app on SQLite, which serves one server per file), with the route's check
    seeing none of the others: one is registered, the others are 409 naming it."""
    assert len({name_key(n) for n in _TWINS}) == 1
    keys = replica_keys()  # two replicas: the same keys
    first: Harness = harness_factory("a", **keys)
    second: Harness = first if database_url.startswith("sqlite") else harness_factory("b", **keys)
    _unchecked(monkeypatch)
    barrier = threading.Barrier(len(_TWINS))

    def one(index: int) -> Any:
        barrier.wait(30)
        return _register(second if index % 2 else first, _TWINS[index], ensure=index % 3 == 0)

    with ThreadPoolExecutor(len(_TWINS)) as pool:
        answers = list(pool.map(one, range(len(_TWINS))))
    made = [_TWINS[i] for i, a in enumerate(answers) if a.status_code == 201]
    assert len(made) == 1, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 409:
            assert f"an agent named `{made[0]}` already exists" in answer.json()["message"]
    assert _live_keys(first) == [name_key("Bot")]


def _agent(ident: str, name: str, status: str, created_at: float, **key: str | None) -> Any:
    """An agent's row as an earlier version stored it (`name_key=`: from 0016 on)."""
    return {"id": ident, "name": name, "status": status, "environment": "live",
            "description": "", "enforcement_level": "full_enforce", "sdk_default": "allow",
            "created_at": created_at, "updated_at": created_at, **key}  # fmt: skip


def _stored_keys(h: Harness) -> dict[str, str | None]:
    keyed = select(agents.c.id, agents.c.name_key)
    return dict(h.state.db.read_sync(lambda c: c.execute(keyed).all()))


def test_the_migration_keys_existing_agents_and_keeps_stored_twins(
    database_url: str, harness_factory: Any
) -> None:
    """Migration 0016 on a database at 0015: every agent gets its key but a live twin stored
    beside an older live agent of its key (it keeps working, with none); the route still
    refuses a new name that shows as either of them."""
    agent = _agent
    stored_at(database_url, "0015", {agents: [
        agent("agt_gone", "Bоt", "revoked", 50.0),
        agent("agt_bot", "Bot", "active", 100.0),
        agent("agt_wide", "Ｂｏｔ", "suspended", 200.0),  # stored by an earlier version
        agent("agt_ops", "Ops", "active", 100.0),
    ]})  # fmt: skip
    h = harness_factory()  # the app migrates to the newest revision on start
    bot, ops = name_key("Bot"), name_key("Ops")
    assert _stored_keys(h) == {"agt_gone": bot, "agt_bot": bot, "agt_wide": None, "agt_ops": ops}

    assert h.admin("POST", "/v1/agents/agt_wide/activate").status_code == 200  # still works
    assert "`Bot` already exists" in _register(h, "Βot").json()["message"]
    assert h.admin("POST", "/v1/agents/Bot/revoke").status_code == 200
    assert "`Ｂｏｔ` already exists" in _register(h, "Βot").json()["message"]
    assert h.admin("POST", "/v1/agents/agt_wide/revoke").status_code == 200
    assert _register(h, "Βot").status_code == 201


def test_migration_0017_keys_agents_again_and_keeps_stored_look_alikes(
    database_url: str, harness_factory: Any
) -> None:
    """Migration 0017 on a database at 0016, keyed by the earlier rule, which left a letter
    unmapped where its other case showed as the same prototype (the Cherokee v, U+AB75 and
    U+13A5, both `i`): `admꭵn-bot` was registered beside `admin-bot`. Every agent is keyed
    again: of live agents that now share a key the oldest keeps it and the others keep
    working with none (0016's rule); an agent 0016 left keyless, whose older look-alike has
    been revoked since, gets its key. The route refuses what shows as any of them."""

    def unmapped(name: str) -> str:  # its key by the earlier rule: it mapped none of its letters
        return hashlib.sha256(name.encode()).hexdigest()

    stored_at(database_url, "0016", {agents: [
        _agent("agt_admin", "admin-bot", "active", 100.0, name_key=name_key("admin-bot")),
        _agent("agt_v", "admꭵn-bot", "active", 200.0, name_key=unmapped("admꭵn-bot")),
        _agent("agt_fin_v", "fᎥnance-agent", "suspended", 100.0,
               name_key=unmapped("fᎥnance-agent")),
        _agent("agt_fin", "finance-agent", "active", 300.0, name_key=name_key("finance-agent")),
        _agent("agt_theta", "θeta", "active", 100.0, name_key=unmapped("θeta")),
        _agent("agt_Theta", "Θeta", "active", 150.0, name_key=unmapped("Θeta")),
        _agent("agt_gone", "Bot", "revoked", 50.0, name_key=name_key("Bot")),
        _agent("agt_wide", "Ｂｏｔ", "active", 60.0, name_key=None),  # beside `Bot`, then live
        _agent("agt_gone_v", "fꭵnance-agent", "revoked", 400.0, name_key=unmapped("fꭵnance-agent")),
    ]})  # fmt: skip
    h = harness_factory()  # the app migrates to the newest revision on start
    admin, finance, theta = name_key("admin-bot"), name_key("finance-agent"), name_key("θeta")
    assert theta == name_key("Θeta")  # both letters show as `O̵` (`_prototypes`)
    assert _stored_keys(h) == {
        "agt_admin": admin, "agt_v": None,
        "agt_fin_v": finance, "agt_fin": None,
        "agt_theta": theta, "agt_Theta": None,
        "agt_gone": name_key("Bot"), "agt_wide": name_key("Bot"),
        "agt_gone_v": finance,
    }  # fmt: skip

    assert h.admin("POST", "/v1/agents/agt_v/suspend").status_code == 200  # still works
    assert h.admin("POST", "/v1/agents/agt_fin/suspend").status_code == 200
    assert "`admin-bot` already exists" in _register(h, "admᎥn-bot").json()["message"]
    assert h.admin("POST", "/v1/agents/agt_admin/revoke").status_code == 200
    assert "`admꭵn-bot` already exists" in _register(h, "admᎥn-bot").json()["message"]
    assert _register(h, "Bоt").status_code == 409  # `Ｂｏｔ` is live, keyed now
    assert _live_keys(h).count(name_key("Bot")) == 1
