"""Budgets see the action that will actually run, on SQLite and PostgreSQL.

An SDK action named by a connector's build alias is executed as another action:
``payment.transfer.initiate`` (provider ``stripe``) is sent as ``stripe.transfer.create``.
Budgets matched the spec's own type only, so a ``stripe.transfer.*`` budget refused a
$50,000 ``stripe.transfer.create`` and let the same transfer through, executed and
uncounted, under its alias. Now a budget covers an action by any name it goes by (its own,
the action its connector performs, another spelling of either such as ``http.post`` /
``generic.post``) and spends the amount the built request sends.

`ALIASES` is a table of every build alias in the connector registry with a spec that
builds: a new alias without a row here fails ``test_the_table_names_every_build_alias``.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import connector_types, get_connector
from agentfirewall_proxy.budgets import compile_budgets
from agentfirewall_server.sdkspend import covered_by, performed
from tests.fakes import FakeUpstreams
from tests.server.conftest import Harness

#: (provider, alias, resource, parameters) -> the action the connector performs
ALIASES: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any], str]] = {
    ("stripe", "payment.transfer.initiate"): (
        {"provider": "stripe"},
        {"amount": 2500, "currency": "usd", "destination": "acct_1"},
        "stripe.transfer.create",
    ),
    ("github", "github.pr.comment"): (
        {"provider": "github", "target": "acme/api"},
        {"pr_number": 3, "body": "looks good"},
        "github.issue.comment",
    ),
    ("github", "github.file.commit"): (
        {"provider": "github", "target": "acme/api"},
        {"path": "docs/a.md", "content": "hello", "message": "add a"},
        "github.file.create",
    ),
}

STRIPE_DAILY = {
    "agents": ["Finance-Bot"],
    "connector": "stripe",
    "action": "stripe.transfer.*",
    "measure": "sum",
    "currency": "usd",
    "window": "calendar_day",
    "limit": 100_000,
}


def _spec(kind: str, resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "resource": resource, "parameters": parameters}


def _act(h: Harness, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    answer = h.agent(key, "POST", "/v1/actions", json={"action_spec": spec})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _used(h: Harness, name: str) -> float:
    used: float = h.admin("GET", f"/v1/budgets/{name}").json()["state"]["used"]
    return used


def test_the_table_names_every_build_alias() -> None:
    registered = {
        (name, alias)
        for name in connector_types()
        for alias in (getattr(get_connector(name), "build_aliases", None) or {})
    }
    assert registered == set(ALIASES)


@pytest.mark.parametrize(("provider", "alias"), sorted(ALIASES))
def test_a_budget_on_the_performed_action_covers_its_alias(
    harness: Harness, provider: str, alias: str
) -> None:
    resource, parameters, runs_as = ALIASES[(provider, alias)]
    h = harness
    key = h.create_agent("Bot")
    budget = {"connector": provider, "action": runs_as, "measure": "count", "limit": 1}
    assert h.admin("PUT", "/v1/budgets/one", json=budget).status_code == 201
    spec = _spec(alias, resource, parameters)
    first = _act(h, key, spec)
    assert first["status"] == "allowed", first
    assert _used(h, "one") == 1  # reserved from the budget of the action it runs as
    second = _act(h, key, spec)
    assert second["status"] == "denied", second
    assert "budget `one` exceeded" in second["decision"]["reason"]


def test_the_sdk_alias_of_a_stripe_transfer_spends_the_transfer_budget(
    harness: Harness, fakes: FakeUpstreams
) -> None:
    """The report's case, through to execution: the amount counted is the amount sent."""
    h = harness
    stripe = fakes["stripe"]
    stripe.clear()
    connector = {"type": "stripe", "token": "sk_test_secret", "base_url": stripe.http_url}
    assert h.admin("POST", "/v1/connectors", json=connector).status_code == 201
    key = h.create_agent("Finance-Bot")
    assert h.admin("PUT", "/v1/budgets/stripe-daily", json=STRIPE_DAILY).status_code == 201
    for kind in ("stripe.transfer.create", "payment.transfer.initiate"):
        big = _act(
            h,
            key,
            _spec(
                kind,
                {"provider": "stripe"},
                {"amount": 5_000_000, "currency": "usd", "destination": "acct_1"},
            ),
        )
        assert big["status"] == "denied", (kind, big)
        assert "budget `stripe-daily` exceeded" in big["decision"]["reason"]
        assert "decision_token" not in big or not big["decision_token"]
    # a string amount: the built form sends `amount=2500`, and the budget spends 2500
    small = _act(
        h,
        key,
        _spec(
            "payment.transfer.initiate",
            {"provider": "stripe"},
            {"amount": "2500", "currency": "USD", "destination": "acct_1"},
        ),
    )
    assert small["status"] == "allowed", small
    assert _used(h, "stripe-daily") == 2500
    done = h.agent(
        key,
        "POST",
        f"/v1/actions/{small['action_request_id']}/execute",
        json={"decision_token": small["decision_token"]},
    )
    assert done.status_code == 200, done.text
    sent = [r.form().get("amount") for r in stripe.received("POST", "/v1/transfers")]
    assert sent == ["2500"]  # nothing of the refused $50,000 reached Stripe
    state = h.admin("GET", "/v1/budgets/stripe-daily").json()["state"]
    assert (state["used"], state["in_flight"]) == (2500, 0)  # settled on execute


