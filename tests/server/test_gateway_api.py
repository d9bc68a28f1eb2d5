"""The gateway API: config snapshot and long-poll, traffic, approvals, heartbeat."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall_server.identity import hash_secret
from tests.server.conftest import SPEC, Harness


def test_config_snapshot_holds_agents_credentials_rules_and_switches(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    harness.admin("POST", "/v1/connectors", json={"type": "github", "token": "ghp_abc"})
    harness.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": "Bot",
            "connector": "github",
            "action_pattern": "github.pr.*",
            "decision": "allow",
        },
    )
    harness.admin("POST", "/v1/kill-switch", json={"active": True, "scope": "github"})
    config = harness.gateway("GET", "/v1/gateway/config").json()
    assert config["agents"][0]["key_hashes"] == [hash_secret(key)]
    assert config["connectors"][0]["credential"] == "ghp_abc"
    assert "api.github.com" in config["connectors"][0]["domains"]
    assert config["permissions"][0]["action_pattern"] == "github.pr.*"
    assert config["kill_switches"] == [
        {"scope": "connector", "target": "github", "reason": "kill switch"}
    ]
    assert config["settings"]["approval_timeout_seconds"] == 300
    assert harness.admin("GET", "/v1/gateway/config").status_code == 403
    assert harness.agent(key, "GET", "/v1/gateway/config").status_code == 403
    assert harness.call("GET", "/v1/gateway/config").status_code == 401


def test_config_long_poll_answers_304_or_wakes_on_change(harness: Harness) -> None:
    version = harness.gateway("GET", "/v1/gateway/config").json()["version"]
    r = harness.gateway("GET", f"/v1/gateway/config?since={version}&wait=0")
    assert r.status_code == 304
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer["r"] = harness.gateway("GET", f"/v1/gateway/config?since={version}&wait=20")

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    harness.create_agent("New")
    thread.join(30)
    assert answer["r"].status_code == 200
    assert answer["r"].json()["version"] > version
    assert [a["name"] for a in answer["r"].json()["agents"]] == ["New"]


def test_traffic_is_ingested_and_queryable(harness: Harness) -> None:
    records = [
        {
            "request_id": f"r{i}",
            "agent": "Bot",
            "connector": "github",
            "action": "github.pr.merge",
            "method": "PUT",
            "host": "api.github.com",
            "path": "/repos/a/b/pulls/1/merge",
            "decision": "allow" if i else "deny",
            "would_outcome": None,
            "status_code": 200 if i else 403,
            "latency_ms": 1.5,
            "bytes_in": 10,
            "bytes_out": 20,
            "reason": "ok",
            "created_at": "2026-11-25T09:00:00.000000Z",
        }
        for i in range(3)
    ]
    r = harness.gateway("POST", "/v1/gateway/traffic", json={"records": records})
    assert r.json() == {"accepted": 3}
    rows = harness.admin("GET", "/v1/traffic?decision=deny").json()["traffic"]
    assert [t["request_id"] for t in rows] == ["r0"]
    assert rows[0]["created_at"] == "2026-11-25T09:00:00.000Z"
    page = harness.admin("GET", "/v1/traffic?limit=2").json()
    assert len(page["traffic"]) == 2
    assert page["next_before"] is not None
    bad = harness.gateway(
        "POST",
        "/v1/gateway/traffic",
        json={"records": [{"request_id": "x", "headers": {"a": "b"}}]},
    )
    assert bad.status_code == 422
    assert len(harness.admin("GET", "/v1/traffic").json()["traffic"]) == 3


def _approval_body(digest: str = "d" * 64) -> dict[str, Any]:
    spec = parse_action_spec(SPEC)
    return {
        "agent": "Bot",
        "connector": "github",
        "action_spec": spec.to_dict(),
        "action_hash": spec.action_hash,
        "risk_score": 50,
        "reason": "held",
        "request": {
            "method": "PUT",
            "host": "api.github.com",
            "path": "/repos/acme/api/pulls/42/merge",
            "query": "",
            "body_size": 2,
            "body_preview": "{}",
            "digest": digest,
        },
        "timeout_seconds": 60,
    }


def test_gateway_approvals_wait_consume_and_reuse(harness: Harness) -> None:
    created = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert created["status"] == "pending"
    assert created["source"] == "proxy"
    assert created["reused"] is False
    apv = created["id"]
    r = harness.gateway("GET", f"/v1/gateway/approvals/{apv}/wait?timeout=0")
    assert r.json()["status"] == "pending"
    harness.admin("POST", f"/v1/approvals/{apv}/approve")
    assert (
        harness.gateway("GET", f"/v1/gateway/approvals/{apv}/wait").json()["status"] == "approved"
    )
    again = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert again["id"] == apv
    assert again["reused"] is True
    third = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert third["id"] != apv
    assert third["reused"] is False
    harness.admin("POST", f"/v1/approvals/{third['id']}/approve")
    used = harness.gateway("POST", f"/v1/gateway/approvals/{third['id']}/consume")
    assert used.json()["used"] is True
    assert (
        harness.gateway("POST", f"/v1/gateway/approvals/{third['id']}/consume").status_code == 409
    )
    mismatch = {**_approval_body(), "action_hash": "0" * 64}
    assert harness.gateway("POST", "/v1/gateway/approvals", json=mismatch).status_code == 422


def test_batched_approval_wait_answers_the_settled_ids_only(harness: Harness) -> None:
    held = [
        harness.gateway(
            "POST", "/v1/gateway/approvals", json={**_approval_body(), "reason": r}
        ).json()["id"]
        for r in ("one", "two", "three")
    ]
    url = "/v1/gateway/approvals/wait?timeout="
    assert harness.gateway("POST", url + "0", json={"ids": held}).json() == {"approvals": []}
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer["r"] = harness.gateway("POST", url + "20", json={"ids": held})

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    harness.admin("POST", f"/v1/approvals/{held[1]}/deny", json={"note": "no"})
    thread.join(30)
    settled = answer["r"].json()["approvals"]
    assert [(a["id"], a["status"]) for a in settled] == [(held[1], "denied")]
    harness.admin("POST", f"/v1/approvals/{held[2]}/approve")
    both = harness.gateway("POST", url + "5", json={"ids": [*held, "apv_nope"]}).json()
    assert {(a["id"], a["status"]) for a in both["approvals"]} == {
        (held[1], "denied"),
        (held[2], "approved"),
        ("apv_nope", "not_found"),
    }


def test_batched_approval_wait_refuses_bad_input(harness: Harness) -> None:
    url = "/v1/gateway/approvals/wait"
    assert harness.gateway("POST", url, json={"ids": []}).status_code == 422
    assert harness.gateway("POST", url, json={"ids": ["a"] * 1001}).status_code == 422
    assert harness.gateway("POST", url, json={"ids": "apv_1"}).status_code == 422
    assert harness.gateway("POST", url, json={"ids": ["a"], "x": 1}).status_code == 422
    assert harness.admin("POST", url, json={"ids": ["a"]}).status_code == 403


def test_heartbeat_shows_the_gateway_online(harness: Harness) -> None:
    assert harness.admin("GET", "/v1/status").json()["gateway"]["online"] is False
    r = harness.gateway(
        "POST",
        "/v1/gateway/heartbeat",
        json={
            "gateway_id": "gw-1",
            "version": "0.1.0",
            "listen": "127.0.0.1:8443",
            "agent_ports": {"Bot": 10001},
            "started_at": "2026-11-25T09:00:00Z",
            "stats": {"requests": 3},
        },
    )
    assert r.json() == {"ok": True}
    status = harness.admin("GET", "/v1/status").json()
    assert status["gateway"]["online"] is True
    assert status["gateway"]["proxies"][0]["gateway_id"] == "gw-1"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/gateway/traffic", {"records": [{"request_id": "r", "decision": "maybe"}]},
         "records.0.decision"),
        ("/v1/gateway/traffic", {"records": [{"request_id": "r", "would_outcome": "x"}]},
         "records.0.would_outcome"),
        ("/v1/gateway/heartbeat", {"gateway_id": "g", "started_at": "yesterday"}, "started_at"),
        ("/v1/gateway/heartbeat", {"gateway_id": "g", "agent_ports": {"Bot": 70000}},
         "agent_ports.Bot"),
        ("/v1/gateway/heartbeat", {"gateway_id": "g", "agent_port_range": ["1", "2"]},
         "agent_port_range.0"),
    ],
)  # fmt: skip
def test_gateway_reports_hold_to_their_documented_values(
    harness: Harness, path: str, body: dict[str, object], field: str
) -> None:
    """A decision word the API does not know would be counted in `/status` as one of its
    own; a time that is not RFC 3339 or a port out of range would be shown as given."""
    answer = harness.gateway("POST", path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert "maybe" not in json.dumps(harness.admin("GET", "/v1/status").json())


def test_status_counts_proxied_traffic_decisions_with_sdk_ones(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    assert harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).status_code == 200
    decisions = ["allow", "allow", "deny", "require_approval", None]
    records = [{"request_id": f"r{i}", "decision": d} for i, d in enumerate(decisions)]
    r = harness.gateway("POST", "/v1/gateway/traffic", json={"records": records})
    assert r.json() == {"accepted": 5}
    status = harness.admin("GET", "/v1/status").json()
    by_source = status["decisions_by_source"]
    assert by_source["proxy"] == {"allow": 2, "deny": 1, "require_approval": 1}
    assert sum(by_source["sdk"].values()) == 1
    assert status["decisions"] == {
        k: by_source["sdk"][k] + by_source["proxy"][k]
        for k in ("allow", "deny", "require_approval")
    }


def test_agents_show_the_dedicated_port_an_online_gateway_reports(harness: Harness) -> None:
    harness.create_agent("Bot")
    harness.create_agent("Other")
    assert {a["proxy_port"] for a in harness.admin("GET", "/v1/agents").json()["agents"]} == {None}
    beat = {
        "gateway_id": "gw-ports",
        "version": "0.1.0",
        "listen": "127.0.0.1:8443",
        "agent_ports": {"Bot": 10001},
        "started_at": "2026-11-25T09:00:00Z",
        "stats": {},
    }
    assert harness.gateway("POST", "/v1/gateway/heartbeat", json=beat).status_code == 200
    ports = {
        a["name"]: a["proxy_port"] for a in harness.admin("GET", "/v1/agents").json()["agents"]
    }
    assert ports == {"Bot": 10001, "Other": None}
    assert harness.admin("GET", "/v1/agents/Bot").json()["proxy_port"] == 10001
    harness.state.gateways["gw-ports"]["last_heartbeat"] -= 3600  # that gateway went away
    assert harness.admin("GET", "/v1/agents/Bot").json()["proxy_port"] is None
    beat = {**beat, "gateway_id": "gw-new", "agent_ports": {"Bot": 10005}}
    assert harness.gateway("POST", "/v1/gateway/heartbeat", json=beat).status_code == 200
    # `tf run` reads these: the running gateway first, the stopped one marked as such
    gateway = harness.admin("GET", "/v1/status").json()["gateway"]
    listed = [(p["gateway_id"], p["online"], p["agent_ports"]) for p in gateway["proxies"]]
    assert listed == [("gw-new", True, {"Bot": 10005}), ("gw-ports", False, {"Bot": 10001})]
    assert gateway["online"] is True


def test_gateway_approval_is_reused_only_by_the_same_request_digest(harness: Harness) -> None:
    """One approval, one request: another body or query (another digest), or no digest
    at all, never spends an approval made for a different request."""
    created = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    harness.admin("POST", f"/v1/approvals/{created['id']}/approve")
    assert created["request"]["digest"] == "d" * 64
    assert created["request"]["body_preview"] == "{}"
    other = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body("e" * 64))
    assert other.json()["reused"] is False
    unbound = _approval_body()
    del unbound["request"]["digest"]
    assert harness.gateway("POST", "/v1/gateway/approvals", json=unbound).json()["reused"] is False
    same = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert same["reused"] is True
    assert same["id"] == created["id"]
    again = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert again["reused"] is False
    bad = _approval_body("not-hex")
    assert harness.gateway("POST", "/v1/gateway/approvals", json=bad).status_code == 422


def test_a_connector_with_a_base_url_serves_that_host(harness: Harness) -> None:
    """docs/connectors.md: configured without domains, a connector with a `base_url`
    (GitHub Enterprise) serves that URL's host at the gateway, not api.github.com."""
    enterprise = {"type": "github", "token": "ghp_x", "base_url": "https://GHE.example.com/api/v3"}
    assert harness.admin("POST", "/v1/connectors", json=enterprise).status_code == 201
    both = {**enterprise, "domains": ["git.example.com"], "name": "explicit"}
    assert harness.admin("POST", "/v1/connectors", json=both).status_code == 201
    public = {"type": "openai", "token": "sk-x"}
    assert harness.admin("POST", "/v1/connectors", json=public).status_code == 201
    config = harness.gateway("GET", "/v1/gateway/config").json()
    served = sorted((c["type"], tuple(c["domains"])) for c in config["connectors"])
    assert served == [
        ("github", ("ghe.example.com",)),
        ("github", ("git.example.com",)),
        ("openai", ("api.openai.com",)),
    ]


