"""A `tf run` key holds a lease (`POST /api/v1/agents/ensure` with `lease_seconds`): past its
`expires_at` it is refused everywhere a proxy key is accepted, exactly as a revoked key is,
by the control plane's clock and by the gateway's; `tf run` renews it while its agent runs
(`run-keys/{id}/renew`) and ends it when the agent exits (`DELETE run-keys/{id}`).

Before, a run key never expired and was never revoked: a `tf run --enforcement monitor`
credential kept by anything that outlived the run still had denied calls forwarded as
would_deny, and a killed `tf run` left a key valid for good. Expiry is checked with an
injected clock (no sleeping); migration 0018 keeps every stored key as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from agentfirewall_proxy.pipeline import KeyRefused, agent_for_key
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_server import state as server_state
from agentfirewall_server.clock import parse_time
from agentfirewall_server.identity import hash_secret, new_agent_key, prefix_of
from agentfirewall_server.store.schema import agents, api_keys
from tests.server.conftest import SPEC, Harness
from tests.server.migrating import stored_at

REFUSED = "invalid API key: check AAF_API_KEY"  # an unknown or a revoked key's answer
#: Checks of a request's body only: the same on both engines.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _ensure(h: Harness, **body: Any) -> dict[str, Any]:
    answer = h.admin("POST", "/v1/agents/ensure", json={"name": "Bot", **body})
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


def _sdk_call(h: Harness, key: str) -> Any:
    return h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})


def _gateway_check(h: Harness, key: str, at: float) -> str:
    """What the gateway makes of `key` at `at` (its clock) by the config it is served: the
    level its traffic runs at, or `refused` (its 407). `expires_at` is shown to the
    millisecond: a key expires within the millisecond after it."""
    config = compile_snapshot(h.gateway("GET", "/v1/gateway/config").json())
    try:
        return agent_for_key(config, hash_secret(key), now=at).level
    except KeyRefused:
        return "refused"


def test_an_ended_monitor_run_key_is_refused_by_the_gateway(harness: Harness) -> None:
    """The review's scenario: a `tf run --enforcement monitor` key, kept after the run has
    ended, no longer lets anything through (it forwarded denied calls as would_deny)."""
    harness.create_agent("Bot")  # full_enforce
    run = _ensure(harness, run_enforcement_level="monitor", lease_seconds=300)
    key, key_id = run["api_key"], run["run"]["key_id"]
    expires = parse_time(run["run"]["expires_at"])
    assert _gateway_check(harness, key, expires - 1) == "monitor"

    ended = harness.admin("DELETE", f"/v1/agents/Bot/run-keys/{key_id}")  # the run's end
    assert ended.json() == {"key_id": key_id, "ended": True}
    assert _gateway_check(harness, key, expires - 1) == "refused"
    assert _sdk_call(harness, key).json()["message"] == REFUSED


def test_a_run_key_never_ended_expires_at_its_lease(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `tf run` killed outright (SIGKILL) ends nothing: its key stops working when its
    lease does, at the gateway (its own clock) and at the control plane, answered as a
    revoked key is; renewed, even once expired (the run is alive), it works again."""
    run = _ensure(harness, lease_seconds=30)
    key, key_id = run["api_key"], run["run"]["key_id"]
    expires = parse_time(run["run"]["expires_at"]) + 0.001  # (shown to the millisecond)
    assert _gateway_check(harness, key, expires - 0.002) == "full_enforce"
    assert _gateway_check(harness, key, expires) == "refused"
    assert _sdk_call(harness, key).status_code == 200

    monkeypatch.setattr(server_state, "now", lambda: expires)
    refused = _sdk_call(harness, key)
    assert (refused.status_code, refused.json()["message"]) == (401, REFUSED)

    renewed = harness.admin(
        "POST", f"/v1/agents/Bot/run-keys/{key_id}/renew", json={"lease_seconds": 600}
    )
    assert renewed.status_code == 200, renewed.text
    later = parse_time(renewed.json()["expires_at"]) + 0.001
    assert later >= expires + 500
    assert _sdk_call(harness, key).status_code == 200  # (the clock still says `expires`)
    assert _gateway_check(harness, key, later - 1) == "full_enforce"
    assert _gateway_check(harness, key, later) == "refused"


