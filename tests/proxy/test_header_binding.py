"""One approval, one request (DESIGN.md section 7, guarantee 3): the request headers that
change what the upstream does are bound to the approval (``pipeline.bind_request``, each
connector's ``bound_headers``), and shown to its approver.

The review's attack: an S3 PutObject of a private file is held and approved, then sent
again, same method, path and body, with ``x-amz-acl: public-read`` and a grant to another
account: it must be held anew, never signed and sent on that approval. The same with
another ``Stripe-Context``. Then every variant of a bound header (absent, present,
changed, repeated, reordered, in another case), generated, against the tables below; and
the real clients (boto3, stripe-python, openai, slack_sdk) calling again after an approval
still pass on it (what they change per call is not bound).
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import get_connector
from agentfirewall.content.shown import shown_headers
from agentfirewall_proxy.cli.approvals_cmd import bound_fields
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.entries import ConnectorEntry
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.pipeline import Flow, Refusal, bind_request
from agentfirewall_server.routes.gateway import RequestLine, shown_request
from tests.fakes.ai import openai
from tests.fakes.apis import slack, stripe
from tests.fakes.aws import REGION, aws
from tests.fakes.base import FakeUpstream, FakeUpstreams, RecordedRequest
from tests.fuzzscale import examples
from tests.proxy.support import (
    KEY,
    PLACEHOLDER,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

M = "[REDACTED:generic_secret]"
#: Per connector: headers an approval binds, and headers it does not (what honest retries
#: change, what the gateway replaces). Extend them when a connector declares more.
BOUND = {
    "aws": ["x-amz-acl", "x-amz-grant-full-control", "x-amz-meta-owner", "x-amz-tagging",
            "x-amz-server-side-encryption", "x-amz-copy-source", "x-amz-target",
            "x-amz-expected-bucket-owner", "cache-control", "content-disposition",
            "if-none-match", "if-match"],
    "stripe": ["stripe-account", "stripe-context", "stripe-version"],
    "openai": ["openai-organization", "openai-project", "openai-beta"],
    "anthropic": ["anthropic-version", "anthropic-beta"],
    "github": ["x-github-api-version"],
    "sendgrid": ["on-behalf-of"],
    "mcp": ["mcp-session-id", "mcp-protocol-version"],
    "slack": [],
    "generic": ["x-custom", "if-match", "prefer", "x-hub-signature", "range", "x-api-version",
                "x-amz-acl", "x-amz-content-sha256", "x-goog-user-project"],
    "webhook": ["x-custom", "x-webhook-signature"],
}  # fmt: skip
UNBOUND = {
    "aws": ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "x-amz-user-agent",
            "x-amz-mfa", "amz-sdk-invocation-id", "amz-sdk-request", "x-amzn-trace-id",
            "user-agent", "authorization", "expect", "content-length"],
    "stripe": ["idempotency-key", "x-stripe-client-telemetry", "x-stripe-client-user-agent",
               "user-agent", "authorization", "accept"],
    "openai": ["x-stainless-retry-count", "x-stainless-read-timeout", "x-stainless-os",
               "user-agent", "authorization"],
    "anthropic": ["x-stainless-retry-count", "x-api-key", "user-agent"],
    "github": ["accept", "user-agent", "authorization"],
    "sendgrid": ["user-agent", "authorization"],
    "mcp": ["accept", "authorization", "last-event-id"],
    "slack": ["x-custom", "user-agent", "authorization"],
    "generic": ["user-agent", "accept", "accept-encoding", "accept-language", "date",
                "traceparent", "tracestate", "baggage", "x-request-id", "x-amzn-trace-id",
                "x-b3-traceid", "idempotency-key", "x-stainless-retry-count",
                "amz-sdk-request", "amz-sdk-invocation-id", "x-stripe-client-telemetry",
                "authorization", "proxy-authorization", "cookie", "connection",
                "content-length", "host", "x-tameflare-agent", "sec-websocket-key",
                # signing times, session tokens, per-call ids and tracing of other SDKs
                "x-amz-date", "x-amz-security-token", "amz-sdk-retry", "x-ms-date",
                "x-ms-client-request-id", "x-goog-date", "x-goog-api-client", "newrelic",
                "x-newrelic-transaction", "elastic-apm-traceparent", "uber-trace-id",
                "x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority",
                "x-datadog-origin", "x-datadog-tags"],
    "webhook": ["user-agent", "traceparent", "authorization", "cookie"],
}  # fmt: skip
_VALUES = ["a", "b", "public-read", "", "1:x;2:y"]


def _flow(kind: str) -> Flow:
    impl = get_connector(kind)
    names = frozenset(n.encode() for n in impl.auth_header_names)
    entry = ConnectorEntry(id=f"c_{kind}", type=kind, name=kind, domains=(), impl=impl,
                           base_url=None, has_credential=True,
                           auth_headers=((b"Authorization", b"Bearer real"),),
                           auth_header_names=names, body_limit=0)  # fmt: skip
    return Flow(request_id="r1", method="PUT", scheme="https", host="h.example", port=443,
                path="/k", connector=entry)  # fmt: skip


def _head(headers: list[tuple[str, str]]) -> Head:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    return Head(method="PUT", target=b"/k", headers=raw, version="1.1", keep_alive=True,
                chunked=False, content_length=None, names=[n.lower() for n, _ in raw])  # fmt: skip


def _bound(kind: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return bind_request(_flow(kind), _head(headers), b"internal quarterly numbers")


def _digest(kind: str, headers: list[tuple[str, str]]) -> str:
    return str(_bound(kind, headers)["digest"])


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in BOUND.items() for n in names])
def test_a_bound_header_added_or_changed_is_another_request(kind: str, name: str) -> None:
    base = [("User-Agent", "client/1")]
    without = _digest(kind, base)
    once = _digest(kind, [*base, (name, "a")])
    assert len({without, once, _digest(kind, [*base, (name, "b")])}) == 3
    assert _digest(kind, [*base, (name.upper(), "a")]) == once  # names: any case
    assert _digest(kind, [*base, (name, "a"), (name, "a")]) != once  # repeated


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in UNBOUND.items() for n in names])
def test_what_an_honest_retry_changes_is_not_bound(kind: str, name: str) -> None:
    bound = [(BOUND[kind][0], "x")] if BOUND[kind] else []
    assert _digest(kind, [*bound, (name, "a")]) == _digest(kind, bound)
    assert "headers" not in _bound(kind, [(name, "a")])


def _canonical(kind: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What the tables say is bound: bound names in lower case, sorted, repeated ones in
    the order sent."""
    bound = [(n.lower(), v) for n, v in headers if n.lower() in BOUND[kind]]
    return sorted(bound, key=lambda pair: pair[0])


