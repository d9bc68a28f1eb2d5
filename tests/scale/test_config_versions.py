"""A replica never serves its gateways a configuration it cannot confirm, nor an old one.

- Cut off from PostgreSQL (its HTTP still up), a replica cannot hear of a kill switch
  engaged on another: past the bound (``state.CONFIRM_BOUND``) its config route and
  long-polls answer 503 ``store_unreachable``, so gateways fail over (or their
  ``--max-config-age`` clock runs) instead of being told that what they hold is current.
- A restore sets the version above every one served before it, so the gateways (which
  refuse a config older than theirs: tests/proxy/test_config_never_older.py) take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfirewall_server import state
from agentfirewall_server.backup import backup, restore
from tests.scale.conftest import Link, Replicas, _create_database, listening, wait_for

pytestmark = pytest.mark.postgres

KILL = [{"scope": "all", "target": None, "reason": "kill switch"}]


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database (asked for before `replicas`: dropped after they stop)."""
    yield from _create_database("af_versions")


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The version read every 0.1 s, unconfirmed past 0.8 s (the test waits less)."""
    monkeypatch.setattr(state, "FOLLOW_SECONDS", 0.1)
    monkeypatch.setattr(state, "CONFIRM_BOUND", 0.8)


def test_a_replica_cut_off_from_the_database_refuses_its_config_past_the_bound(
    quick: None, database: str, replicas: Replicas
) -> None:
    link = Link(database)
    try:
        a = replicas.start("a", database)
        b = replicas.start("b", link.via(database))
        wait_for(lambda: listening(a) and listening(b), what="both replicas listening")
        version = b.gateway("GET", "/v1/gateway/config").json()["version"]
        link.cut()
        answer = a.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "all"})
        assert answer.status_code == 200, answer.text
        # a long-poll begun within the bound ends with the bound, not "unchanged" (304)
        poll = b.gateway("GET", f"/v1/gateway/config?since={version}&wait=10")
        assert poll.status_code == 503, poll.text
        assert poll.json()["error"] == "store_unreachable"
        assert b.gateway("GET", "/v1/gateway/config").status_code == 503
        assert a.gateway("GET", "/v1/gateway/config").json()["kill_switches"] == KILL
        link.restore()
        wait_for(lambda: b.gateway("GET", "/v1/gateway/config").status_code == 200,
                 what="B serves again")  # fmt: skip
        assert b.gateway("GET", "/v1/gateway/config").json()["kill_switches"] == KILL
    finally:
        link.close()


def test_a_restore_serves_a_version_above_every_one_served_before(
    database: str, replicas: Replicas, tmp_path: Path
) -> None:
    a = replicas.start("a", database)
    a.create_agent("Before")
    backup(a.state.settings, tmp_path / "backup")
    a.create_agent("After")
    served = a.gateway("GET", "/v1/gateway/config").json()["version"]
    replicas.stop(a)
    restore(tmp_path / "backup", replicas.settings("r", database), force=True)
    r = replicas.start("r", database)
    config = r.gateway("GET", "/v1/gateway/config").json()
    assert [agent["name"] for agent in config["agents"]] == ["Before"]
    assert config["version"] > served
