"""Through a real gateway: a request is decided as the upstream reads it (hunt H7).

One gateway in front of a raw upstream (``generic``, plain HTTP) and the fake Stripe and
GitHub (TLS tunnels). Each attack is sent as raw bytes, the decisive part last, all of a
test's requests at once; each is refused or decided on what the upstream performs, and
none reaches the upstream. A control in each test is the honest spelling, forwarded.
Every spelling, without sockets: ``tests/connectors/test_connector_naming_h7.py``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import read_response, tunnel
from tests.proxy.rawupstream import RawUpstream, ask, record_at, status_of
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

APP = "app.example.org"
FORM = "application/x-www-form-urlencoded"
VICTIM = {
    "name": "victim",
    "rules": [
        {
            "name": "not-victim",
            "decision": "deny",
            "conditions": [
                {"field": "action_spec.resource.account", "operator": "equals",
                 "value": "acct_VICTIM"},
            ],
        }
    ],
}  # fmt: skip


@dataclass(frozen=True)
class World:
    running: RunningGateway
    control: StaticControl
    raw: RawUpstream
    fakes: FakeUpstreams


@pytest.fixture(scope="module")
def world(fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    raw = RawUpstream()
    connectors = [
        connector("generic", id="c_generic", domains=[APP], credential=None),
        connector("stripe"),
        connector("github"),
    ]
    rules = [rule("http.*", "allow"), rule("http.delete", "deny"), rule("stripe.*", "allow"),
             rule("github.*", "allow"), rule("github.pr.merge", "deny")]  # fmt: skip
    snap = snapshot(rules, connectors=connectors,
                    policies=[{"name": "victim", "document": VICTIM}])  # fmt: skip
    resolve = parse_resolve([*fakes.resolve_entries(), f"{APP}:80=127.0.0.1:{raw.port}"])
    running, control = start_gateway(tmp_path_factory.mktemp("h7"), fakes, snap, resolve=resolve)
    yield World(running, control, raw, fakes)
    running.stop()
    raw.stop()


def _at_once(calls: list[Callable[[], bytes]]) -> list[bytes]:
    """Every call at once, each on its own thread; their answers in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _through_tunnel(world: World, host: str, head: str, body: bytes) -> bytes:
    with tunnel(world.running.port, host, world.running.ca_path) as tls:
        tls.sendall(head.encode() + body)
        return read_response(tls, 10)


def _record(control: StaticControl, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in list(control.traffic):
            if record["request_id"] == request_id:
                return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"no traffic record for {request_id}")


def test_method_overrides_in_any_spelling_are_refused(world: World) -> None:
    """``%5Fmethod`` (Express, Hono), ``.method`` and ``+_method`` (PHP) in the query, the
    override header with ``_`` for ``-`` (Puma, Gunicorn before 22): the upstream performs
    a DELETE, and ``http.delete`` is denied."""
    queries = ["a=1&%5Fmethod=DELETE", "a=1&.method=DELETE", "a=1&+_method=DELETE"]
    headers = ["X_HTTP_Method_Override", "x-http_method", "X_METHOD_OVERRIDE"]
    cases: list[tuple[str, tuple[str, ...]]] = [
        (f"/h7/q{i}?{q}", ()) for i, q in enumerate(queries)
    ]
    cases += [(f"/h7/h{i}", ("X-Trace: 1", f"{name}: DELETE")) for i, name in enumerate(headers)]
    cases.append(("/h7/control?a=1", ("X-Trace: 1",)))
    answers = _at_once([functools.partial(ask, world.running, APP, p, "POST", h, b"x=1")
                        for p, h in cases])  # fmt: skip
    *attacks, control = answers
    for (path, _), answer in zip(cases[:-1], attacks, strict=True):
        assert status_of(answer) == 403, (path, answer[:300])
        assert b"override" in answer, answer[:300]
    assert status_of(control) == 200
    assert world.raw.paths() == ["/h7/control?a=1"]
    assert record_at(world.control, "/h7/control")["action"] == "http.post"