_CASES = (str.lower, str.upper, str.title)


@st.composite
def _headers_and_variant(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], list[Any]]:
    kind = draw(st.sampled_from(sorted(BOUND)))
    names = st.sampled_from(BOUND[kind] + UNBOUND[kind])
    header = st.tuples(names, st.sampled_from(_VALUES))
    headers = draw(st.lists(header, max_size=6))
    edits = draw(st.lists(st.tuples(st.sampled_from(["case", "move", "drop", "add", "set"]),
                                    st.integers(0, 10), st.integers(0, 10), header),
                          max_size=4))  # fmt: skip
    return kind, headers, edits


def _edited(headers: list[tuple[str, str]], edits: list[Any]) -> list[tuple[str, str]]:
    """`headers` after `edits`: a name's case changed, one moved, dropped, added or set."""
    out = list(headers)
    for op, i, j, (name, value) in edits:
        if op == "add":
            out.insert(i % (len(out) + 1), (name, value))
        elif not out:
            continue
        elif op == "case":
            out[i % len(out)] = (_CASES[j % 3](out[i % len(out)][0]), out[i % len(out)][1])
        elif op == "move":
            out.insert(j % len(out), out.pop(i % len(out)))
        elif op == "drop":
            out.pop(i % len(out))
        else:
            out[i % len(out)] = (out[i % len(out)][0], value)
    return out