def test_ensure_without_a_lease_answers_as_before(harness: Harness) -> None:
    """An earlier `tf run` sends no `lease_seconds`: its key has none (and no id is shown)."""
    made = _ensure(harness)
    assert made["run"] == {"enforcement_level": "full_enforce", "scope": "agent"}
    again = _ensure(harness)
    assert set(again["run"]) == {"enforcement_level", "scope"}
    served = harness.gateway("GET", "/v1/gateway/config").json()
    assert served["agents"][0]["key_expires"] == {}
    assert _gateway_check(harness, again["api_key"], 4e9) == "full_enforce"


@sqlite_only
def test_a_lease_out_of_bounds_is_refused(harness: Harness) -> None:
    run = _ensure(harness, lease_seconds=30)
    renew = f"/v1/agents/Bot/run-keys/{run['run']['key_id']}/renew"
    for lease in (29, 86_401, 0, -1, "300", True, 300.5):
        for path, body in (("/v1/agents/ensure", {"name": "Bot"}), (renew, {})):
            answer = harness.admin("POST", path, json={**body, "lease_seconds": lease})
            assert answer.status_code == 422, (path, lease, answer.text)
            assert answer.json()["field"] == "lease_seconds"
    assert harness.admin("POST", renew, json={}).json()["field"] == "lease_seconds"  # required


def test_a_new_agents_leased_run_key_is_not_its_sdk_key(harness: Harness) -> None:
    """With a lease, `ensure` answers a run key also when it creates the agent (before, the
    agent's first SDK key, which no lease may hold)."""
    made = harness.admin("POST", "/v1/agents/ensure", json={"name": "Bot", "lease_seconds": 60})
    assert made.status_code == 201
    kinds = harness.state.db.read_sync(
        lambda c: c.execute(select(api_keys.c.id, api_keys.c.kind, api_keys.c.expires_at)).all()
    )
    leased = [(ident, kind) for ident, kind, expires in kinds if expires is not None]
    assert leased == [(made.json()["run"]["key_id"], "proxy")]
    assert sorted(kind for _, kind, _ in kinds) == ["proxy", "sdk"]


def test_renew_and_end_take_an_admin_and_a_run_key_of_that_agent(harness: Harness) -> None:
    bot_key = harness.create_agent("Bot")
    ops = harness.admin("POST", "/v1/agents/ensure", json={"name": "Ops", "lease_seconds": 60})
    ops_key_id = ops.json()["run"]["key_id"]
    run = _ensure(harness, lease_seconds=60)
    key, key_id = run["api_key"], run["run"]["key_id"]
    sdk_id = harness.state.db.read_sync(
        lambda c: c.execute(
            select(api_keys.c.id).where(api_keys.c.key_hash == hash_secret(bot_key))
        ).scalar_one()
    )
    renew = {"lease_seconds": 60}
    base = "/v1/agents/Bot/run-keys"

    for who in (None, key, bot_key, harness.gateway_token):  # the run key itself included
        assert harness.call("POST", f"{base}/{key_id}/renew", who, json=renew).status_code in (
            401,
            403,
        )
        assert harness.call("DELETE", f"{base}/{key_id}", who).status_code in (401, 403)

    for path in (
        f"{base}/{ops_key_id}",  # another agent's
        f"{base}/{sdk_id}",  # not a run key
        f"{base}/999999",
        f"{base}/x1",
        f"{base}/99999999999999999999",
        f"{base}/%D9%A1",  # an Arabic-Indic 1
        f"/v1/agents/nobody/run-keys/{key_id}",
    ):
        assert harness.admin("POST", f"{path}/renew", json=renew).status_code == 404, path
        assert harness.admin("DELETE", path).status_code == 404, path
    assert "has no run key `x1`" in harness.admin("DELETE", f"{base}/x1").json()["message"]
    assert harness.admin("DELETE", f"{base}/{key_id}", json={"reason": "r"}).status_code == 422

    assert _sdk_call(harness, key).status_code == 200  # none of that touched it
    assert _sdk_call(harness, bot_key).status_code == 200
    assert harness.admin("DELETE", f"{base}/{key_id}").json()["ended"] is True
    assert harness.admin("DELETE", f"{base}/{key_id}").json()["ended"] is False
    again = harness.admin("POST", f"{base}/{key_id}/renew", json=renew)
    assert again.status_code == 409
    assert "was ended (revoked)" in again.json()["message"]
    assert _sdk_call(harness, key).json()["message"] == REFUSED
    assert _sdk_call(harness, bot_key).status_code == 200  # the agent's own key stays


