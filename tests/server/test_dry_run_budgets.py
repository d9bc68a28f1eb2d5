"""Dry-run and the dashboard's sandbox say what budgets and grants will do, on SQLite and
PostgreSQL.

`request_action` applies budgets and grants over the rules' decision (``sdkspend.Spend``);
dry-run and the sandbox read ``budget.*`` conditions only, so with a budget spent they
answered `allowed` to an action `request_action` then denied (or held), and `held` where a
grant lets it through. Now both apply the same `Spend` without writing: the budgets' usage
and the grants are read, nothing is reserved, no grant use is spent, nothing is audited,
and a ``budgets`` step names the budget with its numbers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agentfirewall.actions import parse_action_spec
from tests.server.conftest import Harness

SPEC = {"type": "slack.message.post", "resource": {"provider": "slack"},
        "parameters": {"channel": "C1", "text": "hi"}}  # fmt: skip
LEFT = "budget `slack-daily`: 1 of 2 requests used this day, this request needs 1"
SPENT = "budget `slack-daily` exceeded: 2 of 2 requests used this day, this request needs 1"


def _budget(h: Harness, **fields: Any) -> None:
    body = {"agents": ["Bot"], "connector": "slack", "action": "slack.*", "measure": "count",
            "limit": 2, **fields}  # fmt: skip
    assert h.admin("PUT", "/v1/budgets/slack-daily", json=body).status_code == 201


def _bot(h: Harness, decision: str = "allow", **fields: Any) -> str:
    rule = {"agent": "Bot", "connector": "slack", "action_pattern": "slack.*",
            "decision": decision}  # fmt: skip
    key = h.create_agent("Bot", **fields)
    assert h.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    return key


def _act(h: Harness, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
    return answer


def _dry(h: Harness, key: str) -> dict[str, Any]:
    answer = h.agent(key, "POST", "/v1/actions/dry-run", json={"action_spec": SPEC})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _sandbox(h: Harness, mode: str) -> dict[str, Any]:
    body = {"agent": "Bot", "action_spec": SPEC, "mode": mode}
    answer = h.admin("POST", "/dashboard/sandbox/evaluate", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _budget_step(answer: dict[str, Any]) -> dict[str, str]:
    steps = [s for s in answer["explanation"] if s["step"] == "budgets"]
    assert len(steps) == 1, answer["explanation"]
    return steps[0]


def _used(h: Harness) -> tuple[float, int]:
    state = h.admin("GET", "/v1/budgets/slack-daily").json()["state"]
    return state["used"], state["requests"]


def test_dry_run_and_the_sandbox_say_what_a_spent_budget_does(harness: Harness) -> None:
    h = harness
    key = _bot(h)
    _budget(h)
    assert _act(h, key)["status"] == "allowed"  # one of two left
    audited = h.audit_count()
    for _ in range(5):  # reads the budget, reserves nothing
        dry = _dry(h, key)
        assert dry["status"] == "allowed"
        assert _budget_step(dry) == {"step": "budgets", "result": "allow", "detail": LEFT}
        assert _sandbox(h, "sdk") == dry
        assert _sandbox(h, "proxy")["status"] == "allowed"
    assert (h.audit_count(), _used(h)) == (audited, (1, 1))
    assert _act(h, key)["status"] == "allowed"  # the last one: the dry runs spent nothing
    for answer in (_dry(h, key), _sandbox(h, "sdk"), _sandbox(h, "proxy")):
        assert answer["status"] == "denied"
        assert answer["decision"]["reason"] == SPENT
        assert _budget_step(answer) == {"step": "budgets", "result": "deny", "detail": SPENT}
    refused = _act(h, key)  # as request_action answers
    assert (refused["status"], refused["decision"]["reason"]) == ("denied", SPENT)
    assert _used(h) == (2, 2)


def test_a_monitored_agent_is_refused_by_a_spent_budget_in_both(harness: Harness) -> None:
    """A budget is no rule: `monitor` lets rules' denials through, not a spent budget's."""
    h = harness
    key = _bot(h, "deny", enforcement_level="monitor")
    _budget(h, limit=1)
    assert _act(h, key)["status"] == "allowed"  # would_deny: allowed, and it spends
    assert _dry(h, key)["status"] == _act(h, key)["status"] == "denied"


def test_a_spent_require_approval_budget_holds_in_dry_run(harness: Harness) -> None:
    h = harness
    key = _bot(h)
    _budget(h, outcome="require_approval", limit=1)
    assert _act(h, key)["status"] == "allowed"
    dry = _dry(h, key)
    assert dry["status"] == "pending_approval"
    reason = "budget `slack-daily` exceeded: 1 of 1 requests used this day, this request needs 1"
    assert dry["decision"]["reason"] == reason
    assert _budget_step(dry)["detail"] == f"{reason}\nno grant covers it: held for a person"
    assert _sandbox(h, "sdk") == dry
    assert _sandbox(h, "proxy")["status"] == "pending_approval"
    assert h.admin("GET", "/v1/approvals").json()["approvals"] == []  # none asked for
    held = _act(h, key)
    assert (held["status"], held["decision"]["reason"]) == ("pending_approval", reason)


def test_a_grant_lets_a_held_action_through_in_dry_run_without_being_used(
    harness: Harness,
) -> None:
    h = harness
    key = _bot(h, "require_approval")
    held = _act(h, key)
    assert held["status"] == "pending_approval"
    assert _budget_step(_dry(h, key))["detail"] == "no grant covers it: held for a person"
    body = {"grant": {"max_uses": 1}}
    answer = h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve", json=body)
    grant = answer.json()["grant"]
    approved = f"approved by grant {grant['id']}"
    for _ in range(3):
        dry = _dry(h, key)
        assert (dry["status"], dry["decision"]["reason"]) == ("allowed", approved)
        assert _budget_step(dry) == {"step": "budgets", "result": "allow", "detail": approved}
        assert _sandbox(h, "sdk") == dry
        assert _sandbox(h, "proxy")["decision"]["reason"] == approved  # made on an SDK action
    assert h.admin("GET", f"/v1/grants/{grant['id']}").json()["uses"] == 0
    assert _act(h, key)["decision"]["reason"] == approved  # its one use
    assert _dry(h, key)["status"] == "pending_approval"  # used up


def test_a_grant_never_passes_a_spent_deny_budget_in_dry_run(harness: Harness) -> None:
    h = harness
    key = _bot(h, "require_approval")
    held = _act(h, key)
    body = {"grant": {"max_uses": 5}}
    assert h.admin("POST", f"/v1/approvals/{held['approval']['id']}/approve",
                   json=body).status_code == 200  # fmt: skip
    _budget(h, limit=1)
    assert _act(h, key)["status"] == "allowed"  # by the grant, spending the budget's one
    reason = "budget `slack-daily` exceeded: 1 of 1 requests used this day, this request needs 1"
    dry = _dry(h, key)
    assert (dry["status"], dry["decision"]["reason"]) == ("denied", reason)
    refused = _act(h, key)
    assert (refused["status"], refused["decision"]["reason"]) == ("denied", reason)


def test_the_sandbox_reads_the_grants_bound_to_the_host_its_url_names(harness: Harness) -> None:
    """A grant made on a held gateway request covers requests to that host only. The
    sandbox's proxy mode knew no host, so it never read such a grant: a request the gateway
    lets through was shown held. With `url`, it answers as the gateway does, host by host
    (a `url` in SDK mode, or one that is no http(s) URL, is refused)."""
    h = harness
    _bot(h, "require_approval")
    digests = iter(range(100))

    def gateway(host: str) -> str:  # a held gateway request to `host`: its approval's status
        digest = hashlib.sha256(f"{host}{next(digests)}".encode()).hexdigest()  # none reused
        request = {"method": "POST", "host": host, "path": "/api/chat.postMessage",
                   "digest": digest}  # fmt: skip
        body = {"agent": "Bot", "connector": "slack", "action_spec": SPEC, "reason": "held",
                "action_hash": parse_action_spec(SPEC).action_hash, "request": request}  # fmt: skip
        answer = h.gateway("POST", "/v1/gateway/approvals", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["status"])

    def sandbox(**extra: str) -> dict[str, Any]:
        body = {"agent": "Bot", "action_spec": SPEC, "mode": "proxy", **extra}
        answer = h.admin("POST", "/dashboard/sandbox/evaluate", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert gateway("slack.com") == "pending"
    first = h.admin("GET", "/v1/approvals").json()["approvals"][0]
    made = h.admin("POST", f"/v1/approvals/{first['id']}/approve",
                   json={"grant": {"for_seconds": 3600}}).json()["grant"]  # fmt: skip
    assert made["host"] == "slack.com"
    assert sandbox()["status"] == "pending_approval"  # no host: only SDK grants are read
    for host in ("slack.com", "Slack.COM.", "hooks.slack.com", "evil.example"):
        answer = sandbox(url=f"https://{host}/api/chat.postMessage")
        through = answer["status"] == "allowed"
        assert through == (gateway(host) == "approved"), host  # the same, host by host
        assert through == (host.lower().rstrip(".") == "slack.com"), host
        if through:
            assert answer["decision"]["reason"] == f"approved by grant {made['id']}"
    assert h.admin("GET", f"/v1/grants/{made['id']}").json()["uses"] == 2  # the gateway's
    for mode, url in (("sdk", "https://slack.com/x"), ("proxy", "ftp://slack.com/x")):
        body = {"agent": "Bot", "action_spec": SPEC, "mode": mode, "url": url}
        refused = h.admin("POST", "/dashboard/sandbox/evaluate", json=body)
        assert (refused.status_code, refused.json()["field"]) == (422, "url"), refused.text