@settings(max_examples=examples(100), deadline=None)
@given(_headers_and_variant())
def test_two_requests_share_a_digest_exactly_when_their_bound_headers_agree(
    case: tuple[str, list[tuple[str, str]], list[Any]],
) -> None:
    """Absent at the hold and present at the retry (or the other way round), changed,
    repeated, its repeats reordered: another digest; a name in another case, headers of
    different names reordered, anything unbound changed: the same."""
    kind, headers, edits = case
    other = _edited(headers, edits)
    same = _canonical(kind, headers) == _canonical(kind, other)
    assert (_digest(kind, headers) == _digest(kind, other)) == same


def test_the_approver_sees_the_bound_headers_never_a_credential() -> None:
    token = "ghp_" + "R8kq2ZbX7pLmW4nV9cT3yJ6hF1dS5gA0eU2i"
    shown = _bound("aws", [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAPLACEHOLDER/x, Signature=00"),
        ("x-amz-acl", "public-read"), ("X-Amz-Grant-Full-Control", 'id="attacker"'),
        ("x-amz-server-side-encryption-customer-key", "c2VjcmV0LWtleS0xMjM0NTY3ODkwMTIzNDU2"),
        ("x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:us-west-2:1:key/k"),
        ("x-amz-meta-note", f"deploy with {token}"), ("x-amz-date", "20260101T000000Z"),
    ])["headers"]  # fmt: skip
    assert shown == [
        ("x-amz-acl", "public-read"),
        ("x-amz-grant-full-control", 'id="attacker"'),
        ("x-amz-meta-note", "deploy with [REDACTED:github_token]"),
        ("x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:us-west-2:1:key/k"),
        ("x-amz-server-side-encryption-customer-key", M),
    ]
    session = _bound("mcp", [("Mcp-Session-Id", "7f3c0a9e-session")])["headers"]
    assert session == [("mcp-session-id", M)]
    long = [("x-custom", "v" * 5000), ("x-" + "n" * 300, "\x1b[2Jx")]
    once = shown_headers(long, declared=True)
    assert [(len(n), len(v)) for n, v in once] == [(8, 512), (100, 5)]
    assert once[1][1] == "?[2Jx"  # no control character reaches a terminal
    assert shown_headers(once, declared=True) == once  # the control plane masks again
    lines = dict(bound_fields({"digest": "d" * 64, "headers": [list(p) for p in shown]}))
    assert "x-amz-acl: public-read\n" in str(lines["headers"])  # `tf approvals show`


def test_more_bound_headers_than_an_approver_can_be_shown_are_refused() -> None:
    headers = [(f"x-h{n}", "v") for n in range(101)]
    with pytest.raises(Refusal) as refused:
        _bound("generic", headers)
    assert refused.value.status == 431
    assert len(_bound("generic", headers[:100])["headers"]) == 100


@pytest.mark.parametrize(
    ("kind", "name"),
    [(k, n) for k in BOUND for n in ["content-type", "content-encoding", *BOUND[k][:1]]],
)
def test_every_line_of_a_repeated_header_is_bound(kind: str, name: str) -> None:
    """The review's probe: an approval for a body sent ``Content-Encoding: identity`` (a blob
    to its upstream) spent on the same bytes with a second ``Content-Encoding: gzip`` line
    (the upstream inflates them into another request). Each line is bound, in order."""
    one = _digest(kind, [(name, "identity")])
    two = _digest(kind, [(name, "identity"), (name.title(), "gzip")])
    swapped = _digest(kind, [(name, "gzip"), (name, "identity")])
    joined = _digest(kind, [(name, "identity, gzip")])
    assert len({one, two, swapped, joined}) == 4
    assert _digest(kind, [(name.upper(), "identity")]) == one


