"""Shadow policies end to end: stripe-python through the real gateway and the Python SDK
against a real server. A shadow configuration is judged on every live decision and never
enforced (a shadow deny-all denies nothing live); its divergences are on the traffic rows,
in `tf logs` (the SDK's too with `--diverged`) and in `aaf_shadow_decisions_total`;
`tf policy shadow promote` makes it live."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stripe

from agentfirewall import AgentFirewall
from agentfirewall_proxy.cli.app import main
from tests.livesrv import LiveServer
from tests.proxy.support import PLACEHOLDER, RunningGateway
from tests.proxy.test_grants_live import poll
from tests.proxy.test_replay_live import NO_BIG, stripe_gateway  # noqa: F401 (fixture `gateway`)

DENY_ALL = """\
name: deny-everything
rules:
  - name: all
    decision: deny
    reason: the shadow says no
"""


TF = Callable[..., Any]


@pytest.fixture
def tf(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> TF:
    """`tf … --json` in this process (the real CLI code, without a Python start-up each)."""
    for name in [k for k in os.environ if k.startswith("TF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TF_SERVER", live_server.url)
    monkeypatch.setenv("TF_ADMIN_TOKEN", live_server.admin_token)

    def run(*args: str, text: bool = False, code: int = 0) -> Any:
        capsys.readouterr()
        done = main([*args] if text else [*args, "--json"])
        out = capsys.readouterr()
        assert done == code, out.err + out.out
        if text or code:
            return out.out + out.err
        return json.loads(out.out) if out.out.strip() else None

    return run


def _bot(server: LiveServer, gateway: RunningGateway) -> tuple[str, stripe.StripeClient]:
    key = server.create_agent("Bot")
    for connector, pattern in (("stripe", "stripe.*"), ("crm", "crm.*")):
        body = {"agent": "Bot", "connector": connector, "action_pattern": pattern,
                "decision": "allow"}  # fmt: skip
        assert server.admin("POST", "/v1/permissions", json=body).status_code in (200, 201)

    def known() -> bool:
        config = gateway.gateway.config if gateway.gateway else None
        return bool(config and any(a.name == "Bot" for a in config.agents.values()))

    poll(known)
    client = stripe.StripeClient(
        PLACEHOLDER,
        http_client=stripe.RequestsClient(proxy=gateway.proxy_url(key, "Bot")),
        max_network_retries=0,
    )
    return key, client


def _transfer(client: stripe.StripeClient, amount: int) -> None:
    client.v1.transfers.create(params={"amount": amount, "currency": "usd",
                                       "destination": "acct_1"})  # fmt: skip


def _sdk(server: LiveServer, key: str) -> str:
    with AgentFirewall(api_key=key, base_url=server.api_url) as firewall:
        result = firewall.request_action(
            "crm.contact.update", provider="crm", parameters={"id": "c_1", "notes": "call back"}
        )
    return str(result.status)


def _traffic(server: LiveServer, count: int, **params: str) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        found = server.admin("GET", "/api/v1/traffic", params={"agent": "Bot", **params})
        rows: list[dict[str, Any]] = found.json()["traffic"]
        return rows if len(rows) >= count else None

    rows: list[dict[str, Any]] = poll(enough)
    return rows


def _shadow_counts(server: LiveServer) -> dict[tuple[str, str, str], float]:
    text = server.admin("GET", "/metrics").text
    found = re.findall(
        r'^aaf_shadow_decisions_total\{live="(\w+)",shadow="(\w+)",source="(\w+)"\} (\S+)$',
        text,
        re.M,
    )
    return {(live, shadow, source): float(n) for live, shadow, source, n in found}


def test_shadow_never_enforces_counts_divergences_and_promote_makes_it_live(
    live_server: LiveServer, gateway: RunningGateway, tf: TF, tmp_path: Path
) -> None:
    """One server and gateway for the whole story (server starts dominate the cost)."""
    _bad_input_is_a_clear_4xx(live_server, tf, tmp_path)
    key, client = _bot(live_server, gateway)
    _deny_all_denies_nothing_live(live_server, tf, client, key, tmp_path)
    _known_change_then_promote(live_server, tf, gateway, client, key, tmp_path)


def _bad_input_is_a_clear_4xx(live_server: LiveServer, tf: TF, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.yaml").write_text(DENY_ALL)
    (tmp_path / "bad" / "b.yaml").write_text("rules: 3")
    refused = tf("policy", "shadow", "add", str(tmp_path / "bad"), code=2)
    assert "policy file 2 of 2" in refused
    assert live_server.admin("GET", "/api/v1/shadow").json()["installed"] is False  # nothing
    bad = live_server.admin("POST", "/api/v1/shadow/policies", json={"document": "rules: 3"})
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("invalid policy")
    wrong = {"permissions": [{"agent": "Bot", "connector": "crm", "action_pattern": "*",
                              "decision": "maybe"}]}  # fmt: skip
    assert live_server.admin("PUT", "/api/v1/shadow/permissions", json=wrong).status_code == 422
    rule = {"agent": "Bot", "connector": "crm", "action_pattern": "*", "decision": "deny"}
    twice = live_server.admin("PUT", "/api/v1/shadow/permissions", json={"permissions": [rule] * 2})
    assert (twice.status_code, twice.json()["field"]) == (422, "permissions.1")
    nothing = live_server.admin("POST", "/api/v1/shadow/promote")
    assert nothing.status_code == 409
    assert live_server.admin("DELETE", "/api/v1/shadow/policies/nope").status_code == 404
    assert live_server.admin("GET", "/api/v1/traffic", params={"shadow": "x"}).status_code == 400


def _deny_all_denies_nothing_live(
    live_server: LiveServer, tf: TF, client: stripe.StripeClient, key: str, tmp_path: Path
) -> None:
    (tmp_path / "deny.yaml").write_text(DENY_ALL)
    added = tf("policy", "shadow", "add", str(tmp_path / "deny.yaml"))
    assert added["policies"][0]["name"] == "deny-everything"
    assert live_server.admin("GET", "/v1/policies").json()["policies"] == []  # not live

    for amount in (100, 5000):
        _transfer(client, amount)  # would raise on a deny: the live decision stands
    client.v1.customers.list()
    assert _sdk(live_server, key) == "allowed"

    rows = _traffic(live_server, 3)
    assert {r["decision"] for r in rows} == {"allow"}
    assert all(r["shadow_decision"] == "deny" and r["shadow_diverged"] for r in rows)
    assert {r["shadow_rule"] for r in rows} == {"deny-everything/all"}
    counts = _shadow_counts(live_server)
    assert counts[("allow", "deny", "proxy")] == 3
    assert counts[("allow", "deny", "sdk")] == 1

    logs = tf("logs", "--diverged", "--agent", "Bot")  # the SDK's divergence listed too
    assert sorted(r["source"] for r in logs["traffic"]) == ["proxy", "proxy", "proxy", "sdk"]
    assert tf("logs", "--agent", "Bot", text=True).count("[shadow: deny]") == 3
    assert "deny-everything" in tf("policy", "shadow", "list", text=True)
    listed = tf("policy", "shadow", "list")  # the CLI's own figure
    assert [p["name"] for p in listed["policies"]] == ["deny-everything"]
    assert listed["diverged_recent"] == 4
    assert listed["diverged_recent_by_source"] == {"proxy": 3, "sdk": 1}

    gone = live_server.admin("DELETE", "/api/v1/shadow/policies/deny-everything")
    assert gone.status_code == 204
    _transfer(client, 100)
    newest = _traffic(live_server, 4)[0]
    assert newest["shadow_decision"] is None  # nothing installed: nothing judged
    assert _traffic(live_server, 3, shadow="diverged")[0]["id"] != newest["id"]


def _known_change_then_promote(
    live_server: LiveServer,
    tf: TF,
    gateway: RunningGateway,
    client: stripe.StripeClient,
    key: str,
    tmp_path: Path,
) -> None:
    before = _shadow_counts(live_server)
    (tmp_path / "no-big.yaml").write_text(NO_BIG)
    perms = [
        {"agent": "Bot", "connector": "stripe", "action_pattern": "stripe.*", "decision": "allow"},
        {"agent": "Bot", "connector": "crm", "action_pattern": "*", "decision": "deny"},
    ]
    (tmp_path / "perms.json").write_text(json.dumps(perms))
    tf("policy", "shadow", "add", str(tmp_path / "no-big.yaml"),
       "--permissions", str(tmp_path / "perms.json"))  # fmt: skip

    for amount in (100, 5000, 20000):
        _transfer(client, amount)
    assert _sdk(live_server, key) == "allowed"
    rows = {r["input"]["p"]["amount"]: r for r in _traffic(live_server, 7)[:3]}
    assert (rows[100]["shadow_decision"], rows[100]["shadow_diverged"]) == ("allow", False)
    for amount in (5000, 20000):
        assert rows[amount]["decision"] == "allow"
        assert rows[amount]["shadow_decision"] == "deny"
        assert rows[amount]["shadow_rule"] == "no-big-transfers/big"
    counts = _shadow_counts(live_server)
    added = {k: n - before.get(k, 0) for k, n in counts.items() if n != before.get(k, 0)}
    assert added == {
        ("allow", "deny", "proxy"): 2, ("allow", "allow", "proxy"): 1, ("allow", "deny", "sdk"): 1
    }  # fmt: skip

    promoted = tf("policy", "shadow", "promote")["promoted"]
    assert [p["name"] for p in promoted["policies"]] == ["no-big-transfers"]
    assert promoted["permissions"] == 2
    assert live_server.admin("GET", "/api/v1/shadow").json()["installed"] is False
    live = live_server.admin("GET", "/v1/permissions").json()["permissions"]
    assert {(p["connector"], p["action_pattern"], p["decision"]) for p in live} == {
        ("stripe", "stripe.*", "allow"), ("crm", "*", "deny")}  # fmt: skip
    events = live_server.admin("GET", "/api/v1/audit", params={"event_type": "shadow.promoted"})
    assert any(e["event_type"] == "shadow.promoted" for e in events.json()["events"])

    def promoted_at_gateway() -> bool:
        config = gateway.gateway.config if gateway.gateway else None
        return bool(config and any(p.name == "no-big-transfers" for p in config.engine.policies))

    poll(promoted_at_gateway)
    with pytest.raises(stripe.StripeError):
        _transfer(client, 5000)
    _transfer(client, 100)
    assert _sdk(live_server, key) == "denied"
