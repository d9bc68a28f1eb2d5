"""Recorded decision inputs in the store (both engines): read back for replay, cleared
past their retention while the traffic rows stay, an oversized input never stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_server.replaystore import AgentRows, Records, input_text, prune_inputs
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import traffic

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    database.start()
    yield database
    database.close()


def _row(ident: str, created: float, amount: int) -> dict[str, object]:
    spec = parse_action_spec({"type": "stripe.transfer.create", "parameters": {"amount": amount}})
    ctx = EvaluationContext(agent="Bot", mode="proxy", connector="stripe",
                            now=datetime.fromtimestamp(created, UTC))  # fmt: skip
    stored = input_text(record_input(spec, ctx))
    return {"request_id": ident, "agent": "Bot", "connector": "stripe", "decision": "allow",
            "created_at": created, "decision_input": stored}  # fmt: skip


def test_inputs_replay_and_are_cleared_past_retention(db: Database) -> None:
    rows = [_row("old", NOW - 40 * DAY, 1), _row("new", NOW - DAY, 2)]
    db.write_sync(lambda c: c.execute(insert(traffic), rows))
    bot, other = AgentRows(names=frozenset({"Bot"})), AgentRows(names=frozenset({"Other"}))
    found = db.read_sync(lambda c: list(Records(c, NOW - 60 * DAY, bot)))
    assert sorted(str(r.spec.parameters["amount"]) for r in found) == ["1", "2"]
    assert {r.recorded for r in found} == {"allow"}
    assert db.read_sync(lambda c: list(Records(c, NOW - 60 * DAY, other))) == []

    db.write_sync(lambda c: prune_inputs(c, NOW, 30))
    kept = db.read_sync(lambda c: c.execute(select(traffic.c.request_id, traffic.c.decision_input)
                                            .order_by(traffic.c.request_id)).all())  # fmt: skip
    assert [(r.request_id, r.decision_input is None) for r in kept] == [
        ("new", False),
        ("old", True),
    ]


def test_an_oversized_or_foreign_input_is_not_stored() -> None:
    assert input_text({"v": 1, "t": "x.y", "p": {"k": "v" * 9000}}) is None
    assert input_text({"v": 99}) is None
    assert input_text(None) is None