def test_the_approver_sees_every_content_type_and_encoding_line() -> None:
    shown = _bound("generic", [("Content-Type", "text/plain"), ("Content-Encoding", "identity"),
                               ("content-type", "application/json"),
                               ("content-encoding", "gzip")])  # fmt: skip
    assert (shown["content_type"], shown["content_encoding"]) == (
        "text/plain, application/json",
        "identity, gzip",
    )


#: Credentials in vendor headers whose names do not say so (the review's probe), and other
#: headers of an API no connector names: never shown, only their length.
HIDDEN = [
    ("X-Honeycomb-Team", "hcaik_01j8q3w5x7z9b2c4d6f8g0h2j4k6m8n0p2r4t6v8x0z2b4d6f8g0h2"),
    ("X-JFrog-Art-Api", "AKCp8jQ7bNvXk2YqZr5sT9uVwXy3zA4bC6dE8fG1hJ2kL3mN4pQ5rS6tU7vW8xY9z"),
    ("X-Ovh-Consumer", "MtSwSrPpNjqfVSmJhLbPyr2i45lSwPU1"),
    ("X-Upstream-Pw", "hunter2-Very-Long-Prod-Passw0rd"),
    ("X-Api-Key", "short"),
    ("X-Tenant", "acme"),
    ("If-Match", '"33a64df551425fcc55e4d42a148795d9f25f89d4"'),  # plain, but random-looking
    ("Prefer", "[REDACTED:x] hunter2-Very-Long-Prod-Passw0rd"),  # not a mask
]
#: Headers HTTP defines and no credential is: shown.
PLAIN = [("If-None-Match", "*"), ("Prefer", "return=minimal"), ("Range", "bytes=0-99"),
         ("Destination", "https://dav.example.org/b/c"), ("Cache-Control", "no-cache")]  # fmt: skip


@pytest.mark.parametrize("kind", ["generic", "webhook"])
def test_an_unknown_apis_headers_are_shown_only_when_http_says_they_are_plain(kind: str) -> None:
    """On a connector that binds every header, a value is shown only for a header HTTP
    defines as plain and when it does not look random; any other is a mask and its length.
    The control plane shows the same, whether the gateway masked them or (an older one)
    sent them as they were, and keeps a connector's declared headers in clear."""
    shown = _bound(kind, [*HIDDEN, *PLAIN])["headers"]
    hidden = [(n.lower(), f"{M} (length {len(v)})") for n, v in HIDDEN]
    expected = sorted([*hidden, *[(n.lower(), v) for n, v in PLAIN]], key=lambda pair: pair[0])
    assert shown == expected
    line = {"method": "PUT", "host": "h.example", "path": "/k"}
    for sent in (shown, [(n.lower(), v) for n, v in [*HIDDEN, *PLAIN]]):
        stored = shown_request(RequestLine(**line, headers=sent), kind)["headers"]
        assert sorted(stored, key=lambda pair: pair[0]) == expected
    declared = [("stripe-account", "acct_1032D82eZvKYlo2C"), ("stripe-version", "2024-06-20")]
    assert _bound("stripe", declared)["headers"] == declared  # what its approver must see
    assert shown_request(RequestLine(**line, headers=declared), "stripe")["headers"] == declared
    unknown = shown_request(RequestLine(**line, headers=declared), "no-such-type")["headers"]
    assert unknown == [(n, f"{M} (length {len(v)})") for n, v in declared]  # a type unknown here


