"""`agentfirewall.testing.FirewallTransport` answers a sequence of requests as the control
plane does, budgets included, and shows an action as ``GET /actions/{id}`` does.

Before, the transport had no budgets (a spent budget's action was `allowed` there, denied or
held by the server), and ``GET /actions/{id}`` echoed the spec as sent (a secret a detector
found included) with a cut-down approval, where the server shows the spec with each
detection masked and the approval whole. Each request goes to the in-process app and to
the transport; their answers must be equal but for ids, times and tokens.

Before, the transport also answered requests the server refuses, so a test passed against
it with a call that fails in production: an unknown query parameter, a wait timeout that is
no number, an execute body with an unknown field (executed!) or none, another method on a
known path (404 there, 405 here), the admin routes an agent key is refused (403). The route
table and the malformed requests below go to both: the same status and error body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from agentfirewall.testing import TEST_BASE_URL, FirewallTransport
from agentfirewall.testing._server import ROUTES
from tests.sdk.test_testing_content import AWS_KEY
from tests.server.conftest import Harness

POLICY = """\
name: guarded
rules:
  - name: no-private-keys
    conditions: [{field: content.secrets, operator: contains, value: private_key}]
    decision: deny
  - name: big-transfers
    conditions: [{field: action_spec.parameters.amount, operator: gt, value: 9000}]
    decision: require_approval
  - name: hold-when-low
    conditions:
      all:
        - {field: budget.slack-daily.remaining, operator: lt, value: 1}
        - {field: context.connector, operator: equals, value: slack}
    decision: require_approval
