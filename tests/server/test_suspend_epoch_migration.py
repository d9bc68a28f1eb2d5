"""Migration 0021 on stores an earlier version wrote, and back (SQLite and PostgreSQL).

Each agent ever closed (`closed_before` set, 0019) is given epoch 1, the others 0; each
action epoch 1 when it was created after its agent's `closed_before`, else 0: exactly what
0019 refused stays refused (at or before the moment, the same instant included), and what
it let run runs. Downgrading denies the allowed, unexecuted actions the epoch closed, also
those 0019's clock comparison would let run (decided by a replica whose clock was ahead).
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, select
from starlette.testclient import TestClient

import agentfirewall_server.routes.actions as actions_route
from agentfirewall_server.app import create_app
from agentfirewall_server.clock import now as real_now
from agentfirewall_server.identity import hash_secret, new_agent_key, prefix_of
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import alembic_config, upgrade
from agentfirewall_server.store.schema import action_requests, agents, api_keys
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness, make_settings
from tests.server.migrating import stored_at
from tests.server.test_execute import _execute, _github
from tests.server.test_suspend_closes_allowed import _allowed, _assert_closed, _cycle, _merge
from tests.server.test_suspend_stored_before import _agent, _signed
from tests.server.test_suspend_stored_before import _allowed as _allowed_at

#: agent id -> (name, `closed_before` as 0019 left it)
_AGENTS = {"agt_bot": ("Bot", 300.0), "agt_ops": ("Ops", None)}
#: action id -> (agent id, created_at, the epoch it is given)
_ACTIONS = {
    "act_before": ("agt_bot", 250.0, 0),
    "act_at": ("agt_bot", 300.0, 0),  # the same instant counted as before (0019)
    "act_after": ("agt_bot", 400.0, 1),
    "act_ops": ("agt_ops", 150.0, 0),
}


def _store_at_0020(url: str) -> dict[str, str]:
    """0019/0020's store: agents, one closed at 300, their keys and allowed actions."""
    keys = {agent_id: new_agent_key("live") for agent_id in _AGENTS}
    names = {agent_id: name for agent_id, (name, _) in _AGENTS.items()}
    stored_at(url, "0020", {
        agents: [{**_agent(agent_id, name), "closed_before": closed}
                 for agent_id, (name, closed) in _AGENTS.items()],
        api_keys: [{"agent_id": agent_id, "key_hash": hash_secret(key), "prefix": prefix_of(key),
                    "kind": "sdk", "created_at": 100.0} for agent_id, key in keys.items()],
        action_requests: [_allowed_at(action_id, agent_id, names[agent_id], at, number)
                          for number, (action_id, (agent_id, at, _)) in
                          enumerate(_ACTIONS.items(), start=1)],
    })  # fmt: skip
    return keys


def _stored_epochs(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    agent_rows = conn.execute(select(agents.c.id, agents.c.closed_epoch))
    action_rows = conn.execute(select(action_requests.c.id, action_requests.c.agent_epoch))
    return {r.id: r.closed_epoch for r in agent_rows}, {r.id: r.agent_epoch for r in action_rows}


def test_what_0019_closed_stays_closed_and_what_it_let_run_runs(
    database_url: str, harness_factory: Any, fakes: FakeUpstreams
) -> None:
    keys = _store_at_0020(database_url)
    h = harness_factory()  # the app migrates to the newest revision on start
    assert h.state.db.read_sync(_stored_epochs) == (
        {"agt_bot": 1, "agt_ops": 0},
        {action_id: epoch for action_id, (_, _, epoch) in _ACTIONS.items()},
    )
    github = fakes["github"]
    github.clear()
    _github(h, fakes)

    def run(action_id: str) -> Any:
        agent_id = _ACTIONS[action_id][0]
        waited = h.agent(keys[agent_id], "GET", f"/v1/actions/{action_id}/wait?timeout=0").json()
        if waited["decision_token"] is None:  # closed: `/wait` hands it none, denies it
            assert waited["status"] == "denied", waited
        return _execute(
            h, keys[agent_id], action_id, waited["decision_token"] or _signed(h, action_id)
        )

    for closed in ("act_before", "act_at"):
        _assert_closed(run(closed))
    assert github.received("PUT") == []
    for runs in ("act_after", "act_ops"):
        done = run(runs)
        assert done.status_code == 200, done.text
    assert len(github.received("PUT")) == 2
    github.clear()


def _statuses(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(action_requests.c.id, action_requests.c.status))
    return {r.id: r.status for r in rows}


def _serve(tmp_path: Path, database_url: str, fakes: FakeUpstreams) -> tuple[str, str]:
    """On the newest revision: an action decided by a replica an hour ahead, the agent
    suspended and activated, and an action decided after; returns their ids. The app is
    stopped on return."""
    settings = make_settings(tmp_path / "data", database_url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        h = Harness(client, settings.data_dir)
        _github(h, fakes)
        key = h.create_agent("Bot")
        ahead = _allowed(h, key, _merge(1))["action_request_id"]  # created_at: an hour on
        _cycle(h, "Bot", "suspend", "activate")
        after = _allowed(h, key, _merge(2))["action_request_id"]
    with warnings.catch_warnings():  # as tests/server/conftest.py: pool connections
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return ahead, after


def test_a_downgrade_denies_what_the_epoch_closed_whatever_its_clock_said(
    tmp_path: Path, database_url: str, fakes: FakeUpstreams, monkeypatch: Any
) -> None:
    monkeypatch.setattr(actions_route, "now", lambda: real_now() + 3600.0)
    ahead, after = _serve(tmp_path, database_url, fakes)
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            closed_before = conn.execute(select(agents.c.closed_before)).scalar_one()
            created = conn.execute(
                select(action_requests.c.created_at).where(action_requests.c.id == ahead)
            ).scalar_one()
            assert created > closed_before  # (0019 alone would let it run)
            command.downgrade(alembic_config(conn), "0020")
            conn.commit()
            statuses = _statuses(conn)
            upgrade(conn)  # and up again: the denial stands
            conn.commit()
            again = _statuses(conn)
    finally:
        db.close()
    assert statuses == {ahead: "denied", after: "allowed"}
    assert again == statuses