def test_a_revoked_agents_run_key_is_never_renewed(harness: Harness) -> None:
    run = _ensure(harness, lease_seconds=60)
    assert harness.admin("POST", "/v1/agents/Bot/revoke").status_code == 200
    renewed = harness.admin(
        "POST", f"/v1/agents/Bot/run-keys/{run['run']['key_id']}/renew", json={"lease_seconds": 60}
    )
    assert renewed.status_code == 409
    assert _sdk_call(harness, run["api_key"]).json()["message"] == REFUSED


def test_renewals_and_ends_are_audited_without_the_key(harness: Harness) -> None:
    run = _ensure(harness, run_enforcement_level="L0", lease_seconds=60)
    key, key_id = run["api_key"], run["run"]["key_id"]
    path = f"/v1/agents/Bot/run-keys/{key_id}"
    renewed = harness.admin("POST", path + "/renew", json={"lease_seconds": 120}).json()
    harness.admin("DELETE", path)
    events = harness.admin("GET", "/v1/audit?limit=100").json()["events"]
    found = {e["event_type"]: e for e in events if e["event_type"].startswith("agent.run")}
    assert set(found) == {"agent.run_enforcement", "agent.run_key_renewed", "agent.run_key_ended"}
    assert found["agent.run_key_renewed"]["data"] == {
        "key_id": key_id,
        "key_prefix": prefix_of(key),
        "expires_at": renewed["expires_at"],
    }
    assert found["agent.run_key_ended"]["data"] == {"key_id": key_id, "key_prefix": prefix_of(key)}
    assert found["agent.run_enforcement"]["data"]["key_id"] == key_id
    assert all(e["actor"] == "admin-token" for e in found.values())
    assert key not in str(events)


def test_migration_0018_keeps_every_stored_key_without_a_lease(
    database_url: str, harness_factory: Any
) -> None:
    """Keys stored before 0018 (an SDK key, a `tf run` proxy key) keep working, with no
    expiry; the agent's new run keys get leases."""
    sdk, proxy = new_agent_key("live"), new_agent_key("live")

    def key(secret: str, kind: str) -> dict[str, Any]:
        return {"agent_id": "agt_bot", "key_hash": hash_secret(secret),
                "prefix": prefix_of(secret), "kind": kind, "created_at": 100.0}  # fmt: skip

    stored_at(database_url, "0017", {
        agents: [{"id": "agt_bot", "name": "Bot", "name_key": None, "status": "active",
                  "environment": "live", "description": "", "enforcement_level": "full_enforce",
                  "sdk_default": "allow", "created_at": 100.0, "updated_at": 100.0}],
        api_keys: [key(sdk, "sdk"), key(proxy, "proxy:L0")],
    })  # fmt: skip
    h = harness_factory()  # the app migrates to the newest revision on start
    stored = h.state.db.read_sync(
        lambda c: c.execute(select(api_keys.c.kind, api_keys.c.expires_at)).all()
    )
    assert sorted(stored) == [("proxy:L0", None), ("sdk", None)]
    assert _sdk_call(h, sdk).status_code == 200
    assert _gateway_check(h, proxy, 4e9) == "monitor"

    run = _ensure(h, lease_seconds=60)
    expires = parse_time(run["run"]["expires_at"]) + 0.001
    assert _gateway_check(h, run["api_key"], expires - 1) == "full_enforce"
    assert _gateway_check(h, run["api_key"], expires) == "refused"
    assert _gateway_check(h, proxy, expires) == "monitor"