"""
#: created in this order on the server, declared in this order to the transport
BUDGETS: dict[str, dict[str, Any]] = {
    "slack-daily": {"agents": ["Bot"], "connector": "slack", "action": "slack.*", "limit": 2},
    "stripe-day": {"connector": "stripe", "action": "stripe.transfer.*", "measure": "sum",
                   "currency": "usd", "limit": 10000, "outcome": "require_approval"},
    "stripe-hard": {"connector": "stripe", "action": "stripe.transfer.*", "measure": "sum",
                    "currency": "usd", "limit": 30000},
}  # fmt: skip


def _slack(text: str = "hi") -> dict[str, Any]:
    return {"type": "slack.message.post", "resource": {"provider": "slack"},
            "parameters": {"channel": "C1", "text": text}}  # fmt: skip


def _transfer(amount: object, **more: object) -> dict[str, Any]:
    """A build alias: run as `stripe.transfer.create`, spending the amount Stripe gets."""
    return {"type": "payment.transfer.initiate", "resource": {"provider": "stripe"},
            "parameters": {"amount": amount, "currency": "usd", "destination": "acct_1",
                           **more}}  # fmt: skip


ORIGIN = TEST_BASE_URL.removesuffix("/api")
AGENT = "the agent's key"  # what `Both.send` sends unless told otherwise


def _same(answer: Any) -> Any:
    """An answer without what differs between two servers: ids, times, tokens."""
    text = json.dumps(answer, sort_keys=True)
    text = re.sub(r"\b(act|apv)_[0-9A-Za-z]+", r"\1_", text)
    text = re.sub(r'"\d{4}-\d\d-\d\dT[\d:.]+Z"', '"T"', text)
    text = re.sub(r'"eyJ[\w.-]+"', '"token"', text)
    return json.loads(text)


class Both:
    """The app's agent API and the transport's, one request to each."""

    def __init__(self, h: Harness, budgets: dict[str, dict[str, Any]]) -> None:
        assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
        for name, body in budgets.items():
            assert h.admin("PUT", f"/v1/budgets/{name}", json=body).status_code == 201
        self.key = h.create_agent("Bot", sdk_default="allow", rate_limit_per_minute=1_000_000)
        self.h, self.firewall = h, FirewallTransport(
            policies=[POLICY], agent="Bot", executor=lambda spec: {"ok": True},
            **({"budgets": budgets} if budgets else {}),
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {self.firewall.api_key}"}
        self.fake = httpx.Client(base_url=TEST_BASE_URL, transport=self.firewall, headers=headers)
        self.bare = httpx.Client(base_url=ORIGIN, transport=self.firewall)  # no credential
        self.ids: list[tuple[str, str]] = []  # (the app's, the transport's) of each action
        self.tokens: list[tuple[str, str]] = []  # and their decision tokens

    def call(self, method: str, path: str, **kw: Any) -> tuple[Any, Any]:
        real = self.h.agent(self.key, method, path, **kw)
        fake = self.fake.request(method, path, **kw)
        assert real.status_code == fake.status_code, (real.text, fake.text)
        return real.json(), fake.json()

    def act(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Request `spec` of both and dry-run it first: the same answers."""
        dry = self.call("POST", "/v1/actions/dry-run", json={"action_spec": spec})
        assert _same(dry[0]) == _same(dry[1])
        real, fake = self.call("POST", "/v1/actions", json={"action_spec": spec})
        assert _same(real) == _same(fake)
        assert real["status"] == dry[0]["status"]  # a dry run says what will happen
        self.ids.append((real["action_request_id"], fake["action_request_id"]))
        self.tokens.append((real["decision_token"], fake["decision_token"]))
        return dict(real)

    def send(self, method: str, path: str, credential: str | None = AGENT, **kw: Any) -> None:
        """`path` (from the root; ``{id}`` and ``{token}`` the first action's) to both, with
        the agent's key (else `credential`, or none): the same status, error and headers."""
        answers = []
        for client, ident, token, key in (
            (self.h.client, self.ids[0][0], self.tokens[0][0], self.key),
            (self.bare, self.ids[0][1], self.tokens[0][1], self.firewall.api_key),
        ):
            sent = dict(kw, follow_redirects=False)
            if "json" in kw:
                sent["json"] = json.loads(json.dumps(kw["json"]).replace("{token}", token or ""))
            headers = dict(sent.pop("headers", {}))
            if credential is not None:
                headers["Authorization"] = f"Bearer {key if credential is AGENT else credential}"
            answers.append(client.request(method, path.format(id=ident), headers=headers, **sent))
        real, fake = answers
        label = f"{method} {path} {kw}"
        assert real.status_code == fake.status_code, (label, real.text, fake.text)
        for name in ("Allow", "WWW-Authenticate"):
            assert real.headers.get(name) == fake.headers.get(name), label
        moved = [httpx.URL(answer.headers.get("Location", "")).path for answer in answers]
        assert _same(moved[0]) == _same(moved[1]), label
        if real.status_code >= 400 and method != "HEAD":
            assert _same(real.json()) == _same(fake.json()), label

    def get(self, index: int = -1) -> dict[str, Any]:
        """``GET /actions/{id}`` of both, the same; the app's."""
        real_id, fake_id = self.ids[index]
        real = self.h.agent(self.key, "GET", f"/v1/actions/{real_id}").json()
        fake = self.fake.get(f"/v1/actions/{fake_id}").json()
        for shown in (real, fake):  # who decided: an admin token there, a test here
            if shown["approval"] is not None:
                shown["approval"]["decided_by"] = shown["approval"]["decided_by"] and "someone"
        assert _same(real) == _same(fake)
        return dict(real)

    def decide(self, verb: str, index: int = -1) -> None:
        """Approve or deny the held action of both."""
        real = self.get(index)
        path = f"/v1/approvals/{real['approval']['id']}/{verb}"
        assert self.h.admin("POST", path).status_code == 200
        decide: Callable[[str], None] = getattr(self.firewall, verb)
        decide(self.ids[index][1])


def _status(answer: dict[str, Any]) -> tuple[str, str]:
    return answer["status"], answer["decision"]["reason"]