def test_an_approval_approved_long_ago_lets_nothing_through(harness: Harness) -> None:
    """An approved, unused approval was reused by its identical retry however long after:
    weeks later the same request passed on an approval shown as expired. Now it passes
    until the approval would have expired as pending, or for 300 s after it was approved,
    whichever is later; then the retry is held again and `consume` refuses it."""
    from sqlalchemy import update

    from agentfirewall_server.store.schema import approvals

    harness.create_agent("Bot")
    first = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    second = harness.gateway("POST", "/v1/gateway/approvals",
                             json=_approval_body("e" * 64)).json()  # fmt: skip
    for held in (first, second):
        assert harness.admin("POST", f"/v1/approvals/{held['id']}/approve").status_code == 200
    old = time.time() - 3600  # approved an hour ago, pending for a minute before that

    def age(conn: Any) -> None:
        conn.execute(update(approvals).values(decided_at=old, expires_at=old - 3540))

    harness.state.db.write_sync(age)
    again = harness.gateway("POST", "/v1/gateway/approvals", json=_approval_body()).json()
    assert (again["reused"], again["status"]) == (False, "pending")
    assert again["id"] != first["id"]
    late = harness.gateway("POST", f"/v1/gateway/approvals/{second['id']}/consume")
    assert late.status_code == 409
    assert "too long ago" in late.json()["message"]
