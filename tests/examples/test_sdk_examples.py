"""The seed's Python SDK snippets (Mode A, Mode B, raw HTTP) run unchanged on a live server."""

from __future__ import annotations

import json
import threading

from tests.examples.runner import run_example
from tests.sdk.liveagent import ExecutingServer, LiveAgent

TRANSFER = {"amount": "25000", "currency": "usd", "destination": "acct_xyz"}


def test_mode_a_allowed_the_gateway_executes_the_transfer(
    agent: LiveAgent, mode_a: ExecutingServer
) -> None:
    done = run_example("sdk_mode_a.py", agent.env())
    assert done.stdout == ""
    received = mode_a.fake("stripe").received("POST", "/v1/transfers")
    assert len(received) == 1
    assert received[0].form() == TRANSFER
    assert received[0].header("authorization") == "Bearer sk_test_vaulted_stripe"


def test_mode_a_pending_waits_for_the_approval_then_executes(
    agent: LiveAgent, mode_a: ExecutingServer
) -> None:
    agent.require_approval("payment.transfer.initiate", "transfers need a human")
    approver = threading.Thread(target=agent.decide_next, args=("approve",), daemon=True)
    approver.start()
    run_example("sdk_mode_a.py", agent.env())
    approver.join(10)
    assert len(mode_a.fake("stripe").received("POST", "/v1/transfers")) == 1


def test_mode_a_pending_then_refused_executes_nothing(
    agent: LiveAgent, mode_a: ExecutingServer
) -> None:
    agent.require_approval("payment.transfer.initiate")
    approver = threading.Thread(target=agent.decide_next, args=("deny",), daemon=True)
    approver.start()
    done = run_example("sdk_mode_a.py", agent.env())
    approver.join(10)
    assert done.stdout == ""
    assert mode_a.fake("stripe").received() == []


def test_mode_a_denied_prints_the_reason(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    agent.deny("payment.transfer.initiate", "transfers are frozen")
    done = run_example("sdk_mode_a.py", agent.env())
    assert done.stdout == "Blocked: transfers are frozen\n"
    assert mode_a.fake("stripe").received() == []


def test_mode_b_the_agent_calls_stripe_itself(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    env = {
        **agent.env(),
        "STRIPE_SECRET_KEY": "sk_test_agent_own",
        "STRIPE_API_BASE": mode_a.fake("stripe").http_url,
    }
    run_example("sdk_mode_b.py", env)
    received = mode_a.fake("stripe").received("POST", "/v1/transfers")
    assert len(received) == 1
    assert received[0].form() == TRANSFER
    assert received[0].header("authorization") == "Bearer sk_test_agent_own"


def test_mode_b_denied_never_calls_stripe(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    agent.deny("payment.transfer.initiate", "transfers are frozen")
    env = {
        **agent.env(),
        "STRIPE_SECRET_KEY": "sk_test_agent_own",
        "STRIPE_API_BASE": mode_a.fake("stripe").http_url,
    }
    done = run_example("sdk_mode_b.py", env)
    assert done.stdout == "Blocked: transfers are frozen\n"
    assert mode_a.fake("stripe").received() == []


def seed_answer(text: str) -> dict[str, object]:
    """The first JSON document of an example's output: the request_action answer."""
    answer, _ = json.JSONDecoder().raw_decode(text.strip())
    assert isinstance(answer, dict)
    return answer


def test_raw_http_python(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    done = run_example("raw_http.py", agent.env())
    answer = seed_answer(done.stdout)
    assert answer["status"] == "allowed"
    assert answer["decision"]["reason"] == "No deny rules matched"  # type: ignore[index]
    assert set(answer) >= {"action_request_id", "status", "decision", "decision_token"}
    assert len(mode_a.fake("github").received("PUT", "/repos/acme/api/pulls/42/merge")) == 1
    assert '"status": "executed"' in done.stdout


def test_raw_http_curl(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    done = run_example("raw_http.sh", agent.env())
    answer = seed_answer(done.stdout)
    assert answer["status"] == "allowed"
    assert str(answer["action_request_id"]).startswith("act_")
    merged = mode_a.fake("github").received("PUT", "/repos/acme/api/pulls/42/merge")
    assert len(merged) == 1
    assert merged[0].header("authorization") == "token ghp_vaulted_github"


def test_raw_http_denied_is_not_executed(agent: LiveAgent, mode_a: ExecutingServer) -> None:
    agent.deny("github.pr.merge", "merges are frozen")
    done = run_example("raw_http.sh", agent.env())
    answer = seed_answer(done.stdout)
    assert answer["status"] == "denied"
    assert mode_a.fake("github").received() == []