def test_budgets_decide_in_the_transport_as_on_the_server(harness: Harness) -> None:
    both = Both(harness, BUDGETS)
    assert both.act(_slack())["status"] == "allowed"
    assert both.act(_slack())["status"] == "allowed"  # the last one
    spent = "budget `slack-daily` exceeded: 2 of 2 requests used this day, this request needs 1"
    assert _status(both.act(_slack())) == ("denied", spent)  # `budget.*` read too: held first
    assert both.act(_transfer("6000"))["status"] == "allowed"  # spends 6000 of 10000
    held = both.act(_transfer(5000))  # past the `require_approval` budget: held, reserved
    assert _status(held)[1].startswith("budget `stripe-day` exceeded: 6000 of 10000 usd")
    both.decide("deny")  # released
    assert both.act(_transfer(4000))["status"] == "allowed"  # fits again
    big = both.act(_transfer(9500))  # held by a rule, reserved past the budget as it waits
    assert big["decision"]["matched_rules"] == ["guarded/big-transfers"]
    both.decide("approve")  # counted from now on
    assert both.get()["status"] == "allowed"
    refused = both.act(_transfer(15000))  # past the `deny` budget, whatever else
    assert _status(refused)[1].startswith("budget `stripe-hard` exceeded: 19500 of 30000")
    unnamed = _transfer(10)
    del unnamed["parameters"]["currency"]
    assert _status(both.act(unnamed)) == (
        "denied",
        "budget `stripe-day`: the request names no currency",
    )


def test_get_action_shows_the_spec_and_the_approval_as_the_server_does(
    harness: Harness,
) -> None:
    both = Both(harness, {})
    both.act(_slack(f"id {AWS_KEY}"))  # a detector fired; no rule refuses it
    assert both.get()["action_spec"]["parameters"]["text"] == "id [REDACTED:aws_access_key]"
    both.act(_slack("hello"))
    assert both.get()["action_spec"] == {**_slack("hello"), "risk_hints": {}}  # as sent
    both.act(_transfer(20000, note=f"key {AWS_KEY}"))
    held = both.get()
    assert held["approval"]["action_spec"]["parameters"]["note"] == "key [REDACTED:aws_access_key]"
    assert held["approval"]["status"] == "pending"
    both.decide("approve")
    assert both.get()["approval"]["status"] == "approved"
    for shown in (both.get(0), both.get(2)):
        assert AWS_KEY not in json.dumps(shown)


def _served(h: Harness) -> list[tuple[str, frozenset[str]]]:
    """The app's routes an agent key reaches: the agent API and the JWKS, in its order."""
    return [
        (route.path, frozenset(route.methods or ()))
        for route in h.client.app.routes
        if isinstance(route, Route)
        and (route.path.startswith("/api/v1/actions") or route.path == "/.well-known/jwks.json")
    ]


def test_every_method_on_every_path_is_routed_as_the_server_routes_it(harness: Harness) -> None:
    both = Both(harness, {})
    both.act(_slack())
    served = _served(harness)
    assert [(path, methods) for path, methods, _ in ROUTES] == served  # the same table
    near = [
        *("/api/v1/actions/", "/api/v1/actions/{id}/", "/api/v1/actions//wait"),
        *("/api/v1/nope", "/api/v1/actions/{id}/nope", "/v1/actions"),
        "/api/v1/actions/stuck/execute",
    ]
    for path in [path for path, _ in served] + near:
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            both.send(method, path)
        both.send("GET", path, credential=None)
        both.send("POST", path, credential="aaf_live_" + "1" * 32)


