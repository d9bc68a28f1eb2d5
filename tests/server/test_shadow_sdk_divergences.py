"""SDK divergences are shown wherever the gateway's are: a real server, real SDK calls and
gateway traffic records through the real ingest. `GET /api/v1/traffic?shadow=diverged`
lists both (labelled `source`), pages them as one list, and `tf logs --diverged` and
`tf policy shadow list` show and count them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentfirewall import AgentFirewall
from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input
from agentfirewall_proxy.cli.app import main as tf_main
from tests.livesrv import LiveServer

DENY_ALL = "name: deny-everything\nrules:\n  - {name: all, decision: deny}\n"
TF = Callable[..., Any]


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    running = LiveServer.start(tmp_path / "tf", env={"AGENTFIREWALL_DATABASE_URL": database_url})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def tf(server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> TF:
    """`tf …` in this process against `server` (JSON unless `text`)."""
    for name in [k for k in os.environ if k.startswith("TF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TF_SERVER", server.url)
    monkeypatch.setenv("TF_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str, text: bool = False) -> Any:
        capsys.readouterr()
        done = tf_main([*args] if text else [*args, "--json"])
        out = capsys.readouterr()
        assert done == 0, out.err + out.out
        return out.out if text else json.loads(out.out)

    return run


def _allow(server: LiveServer, agent: str, connector: str, pattern: str, decision: str) -> None:
    body = {"agent": agent, "connector": connector, "action_pattern": pattern,
            "decision": decision}  # fmt: skip
    assert server.admin("POST", "/v1/permissions", json=body).status_code in (200, 201)


def _sdk(key: str, server: LiveServer, action: str) -> str:
    with AgentFirewall(api_key=key, base_url=server.api_url) as firewall:
        result = firewall.request_action(action, provider="crm", parameters={"id": "c_1"})
    return str(result.status)


def _gateway_call(server: LiveServer, request_id: str, agent: str = "Bot") -> None:
    """One gateway traffic record (a Stripe balance read), sent as the gateway sends it."""
    spec = parse_action_spec({"type": "stripe.balance.get", "resource": {"provider": "stripe"}})
    ctx = EvaluationContext(agent=agent, mode="proxy", now=datetime.now(UTC), connector="stripe")
    record = {"request_id": request_id, "agent": agent, "connector": "stripe",
              "action": "stripe.balance.get", "method": "GET", "host": "api.stripe.com",
              "path": "/v1/balance", "decision": "allow", "status_code": 200,
              "latency_ms": 3.0, "input": record_input(spec, ctx)}  # fmt: skip
    done = server.gateway("POST", "/v1/gateway/traffic", {"records": [record]})
    assert done.status_code == 200, done.text
    time.sleep(0.01)  # distinct times: the expected order below is the order of the calls


def _diverged(server: LiveServer, **params: Any) -> dict[str, Any]:
    found = server.admin("GET", "/v1/traffic", params={"shadow": "diverged", **params})
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def _sources(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["source"], r["action"]) for r in rows]


def test_sdk_divergences_are_listed_labelled_and_paged_with_the_gateways(
    server: LiveServer, tf: TF
) -> None:
    key = server.create_agent("Bot")
    _allow(server, "Bot", "stripe", "stripe.*", "allow")
    _allow(server, "Bot", "crm", "crm.*", "allow")
    _allow(server, "Bot", "crm", "crm.contact.delete", "deny")
    installed = server.admin("POST", "/v1/shadow/policies", json={"document": DENY_ALL})
    assert installed.status_code == 201, installed.text

    _gateway_call(server, "r1")
    assert _sdk(key, server, "crm.contact.update") == "allowed"  # shadow: deny, diverged
    assert _sdk(key, server, "crm.contact.delete") == "denied"  # shadow: deny too, no divergence
    time.sleep(0.01)
    _gateway_call(server, "r2")

    rows = _diverged(server)["traffic"]  # newest first
    assert _sources(rows) == [("proxy", "stripe.balance.get"), ("sdk", "crm.contact.update"),
                              ("proxy", "stripe.balance.get")]  # fmt: skip
    sdk = rows[1]
    assert (sdk["agent"], sdk["connector"], sdk["decision"]) == ("Bot", "crm", "allow")
    assert (sdk["shadow_decision"], sdk["shadow_rule"], sdk["shadow_diverged"]) == (
        "deny", "deny-everything/all", True)  # fmt: skip
    assert sdk["id"].startswith("act_")
    assert sdk["input"]["t"] == "crm.contact.update"
    assert (sdk["method"], sdk["host"], sdk["status_code"]) == (None, None, None)
    assert set(sdk) == set(rows[0])  # a traffic row's shape
    # the unfiltered traffic log stays the gateway's
    plain = server.admin("GET", "/v1/traffic").json()["traffic"]
    assert [r["source"] for r in plain] == ["proxy", "proxy"]

    # every filter applies to SDK rows too (an HTTP status matches none of them)
    by: dict[str, list[tuple[str, str]]] = {}
    for name, value in (("connector", "crm"), ("connector", "stripe"), ("action",
                        "crm.contact.update"), ("decision", "deny"), ("status", "200"),
                        ("agent", "Nobody")):  # fmt: skip
        by[f"{name}={value}"] = _sources(_diverged(server, **{name: value})["traffic"])
    assert by == {
        "connector=crm": [("sdk", "crm.contact.update")],
        "connector=stripe": [("proxy", "stripe.balance.get")] * 2,
        "action=crm.contact.update": [("sdk", "crm.contact.update")],
        "decision=deny": [],
        "status=200": [("proxy", "stripe.balance.get")] * 2,
        "agent=Nobody": [],
    }

    # one page at a time: every row once, in the same order, whatever the table
    walked, before = [], None
    while True:
        found = _diverged(server, limit=1, **({"before": before} if before else {}))
        walked += found["traffic"]
        before = found["next_before"]
        if before is None:
            break
    assert [r["id"] for r in walked] == [r["id"] for r in rows]
    legacy = _diverged(server, before=rows[0]["id"])["traffic"]  # a bare traffic id
    assert [r["id"] for r in legacy] == [rows[2]["id"]]
    for cursor in ("x,y,z", "1.5,proxy,act_1", "1.5,proxy,99999999999999999999999",
                   "nan,sdk,act_1", "1.5,gateway,1"):  # fmt: skip
        bad = server.admin("GET", "/v1/traffic", params={"shadow": "diverged", "before": cursor})
        assert (bad.status_code, bad.json()["field"]) == (400, "before"), cursor

    # the CLI: `tf logs --diverged` shows it with the gateway's wording, labelled `sdk`
    logs = tf("logs", "--diverged", "--agent", "Bot")
    assert _sources(logs["traffic"]) == _sources(rows)
    lines = tf("logs", "--diverged", "--agent", "Bot", text=True).splitlines()
    (line,) = [row for row in lines if "crm.contact.update" in row]
    assert " sdk " in line
    assert "allow [shadow: deny]" in line
    assert sum("[shadow: deny]" in row for row in lines) == 3

    # and `tf policy shadow list` counts it
    listed = tf("policy", "shadow", "list")
    assert listed["diverged_recent"] == 3
    assert listed["diverged_recent_by_source"] == {"proxy": 2, "sdk": 1}
    report = tf("policy", "shadow", "list", text=True)
    assert "2 of the last traffic records diverged (proxy)" in report
    assert "1 of the last SDK action requests diverged (sdk)" in report


def test_an_sdk_divergence_reaches_the_live_event_stream(server: LiveServer) -> None:
    """The dashboard's traffic page reloads on `traffic` events: a diverged SDK action sends
    one (in the listing's shape); an SDK action that does not diverge sends none."""
    key = server.create_agent("Bot")
    _allow(server, "Bot", "crm", "crm.*", "allow")
    _allow(server, "Bot", "crm", "crm.contact.delete", "deny")
    installed = server.admin("POST", "/v1/shadow/policies", json={"document": DENY_ALL})
    assert installed.status_code == 201, installed.text
    with server.events(until="kill_switch") as seen:
        assert _sdk(key, server, "crm.contact.delete") == "denied"  # shadow: deny too
        assert _sdk(key, server, "crm.contact.update") == "allowed"  # shadow: deny, diverged
        server.admin("POST", "/v1/kill-switch", json={"active": True})  # the stream's end
    traffic = [data for kind, data in seen if kind == "traffic"]
    assert [(t["source"], t["action"]) for t in traffic] == [("sdk", "crm.contact.update")]
    (event,) = traffic
    listed = _diverged(server)["traffic"][0]
    assert event == {k: v for k, v in listed.items() if k not in ("created_at", "input")}