def test_boto3_calling_again_through_the_generic_connector_binds_the_same_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An S3-compatible store behind the generic connector: boto3 signs each attempt anew
    (``x-amz-date``, a second later here), with a new invocation id; the same call made again
    is the same request to its approval."""
    boto3 = pytest.importorskip("boto3")
    import botocore.auth
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    class Empty:
        def stream(self, **_: object) -> Iterator[bytes]:
            yield b""

    sent: list[tuple[list[tuple[str, str]], bytes]] = []

    def answer(request: Any, **_: object) -> AWSResponse:
        headers = [
            (k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
        ]
        sent.append((headers, request.body.read()))
        return AWSResponse(request.url, 200, {}, Empty())

    seconds = iter(range(60))
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda *_, **__: datetime(2026, 1, 1, 0, 0, next(seconds)))  # fmt: skip
    s3 = boto3.client("s3", endpoint_url="https://store.example", region_name="us-east-1",
                      aws_access_key_id="AKIAAGENTPLACEHOLDER", aws_secret_access_key="x",
                      aws_session_token="session",
                      config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    s3.meta.events.register("before-send", answer)
    for _ in range(2):
        s3.put_object(Bucket="b", Key="k.txt", Body=b"hello", ACL="private")
    (first, body), (again, same) = sent
    assert first != again  # (signed anew, another invocation id)
    assert body == same
    digests = {bind_request(_flow("generic"), _head(h), b)["digest"] for h, b in sent}
    assert len(digests) == 1


# -- through the gateway --------------------------------------------------------------

KEY_ID, SECRET = "AKIAGATEWAYTEST00000", "gateway/test/secret/0123456789abcdef"
S3 = "https://demo-bucket.s3.us-west-2.amazonaws.com/reports/q3.txt"
SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIATAMEFLAREPLACEHOLDER/20260101/"
                           "us-west-2/s3/aws4_request, SignedHeaders=host, Signature=00",
          "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}  # fmt: skip
TRANSFERS = "https://api.stripe.com/v1/transfers"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class World:
    fakes: FakeUpstreams
    running: RunningGateway
    control: StaticControl
    bundle: Path

    def client(self, timeout: float) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.bundle))
        return httpx.Client(proxy=self.running.proxy_url(KEY), verify=verify, timeout=timeout,
                            trust_env=False)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fakes = FakeUpstreams([aws(), stripe(), openai(), slack()]).start()
    fakes["aws"].settings["keys"][KEY_ID] = (SECRET, None)
    credential = json.dumps({"kind": "aws_sigv4", "access_key_id": KEY_ID,
                             "secret_access_key": SECRET})  # fmt: skip
    connectors = [connector("aws", domains=[], auth_type="aws_sigv4", credential=credential),
                  connector("stripe"), connector("openai"), connector("slack")]  # fmt: skip
    tmp = tmp_path_factory.mktemp("headerbinding")
    snap = snapshot([rule("*", "require_approval")], connectors=connectors)
    running, control = start_gateway(tmp, fakes, snap)
    try:
        yield World(fakes, running, control, ca_bundle(running.ca_path, tmp / "bundle.pem"))
    finally:
        running.stop()
        fakes.stop()


def _poll(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return found


def _new_pending(world: World, seen: set[str], kind: str) -> dict[str, Any]:
    """The one approval pending for connector `kind` that is not in `seen`."""

    def fresh() -> list[dict[str, Any]]:
        return [
            a for a in world.control.pending() if a["id"] not in seen and a["connector"] == kind
        ]

    (approval,) = _poll(fresh)
    seen.add(approval["id"])
    return dict(approval)


def _approved_after_the_client_left(
    world: World, send: Callable[[], object], kind: str
) -> dict[str, Any]:
    """`send` (to connector `kind`) is held; its client gives up; the approval given later
    waits unused."""
    seen = {a["id"] for a in world.control.pending() if a["connector"] == kind}
    try:
        send()
    except Exception:  # each client's own timeout error
        gave_up = True
    else:
        gave_up = False
    assert gave_up, "not held"
    approval = _new_pending(world, seen, kind)
    gateway = world.running.gateway
    assert gateway is not None
    _poll(lambda: approval["id"] not in gateway.holds.held)  # released: the client left
    world.control.approve(approval["id"])
    return approval


def _held_anew(world: World, send: Callable[[], httpx.Response], kind: str) -> dict[str, Any]:
    """`send` is held for an approval of its own (denied here): 403."""
    seen = {a["id"] for a in world.control.pending()}
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(send()))
    thread.start()
    approval = _new_pending(world, seen, kind)
    world.control.deny(approval["id"])
    thread.join(20)
    assert len(out) == 1
    assert out[0].status_code == 403, out[0].text
    return approval


def _used(world: World, approval: dict[str, Any]) -> bool:
    return bool(world.control.approvals[approval["id"]]["used"])


Send = Callable[[httpx.Client, dict[str, str]], httpx.Response]


def _spent_only_as_held(
    world: World, kind: str, send: Send, headers: dict[str, str], variants: list[dict[str, str]]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[RecordedRequest]]:
    """`send` with `headers` is held, approved after its client left; with each of
    `variants` it is held anew (denied), the approval unused, nothing upstream; the
    identical request then passes on it. (The approval, those held anew, what arrived.)"""
    fake = world.fakes[kind]
    with world.client(0.5) as http:
        approval = _approved_after_the_client_left(world, lambda: send(http, headers), kind)
    before = len(fake.requests)
    with world.client(20) as http:
        held = [_held_anew(world, functools.partial(send, http, h), kind) for h in variants]
        assert approval["request"]["digest"] not in {a["request"]["digest"] for a in held}
        assert len(fake.requests) == before
        assert not _used(world, approval)
        answer = send(http, headers)  # the identical request: once
    assert answer.status_code == 200, answer.text
    assert _used(world, approval)
    return approval, held, fake.requests[before:]


def test_an_approved_s3_upload_is_not_spent_on_a_public_or_overwriting_one(world: World) -> None:
    """The review's probe (`x-amz-acl: public-read`, a grant to another account), and what
    no action parameter names: the create-only condition dropped (it overwrites), another
    storage class, metadata added."""
    body = b"internal quarterly numbers"
    create_only = {**SIGNED, "If-None-Match": "*", "x-amz-storage-class": "STANDARD"}
    variants = [
        {**create_only, "x-amz-acl": "public-read",
         "x-amz-grant-full-control": 'id="attacker-canonical-id"'},
        SIGNED | {"x-amz-storage-class": "STANDARD"},
        create_only | {"x-amz-storage-class": "GLACIER"},
        create_only | {"x-amz-meta-owner": "attacker"},
    ]  # fmt: skip
    approval, held, (sent,) = _spent_only_as_held(
        world, "aws", lambda http, h: http.put(S3, content=body, headers=h), create_only, variants
    )
    assert approval["request"]["headers"] == [
        ("if-none-match", "*"),  # what its approver sees
        ("x-amz-storage-class", "STANDARD"),
    ]
    assert ("x-amz-acl", "public-read") in held[0]["request"]["headers"]
    assert (sent.body, sent.header("x-amz-acl"), sent.header("if-none-match")) == (body, None, "*")
    assert world.fakes["aws"].settings["rejected"] == []


def test_an_approved_transfer_is_not_spent_in_another_stripe_context(world: World) -> None:
    body = b"amount=1&currency=usd&destination=acct_1"
    ours = {**FORM, "Stripe-Context": "acct_platform/acct_ours", "Stripe-Account": "acct_ours"}
    variants = [
        {**ours, "Stripe-Context": "acct_other/acct_ours"},  # changed (same account, other path)
        {**FORM, "Stripe-Account": "acct_ours"},  # dropped
        {**ours, "stripe-version": "2020-08-27"},  # added
        {
            **FORM,
            "Stripe-Context": "acct_platform/acct_attacker",
            "Stripe-Account": "acct_attacker",
        },  # changed (also the action's account)
    ]
    lower = {k.lower(): v for k, v in ours.items()}  # the same request in lower case
    *_, sent = _spent_only_as_held(
        world, "stripe", lambda http, h: http.post(TRANSFERS, content=body, headers=h),
        lower, variants,
    )  # fmt: skip
    assert [r.header("stripe-context") for r in sent] == ["acct_platform/acct_ours"]


# -- the real clients: calling again after an approval passes on it ----------------------


def _boto3(world: World, timeout: float) -> Any:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    config = Config(proxies={"https": world.running.proxy_url(KEY)}, read_timeout=timeout,
                    retries={"total_max_attempts": 1})  # fmt: skip
    return boto3.client("s3", region_name=REGION, aws_access_key_id="AKIAAGENTPLACEHOLDER",
                        aws_secret_access_key="agent-holds-no-key", verify=str(world.bundle),
                        config=config)  # fmt: skip


def _call_boto3(world: World, timeout: float) -> object:
    s3 = _boto3(world, timeout)
    return s3.put_object(Bucket="demo-bucket", Key="retry.txt", Body=b"retried", ACL="private",
                         Metadata={"owner": "finance"})  # fmt: skip


def _call_stripe(world: World, timeout: float) -> object:
    import stripe as stripe_sdk

    http = stripe_sdk.RequestsClient(proxy=world.running.proxy_url(KEY), timeout=timeout)
    client = stripe_sdk.StripeClient(PLACEHOLDER, http_client=http, max_network_retries=0,
                                     stripe_account="acct_ours")  # fmt: skip
    saved, stripe_sdk.ca_bundle_path = stripe_sdk.ca_bundle_path, str(world.bundle)
    try:
        params = {"amount": 7, "currency": "usd", "destination": "acct_1"}
        return client.v1.transfers.create(params=params)  # type: ignore[arg-type]
    finally:
        stripe_sdk.ca_bundle_path = saved


def _call_openai(world: World, timeout: float) -> object:
    import openai as openai_sdk

    verify = ssl.create_default_context(cafile=str(world.bundle))
    http = httpx.Client(proxy=world.running.proxy_url(KEY), verify=verify, trust_env=False)
    client = openai_sdk.OpenAI(api_key=PLACEHOLDER, http_client=http, max_retries=0,
                               timeout=timeout, organization="org-ours",
                               project="proj-ours")  # fmt: skip
    with http:
        return client.embeddings.create(model="text-embedding-3-small", input="retry me")


def _call_slack(world: World, timeout: float) -> object:
    from slack_sdk import WebClient

    context = ssl.create_default_context(cafile=str(world.bundle))
    client = WebClient(token=PLACEHOLDER, proxy=world.running.proxy_url(KEY), ssl=context,
                       timeout=timeout)  # type: ignore[arg-type]  # fmt: skip
    return client.chat_delete(channel="C1", ts="1712345678.000100")


CLIENTS = {"boto3": ("aws", _call_boto3), "stripe-python": ("stripe", _call_stripe),
           "openai": ("openai", _call_openai), "slack_sdk": ("slack", _call_slack)}  # fmt: skip


def test_real_clients_calling_again_after_their_approvals_pass_on_them(world: World) -> None:
    """Each client's call is held and it gives up (all at once, to wait for the gateway to
    see them leave once); approved later, the same call made again passes on its approval."""
    approvals: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def held(name: str, kind: str, call: Callable[[World, float], object]) -> None:
        found = _approved_after_the_client_left(world, lambda: call(world, 0.5), kind)
        with lock:
            approvals[name] = found

    threads = [threading.Thread(target=held, args=(name, *entry))
               for name, entry in CLIENTS.items()]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(approvals) == sorted(CLIENTS)
    for name, (kind, call) in CLIENTS.items():
        fake: FakeUpstream = world.fakes[kind]
        before = len(fake.requests)
        call(world, 20)  # a new call: new idempotency key, invocation id, timeout, telemetry
        assert _used(world, approvals[name]), name
        assert len(fake.requests) == before + 1, name
    assert world.control.pending() == []