WAIT, EXECUTE = "/api/v1/actions/{id}/wait", "/api/v1/actions/{id}/execute"
LONG_KEY = {"Idempotency-Key": "k" * 201}
#: what the review found the transport accepting, and their neighbours
MALFORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/actions/{id}", {"params": {"verbose": "1"}}),
    ("GET", WAIT, {"params": {"timeout": "abc"}}),
    ("GET", WAIT, {"params": {"timeout": "nan"}}),
    ("GET", WAIT, {"params": {"timeout": "5", "foo": "1"}}),
    ("GET", WAIT, {"params": {"timeot": "1"}}),  # did you mean `timeout`?
    ("GET", WAIT, {"params": [("timeout", "abc"), ("timeout", "1")]}),  # the last one read
    ("GET", WAIT, {"params": [("timeout", "1"), ("timeout", "abc")]}),
    ("GET", WAIT, {"params": {"timeout": "1\x00"}}),
    ("GET", "/api/v1/actions/stuck", {"params": {"x": "1"}}),
    ("POST", EXECUTE, {"json": {"decision_token": "{token}", "parameters": {"text": "other"}}}),
    ("POST", EXECUTE, {}),
    ("POST", EXECUTE, {"content": b"{"}),
    ("POST", EXECUTE, {"content": b'{"decision_token": NaN}'}),
    ("POST", EXECUTE, {"json": []}),
    ("POST", EXECUTE, {"json": {"decision_token": 5}}),
    ("POST", EXECUTE, {"json": {"decision_token": ""}}),
    ("POST", EXECUTE, {"json": {"decision_token": "a\x00b"}}),
    ("POST", EXECUTE, {"json": {"decision_tokn": "{token}"}}),  # did you mean?
    ("POST", "/api/v1/actions", {}),
    ("POST", "/api/v1/actions", {"json": {"action_spec": _slack(), "dry_run": True}}),
    ("POST", "/api/v1/actions", {"json": {"action_spec": _slack()}, "headers": LONG_KEY}),
    ("POST", "/api/v1/actions/dry-run", {"content": b"[1"}),
    ("POST", "/api/v1/actions/dry-run", {"json": {"action_spec": {**_slack(), "type": 5}}}),
    ("DELETE", "/api/v1/actions/{id}", {}),
]


def test_malformed_requests_are_refused_as_the_server_refuses_them(harness: Harness) -> None:
    both = Both(harness, {})
    both.act(_slack())
    for method, path, kw in MALFORMED:
        both.send(method, path, **kw)
    assert both.get(0)["executed"] is False  # (an unknown field is not executed)


_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False)
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = st.sampled_from(["decision_token", "decision_tokn", "action_spec", "actionspec", "x"])
_OBJECTS = st.dictionaries(_FIELDS | st.text(max_size=6), _JSON | st.just(_slack()), max_size=3)
_BODIES = (
    st.none()
    | st.sampled_from([b" ", b"{", b"[1", b'"x"', b"\xff", b'{"decision_token": NaN}'])
    | (_JSON | _OBJECTS).map(lambda value: json.dumps(value).encode())
)
_NAMES = st.sampled_from(["timeout", "timeot", "Timeout", "verbose"]) | st.text(max_size=6)
_VALUES = st.sampled_from(["5", "-1", "1e9", "nan", "inf", "abc", " 1 ", "1_0"]) | st.text(
    max_size=6
)
_CALLS = st.sampled_from([("GET", "/api/v1/actions/{id}"), ("GET", WAIT), ("POST", EXECUTE),
                          ("GET", "/api/v1/actions/stuck"), ("POST", "/api/v1/actions"),
                          ("POST", "/api/v1/actions/dry-run")])  # fmt: skip


def test_generated_queries_and_bodies_get_the_servers_answer(harness: Harness) -> None:
    both = Both(harness, {})
    both.act(_slack())

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(call=_CALLS, query=st.lists(st.tuples(_NAMES, _VALUES), max_size=3), body=_BODIES)
    def same_answer(
        call: tuple[str, str], query: list[tuple[str, str]], body: bytes | None
    ) -> None:
        both.send(*call, params=query, content=body)

    same_answer()
    assert both.get(0)["executed"] is False
