"""A viewer never reads the secrets of a request the gateway held for approval.

A held request carries its preview (``request``: path, query, the headers its approval
binds, the start of its body), stored with every credential masked as its approver sees it
(``agentfirewall.content.shown``): a member and up read it so, since they approve it. A
caller whose role cannot approve (a viewer: its session or its API token) reads it masked
as a spec is masked for a viewer (``routes/shownspec.py``): a card number, an email
address, a token in a known format however short (``ghp_…``, ``tfa_…``, ``aaf_…``), the
credential after ``Bearer``, a generated value under a name that hints at a secret,
in the path, the query, a header's name or value and the body preview, written plainly,
percent-encoded, plus-encoded or JSON-escaped, the decisive character last. So does the
path of the held request's traffic row. Through every answer a viewer reads them in
(`GET /api/v1/approvals` in each status, `GET /api/v1/approvals/{id}` and by prefix,
`GET /api/v1/traffic`, the event stream's `approval.created`, `approval.decided` and
`traffic` events, which the dashboard's approval cards and traffic tables show), held
under every connector, single and batched, with members reading at the same time. Before,
a viewer read the preview and the path as a member does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.connectors import connector_types
from agentfirewall.content import shown_target
from agentfirewall.content.reading import Unescaped
from tests.livesrv import LiveServer
from tests.server.test_viewer_masked import _reader, _session, _stored_token, _user

#: What a member reads of the held request as sent (the gateway's masking leaves it) and a
#: viewer never reads, in any reading of any text of an answer, by where and how it is held.
VIEWER_NEVER = {
    "a card number in the path": "4111111111111111",
    "a ghp_ token percent-encoded in the path": "Short2token",
    "a short ghp_ token, last in the path": "Short1token",
    "an email percent-encoded in the query": "dave.payroll@example.com",
    "a generated value under a hinting name in the query": "Yq7p3KnW8uS5jO6mM2aX5bG0",
    "a card number plus-encoded in the query": "5555 5555 5555 4444",
    "an agent key in the query": "Vq3Lm8Rt",
    "a card number in the body": "4242 4242 4242 4242",
    "an email in the body": "carol.payroll@example.com",
    "a TameFlare token in the body": "tfa_AbCdEfGhIjKlMnOp",
    "a generated value under a hinting name in the body": "Zr8q2LmX9vT4kP7wN3bY6cH1",
    "a ghp_ token JSON-escaped in the body": "Escaped3token",
    "an email JSON-escaped in the body": "bob@example.com",
    "a card number cut at the preview's end, its last digit last": "6011111111111117",
    "a credential after Bearer in a header": "Shortbearer9",
    "an email in a header": "erin.payroll@example.com",
    "a ghp_ token in a header": "Short4token",
    "a ghp_ token in a header's name": "Short5token",
}
#: What nobody reads: the gateway's masking withholds it from every reader.
NOBODY = {
    "an api_key in the query": "QUERYKEYVALUE5",
    "a password in the body": "Hunter2-plain",
    "a GitHub token in the path": "R8bC4uX1qV7nM2kL9pZ3wY6tJ5hG0fD8sA1e",
}
PATH = (
    "/v1/objects/4111111111111111/ghp_R8bC4uX1qV7nM2kL9pZ3wY6tJ5hG0fD8sA1e/ghp%5FShort2token"
    "/ghp_Short1token"
)
QUERY = (
    "page=2&api_key=QUERYKEYVALUE5&to=dave.payroll%40example.com"
    "&mykey=Yq7p3KnW8uS5jO6mM2aX5bG0&card=5555+5555+5555+4444&ref=aaf_live_Vq3Lm8Rt"
)
BODY = (
    '{"title": "quarterly report", "password": "Hunter2-plain", '
    '"card": "4242 4242 4242 4242", "email": "carol.payroll@example.com", '
    '"note": "use tfa_AbCdEfGhIjKlMnOp now", "mykey": "Zr8q2LmX9vT4kP7wN3bY6cH1", '
    r'"ref": "ghp\u005fEscaped3token", "to": "bob\u0040example.com", '
    '"last": "6011111111111117'
)
HEADERS = [
    ["x-amz-meta-note", "Bearer Shortbearer9"],
    ["x-amz-meta-owner", "erin.payroll@example.com"],
    ["x-amz-meta-ref", "ghp_Short4token"],
    ["ghp_Short5token", "1"],  # (a name of its own: `meta-ghp_…` is a word, as in a spec)
    ["x-amz-acl", "private"],
]
#: What is no secret: every reader reads it.
KEPT = ["/v1/objects/", "page=2", '"title": "quarterly report"', "x-amz-acl", "private"]
SPEC = parse_action_spec(
    {"type": "aws.s3.object.put", "resource": {"provider": "aws", "target": "reports"}}
)


def _held(connector: str | None, digest: str) -> dict[str, Any]:
    """A held request as an older gateway sends it (as it was: the server masks it as its
    approver sees it, ``routes/gateway.shown_request``)."""
    request = {"method": "PUT", "host": "reports.s3.amazonaws.com", "path": PATH,
               "query": QUERY, "body_size": len(BODY) + 100, "body_preview": BODY,
               "headers": HEADERS, "digest": digest}  # fmt: skip
    return {"agent": "Bot", "connector": connector, "action_spec": SPEC.to_dict(),
            "action_hash": SPEC.action_hash, "reason": "held", "request": request}  # fmt: skip


def _readings(text: str) -> list[str]:
    """`text` and what its readers may decode it to."""
    found = [text, unquote(text), unquote_plus(text)]
    return [*found, *(Unescaped(t).text for t in found)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield name
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
    elif isinstance(value, str):
        yield value


def _leaked(body: Any, secrets: dict[str, str]) -> list[str]:
    """The names of `secrets` that any reading of any text of `body` holds."""
    readings = [r for text in _strings(body) for r in _readings(text)]
    return [name for name, secret in secrets.items() if any(secret in r for r in readings)]


@dataclass
class Desk:
    server: LiveServer
    readers: dict[str, httpx.Client]
    approvals: dict[str, str]  # connector (or "batch", "approved") -> approval id
    request_id: str  # the traffic row of the held request

    def routes(self) -> list[str]:
        paths = ["/api/v1/approvals", "/api/v1/approvals?status=all",
                 "/api/v1/approvals?status=approved", "/api/v1/traffic",
                 "/api/v1/traffic?decision=require_approval"]  # fmt: skip
        for approval in self.approvals.values():
            paths += [f"/api/v1/approvals/{approval}", f"/api/v1/approvals/{approval[:-4]}"]
        return paths


def _hold(server: LiveServer, connector: str | None, digest: str) -> str:
    made = server.gateway("POST", "/v1/gateway/approvals", _held(connector, digest))
    assert made.status_code == 200, made.text
    ident: str = made.json()["id"]
    return ident


def _record(server: LiveServer, request_id: str) -> None:
    record = {"request_id": request_id, "agent": "Bot", "connector": "aws", "method": "PUT",
              "host": "reports.s3.amazonaws.com", "path": PATH, "action": SPEC.type,
              "decision": "require_approval"}  # fmt: skip
    sent = server.gateway("POST", "/v1/gateway/traffic", {"records": [record]})
    assert sent.status_code == 200, sent.text


def _csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRF-Token": client.get("/api/v1/auth/me").json()["csrf_token"]}


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    server = LiveServer.start(tmp_path_factory.mktemp("viewer-held") / "tf")
    readers: dict[str, httpx.Client] = {}
    try:
        viewer = _user(server, "viewer@example.com", "viewer")
        _user(server, "member@example.com", "member")
        token = _stored_token(server, viewer, "viewer")
        server.create_agent("Bot")
        held = {c or "none": _hold(server, c, f"{n:064x}")
                for n, c in enumerate([*connector_types(), None, "not-a-connector"])}  # fmt: skip
        batch = server.gateway("POST", "/v1/gateway/approvals/batch",
                               {"approvals": [_held("aws", "b" * 64)]})  # fmt: skip
        assert batch.status_code == 200, batch.text
        held["batch"] = batch.json()["approvals"][0]["id"]
        held["approved"] = _hold(server, "aws", "c" * 64)
        _record(server, "req-held-1")
        readers = {
            "viewer session": _session(server, "viewer@example.com"),
            "viewer token": _reader(server, token),
            "member session": _session(server, "member@example.com"),
            "owner token": _reader(server, server.admin_token),
        }
        member = readers["member session"]
        made = member.post(f"/api/v1/approvals/{held['approved']}/approve", json={},
                           headers=_csrf(member))  # fmt: skip
        assert made.status_code == 200, made.text
        yield Desk(server, readers, held, "req-held-1")
    finally:
        for reader in readers.values():
            reader.close()
        server.stop()


def _requests(body: Any) -> list[dict[str, Any]]:
    """Every held request preview of an answer (each approval's `request`)."""
    rows = body.get("approvals") or [body] if isinstance(body, dict) else []
    return [row["request"] for row in rows if isinstance(row, dict) and row.get("request")]


def _paths(body: Any) -> list[str]:
    return [row["path"] for row in body.get("traffic", []) if row.get("path")]


@pytest.mark.parametrize("reader", ["viewer session", "viewer token"])
def test_a_viewer_reads_no_secret_of_a_held_request_on_any_route(desk: Desk, reader: str) -> None:
    for path in desk.routes():
        answer = desk.readers[reader].get(path)
        assert answer.status_code == 200, (path, answer.text)
        body = answer.json()
        leaked = _leaked(body, {**VIEWER_NEVER, **NOBODY})
        assert leaked == [], f"{reader} reads {leaked} at {path}"
        assert _requests(body) or _paths(body), path
        member = desk.readers["member session"].get(path).json()
        shown, sent = ("\n".join([*_strings(_requests(b)), *_paths(b)]) for b in (body, member))
        assert "/v1/objects/" in shown, path
        for kept in KEPT:  # (what a member is shown of it: the headers its connector binds)
            assert (kept in shown) == (kept in sent), (kept, path)


@pytest.mark.parametrize("reader", ["member session", "owner token"])
def test_a_member_and_up_read_the_held_request_as_the_gateway_masked_it(
    desk: Desk, reader: str
) -> None:
    for path in desk.routes():
        answer = desk.readers[reader].get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert _leaked([*_requests(answer.json()), *_paths(answer.json())], NOBODY) == [], path
        # (the traffic row's path is stored as the held request's is shown: a credential in
        # it masked, tests/proxy/test_traffic_path_no_credential.py)
        assert all(p == shown_target(PATH, "")[0] for p in _paths(answer.json())), path
    for connector in ("aws", "github", "batch", "approved"):  # (the headers they declare)
        held = desk.readers[reader].get(f"/api/v1/approvals/{desk.approvals[connector]}")
        assert _leaked(held.json(), VIEWER_NEVER) == list(VIEWER_NEVER), connector


def test_a_viewer_reads_the_same_answer_but_the_masked_texts(desk: Desk) -> None:
    """Only the texts of the preview and the traffic row's path differ: the ids, statuses,
    digests, hosts and everything else are the member's."""
    texts = ("path", "query", "body_preview", "headers", "action_spec")

    def without_texts(body: Any) -> Any:
        if isinstance(body, dict):
            return {k: without_texts(v) for k, v in body.items() if k not in texts}
        return [without_texts(v) for v in body] if isinstance(body, list) else body

    for path in desk.routes():
        seen = [desk.readers[r].get(path).json() for r in ("viewer token", "member session")]
        assert without_texts(seen[0]) == without_texts(seen[1]), path


def test_viewers_and_members_reading_at_once_each_read_their_own(desk: Desk) -> None:
    """Masked answers are remembered: a member's read never fills what a viewer is shown,
    nor a viewer's what a member is."""
    path = f"/api/v1/approvals/{desk.approvals['github']}"
    member = desk.readers["member session"].get(path).json()

    def read(reader: str) -> tuple[str, Any]:
        return reader, desk.readers[reader].get(path).json()

    order = ["viewer token", "member session", "viewer session", "owner token"] * 6
    with ThreadPoolExecutor(4) as pool:
        for reader, body in pool.map(read, order):
            if reader.startswith("viewer"):
                assert _leaked(body, VIEWER_NEVER) == [], reader
            else:
                assert body == member, reader


# ---- the event stream ---------------------------------------------------------------------


@dataclass
class Stream:
    events: list[tuple[str, Any]]
    done: threading.Event


def _listen(client: httpx.Client, request_id: str, count: int) -> Stream:
    """`GET /api/v1/events` read in a thread: the approval events and the traffic event of
    `request_id`, until `count` of them."""
    stream, ready = Stream([], threading.Event()), threading.Event()

    def listen() -> None:
        try:
            with client.stream("GET", "/api/v1/events", timeout=30) as answer:
                kind = ""
                for line in answer.iter_lines():
                    if line.startswith(": connected"):
                        ready.set()
                    elif line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: ") and kind in _KINDS:
                        data = json.loads(line.removeprefix("data: "))
                        if kind != "traffic" or data.get("request_id") == request_id:
                            stream.events.append((kind, data))
                        if len(stream.events) >= count:
                            return
        finally:
            ready.set()
            stream.done.set()

    threading.Thread(target=listen, daemon=True).start()
    assert ready.wait(20)
    return stream


_KINDS = frozenset({"approval.created", "approval.decided", "traffic"})


def test_a_viewer_s_event_stream_holds_no_secret_of_a_held_request(desk: Desk) -> None:
    names = ("viewer session", "viewer token", "member session")
    streams = {name: _listen(desk.readers[name], "req-held-stream", 3) for name in names}
    held = _hold(desk.server, "aws", "e" * 64)
    _record(desk.server, "req-held-stream")
    member = desk.readers["member session"]
    denied = member.post(f"/api/v1/approvals/{held}/deny", json={}, headers=_csrf(member))
    assert denied.status_code == 200, denied.text
    for name, stream in streams.items():
        assert stream.done.wait(30), name
        kinds = sorted(kind for kind, _ in stream.events)
        assert kinds == ["approval.created", "approval.decided", "traffic"], name
        approvals = [data for kind, data in stream.events if kind != "traffic"]
        if name.startswith("viewer"):
            assert _leaked(approvals, {**VIEWER_NEVER, **NOBODY}) == [], name
            assert _leaked([data for _, data in stream.events], VIEWER_NEVER) == [], name
        else:
            assert _leaked(approvals, VIEWER_NEVER) == list(VIEWER_NEVER), name
        assert {data["id"] for data in approvals} == {held}, name


# ---- any secret, anywhere in the request, in any encoding ---------------------------------

_FOUND = st.sampled_from([
    "4111111111111111", "5555 5555 5555 4444", "alice.payroll@example.com",
    "ghp_Hyp0token", "gho_Hyp1token", "tfa_HypAbCdEfGh", "aaf_test_Hyp2abc",
    "sk_live_Hyp3abcd", "xoxb-Hyp4-token", "whsec_Hyp5secret",
])  # fmt: skip
_WORDS = st.text(alphabet="abcdefghij ", max_size=8)


@st.composite
def _planted(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A held request with one secret in one of its texts, written in one of the ways its
    upstream reads it, and the secret."""
    secret = draw(_FOUND)
    where = draw(st.sampled_from(["path", "query", "body", "header", "header name"]))
    request: dict[str, Any] = {"method": "POST", "host": "api.example.com", "path": "/v1/x",
                               "query": "page=1", "body_preview": "{}",
                               "digest": "f" * 64}  # fmt: skip
    if where == "path":
        written = draw(st.sampled_from([secret, quote(secret, safe=""), quote(secret)]))
        request["path"] = f"/v1/{draw(_WORDS).replace(' ', '-')}/{written}"
    elif where == "query":
        written = draw(st.sampled_from([secret, quote(secret, safe=""),
                                        secret.replace(" ", "+")]))  # fmt: skip
        request["query"] = f"page=1&{draw(st.sampled_from(['to', 'ref', 'q']))}={written}"
    elif where == "body":
        written = draw(st.sampled_from([secret, _escaped(secret)]))
        request["body_preview"] = json.dumps({"a": draw(_WORDS)})[:-1] + f', "b": "{written}'
    elif where == "header":
        value = draw(st.sampled_from([secret, f"Bearer {secret}"]))
        request["headers"] = [["x-amz-meta-a", draw(_WORDS)], ["x-amz-meta-b", value]]
    else:
        request["headers"] = [["x-amz-meta-a", "1"], [secret, "1"]]  # (see HEADERS)
    return request, secret


def _escaped(text: str) -> str:
    """`text` with its first character JSON-escaped."""
    return f"\\u{ord(text[0]):04x}{text[1:]}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=_planted(), connector=st.sampled_from(["aws", "github", "generic", None]))
def test_any_secret_anywhere_in_a_held_request_is_masked_for_a_viewer(
    desk: Desk, planted: tuple[dict[str, Any], str], connector: str | None
) -> None:
    request, secret = planted
    body = {**_held(connector, "a" * 64), "request": request}
    made = desk.server.gateway("POST", "/v1/gateway/approvals", body)
    assert made.status_code == 200, made.text
    path = f"/api/v1/approvals/{made.json()['id']}"
    seen = desk.readers["viewer token"].get(path)
    assert seen.status_code == 200, seen.text
    assert _leaked(seen.json()["request"], {"secret": secret}) == [], seen.json()["request"]
    assert seen.json()["request"]["digest"] == request["digest"]
    as_sent = desk.readers["member session"].get(path).json()["request"]
    assert as_sent == desk.readers["owner token"].get(path).json()["request"]