def _charge(world: World, amount: int, headers: list[tuple[str, str]]) -> bytes:
    body = f"amount={amount}&currency=usd&source=tok_visa".encode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)  # the decisive last
    head = (f"POST /v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{lines}\r\n")  # fmt: skip
    return _through_tunnel(world, "api.stripe.com", head, body)


def test_stripe_is_decided_on_the_account_it_acts_in(world: World) -> None:
    """Stripe reads ``Stripe-Context`` before ``Stripe-Account``; a policy denies
    ``acct_VICTIM``. Named from the context (a path's last account) or refused when the
    lines name two accounts; never decided on ``acct_OK`` while Stripe acts in the victim."""
    cases = [
        [("Stripe-Context", "acct_VICTIM")],
        [("Stripe-Context", "acct_PLATFORM/acct_VICTIM")],
        [("Stripe-Account", "acct_OK"), ("Stripe-Context", "acct_VICTIM")],
        [("Stripe-Account", "acct_OK"), ("Stripe-Account", "acct_VICTIM")],
        [("Stripe-Context", "acct_PLATFORM/acct_OK"), ("Stripe-Account", "acct_OK")],  # control
    ]
    stripe = world.fakes["stripe"]
    before = len(stripe.received())
    answers = _at_once(
        [functools.partial(_charge, world, 7100 + i, h) for i, h in enumerate(cases)]
    )
    assert [status_of(a) for a in answers] == [403, 403, 403, 403, 200], answers
    assert b"denied by policy rule `victim/not-victim`" in answers[0]  # named the victim
    assert b"denied by policy rule `victim/not-victim`" in answers[1]
    assert b"different accounts" in answers[2]
    assert b"different accounts" in answers[3]
    (sent,) = stripe.received()[before:]
    assert b"amount=7104" in sent.body
    assert sent.header_values("stripe-context") == ["acct_PLATFORM/acct_OK"]
    record = _record(world.control, sent.header("x-tameflare-request-id") or "")
    assert (record["action"], record["decision"]) == ("stripe.charge.create", "allow")
    assert record["input"]["r"]["account"] == "acct_OK"


def _graphql(world: World, target: str, ctype: str, body: bytes) -> bytes:
    head = (f"POST {target} HTTP/1.1\r\nHost: api.github.com\r\nContent-Length: {len(body)}"
            f"\r\nConnection: close\r\nContent-Type: {ctype}\r\n\r\n")  # fmt: skip
    return _through_tunnel(world, "api.github.com", head, body)


def test_graphql_is_named_only_from_the_one_document_a_server_reads(world: World) -> None:
    """A mutation in the URL's ``query=`` (Rails and express-graphql read it first), or in
    the form a form-typed JSON body also is (Rails parses it so), is refused; GitHub's
    ``curl -d`` example (a form-typed JSON body) still passes, named as its query."""
    merge = 'mutation { mergePullRequest(input: {pullRequestId: "PR_kw1"}) { clientMutationId } }'
    harmless = json.dumps({"query": "query { viewer { login } }"}).encode()
    smuggled = json.dumps({"x": "&query=" + quote(merge) + "%23", "query": "{ viewer { id } }"})
    cases = [
        ("/graphql?query=" + quote(merge), "application/json", harmless),
        ("/graphql", FORM, smuggled.encode()),
        ("/graphql", FORM, harmless),  # control: GitHub's own curl example
    ]
    github = world.fakes["github"]
    before = len(github.received())
    answers = _at_once([functools.partial(_graphql, world, *case) for case in cases])
    assert [status_of(a) for a in answers] == [403, 403, 200], answers
    assert b"query string" in answers[0]
    assert b"also a form" in answers[1]
    (sent,) = github.received()[before:]
    assert (sent.query, sent.body) == ("", harmless)
    record = _record(world.control, sent.header("x-tameflare-request-id") or "")
    assert record["action"] == "github.graphql.query"