def test_a_budget_on_the_sdk_name_still_covers_it(harness: Harness) -> None:
    """A budget written for the SDK's own name keeps covering it (no new way around)."""
    h = harness
    key = h.create_agent("Finance-Bot")
    budget = {**STRIPE_DAILY, "action": "payment.transfer.*", "limit": 3000}
    assert h.admin("PUT", "/v1/budgets/sdk-name", json=budget).status_code == 201
    spec = _spec(
        "payment.transfer.initiate",
        {"provider": "stripe"},
        {"amount": 2500, "currency": "usd", "destination": "acct_1"},
    )
    assert _act(h, key, spec)["status"] == "allowed"
    assert _act(h, key, spec)["status"] == "denied"


def test_an_action_its_connector_cannot_build_is_still_named_by_its_alias(
    harness: Harness,
) -> None:
    """Mode B (the agent performs it itself): no request is built (a fractional Stripe
    amount cannot be), yet the alias says what it is, and the amount is the spec's."""
    h = harness
    assert h.admin("PUT", "/v1/budgets/stripe-daily", json=STRIPE_DAILY).status_code == 201
    spec = _spec(
        "payment.transfer.initiate", {"provider": "stripe"}, {"amount": 99_999.5, "currency": "usd"}
    )
    names, parameters = performed(h.state, parse_action_spec(spec))
    assert "stripe.transfer.create" in names
    covered = covered_by(h.state, "Finance-Bot", "stripe", names, parameters)
    assert isinstance(covered, list)
    assert [(b.name, amount) for b, amount in covered] == [("stripe-daily", 99_999.5)]


#: (budget action glob, the gateway's action name) -> covered: the generic connector names
#: its actions `http.<method>`; rules and budgets may say `generic.<method>`
SPELLINGS = [
    ("generic.post", "http.post", True),
    ("http.post", "http.post", True),
    ("generic.*", "http.get", True),
    ("http.*", "generic.get", True),
    ("generic.get", "http.post", False),
]


@pytest.mark.parametrize(("glob", "action", "covered"), SPELLINGS)
def test_the_gateway_and_the_control_plane_agree_on_spellings(
    harness: Harness, glob: str, action: str, covered: bool
) -> None:
    """The gateway decides locally which budgets cover a request and the control plane
    checks again: both must cover the same (one covering less would spend nothing)."""
    h = harness
    body = {"connector": "generic", "action": glob, "measure": "count", "limit": 10}
    assert h.admin("PUT", "/v1/budgets/web", json=body).status_code == 201
    (scope,) = compile_budgets([{"name": "web", **body}])
    assert scope.covers("Bot", "generic", action) is covered
    found = covered_by(h.state, "Bot", "generic", action, {})
    assert isinstance(found, list)
    assert bool(found) is covered
    reserved = h.gateway(
        "POST",
        "/v1/gateway/budgets/reserve",
        json={"agent": "Bot", "connector": "generic", "action": action},
    )
    assert (reserved.json()["reservation"] is not None) is covered
