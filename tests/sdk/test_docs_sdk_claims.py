"""The prose of docs/sdk.md, checked against a real server: what a new user relies on and
what they get wrong (test_docs_samples.py runs the page's code samples; this file its claims).

One server for the module, started with a signing key the test holds, so it can forge the
tokens an attacker would (expired, for another agent) and see what ``execute`` answers.
Calls that must fail before anything is sent run over a transport that records requests.
"""

from __future__ import annotations

import functools
import math
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from langchain_core.tools import tool

from agentfirewall import AgentFirewall, ApprovalError, AsyncAgentFirewall
from agentfirewall.actions import action_hash
from agentfirewall.client import DecisionTokenRejected
from agentfirewall.client._base import BaseClient
from agentfirewall.errors import (
    ActionSpecError,
    AgentFirewallError,
    APIError,
    AuthenticationError,
    TokenError,
    TransportError,
)
from agentfirewall.integrations.langchain import firewall_tool, guard_tools
from agentfirewall.tokens import SigningKey, generate_signing_key, sign_decision_token
from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent

KEY = "aaf_test_" + "k" * 32


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[LiveServer]:
    env = {"SIGNING_KEY_PRIVATE": signing_key.to_pem().decode()}
    running = LiveServer.start(tmp_path_factory.mktemp("sdk-claims") / "tf", env=env)
    yield running
    running.stop()


@pytest.fixture
def agent(server: LiveServer) -> Iterator[LiveAgent]:
    made = new_agent(server, "claims")
    yield made
    made.close()


class Recorder(httpx.MockTransport):
    """A transport for both clients that answers 500 and keeps every request it saw."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return answer(request) if answer else httpx.Response(500)

        super().__init__(handle)


def offline(**kwargs: Any) -> tuple[AgentFirewall, Recorder]:
    recorder = Recorder()
    return AgentFirewall(KEY, "http://tf.test/api", transport=recorder, **kwargs), recorder


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# -- decision tokens: what execute says about an attacker's token -----------------------


def test_a_refused_token_at_execute_is_a_token_error_saying_what_to_do(
    agent: LiveAgent, signing_key: SigningKey
) -> None:
    """docs: a token the server refuses raises DecisionTokenRejected, a TokenError whose code
    is the failed check and the AuthenticationError a 401 is; the key was fine."""
    with agent.firewall(max_retries=0) as tf:
        result = tf.request_action("github.pr.merge", provider="github", target="acme/api")
        other = tf.request_action("github.pr.merge", provider="github", target="acme/web")
        assert result.decision_token
        assert other.decision_token
        spec = tf.get_action(result.action_request_id).action_spec
        head, claims, signature = result.decision_token.split(".")
        flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]

        def forged(**change: Any) -> str:
            fields: dict[str, Any] = {
                "agent": agent.name,
                "action_request_id": result.action_request_id,
                "action_hash": action_hash(spec),
                "now": int(time.time()),
            }
            return sign_decision_token(signing_key, **(fields | change))

        attacks = {
            "bad_signature": f"{head}.{claims}.{flipped}",  # tampered
            "malformed": "not-a-token",
            "wrong_action": other.decision_token,  # another action's token
            "expired": forged(now=int(time.time()) - 3600),
            "wrong_agent": forged(agent=agent.name + "-other"),
        }
        for reason, token in attacks.items():
            with pytest.raises(TokenError) as info:
                tf.execute(result.action_request_id, token)
            error = info.value
            assert isinstance(error, DecisionTokenRejected), reason
            assert isinstance(error, AuthenticationError), reason
            assert (error.code, error.status_code) == (reason, 401)
            assert str(error).count(": ") >= 2, f"{reason}: {error} says no next step"
            assert agent.key not in str(error)
        assert "request the action again" in str(_raised(tf, result, attacks["expired"]))


def _raised(tf: AgentFirewall, result: Any, token: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        tf.execute(result.action_request_id, token)
    return info.value


# -- raise_for_denial: a hold is not a go-ahead ---------------------------------------


def test_raise_for_denial_never_lets_a_held_action_through(agent: LiveAgent) -> None:
    """docs: `tf.check(...).raise_for_denial()` never lets held code run; `guard()` waits."""
    agent.require_approval("payment.refund.create", "refunds need a human")
    with agent.firewall() as tf:
        with pytest.raises(ApprovalError) as info:
            tf.check("payment.refund.create", provider="stripe").raise_for_denial()
        assert info.value.status == "pending_approval"
        assert "guard()" in str(info.value)
        held = tf.request_action("payment.refund.create", provider="stripe")
        with pytest.raises(ApprovalError) as info:
            held.raise_for_denial()
        assert info.value.action_request_id == held.action_request_id
    approver = new_agent(agent.server, "claims-approved")  # no held action but the guard's
    approver.require_approval("payment.refund.create")
    with approver.firewall() as tf:
        thread = in_thread(lambda: approver.decide_next("approve"))
        with tf.guard("payment.refund.create", provider="stripe", approval_timeout=30) as ok:
            assert ok.raise_for_denial() is ok  # approved: allowed now
        thread.join(10)
    approver.close()


# -- wait_for_approval, ApprovalInfo, enforcement levels --------------------------------


def test_a_held_action_carries_its_approval_and_can_expire(agent: LiveAgent) -> None:
    """docs: ApprovalInfo(id, expires_at, required_approver_roles); NotApproved `expired`
    says when it expired."""
    agent.policy(
        "  - name: hold\n"
        "    conditions: {all: [{field: action_spec.type, operator: equals, value: x.y.hold}]}\n"
        "    decision: requires_approval\n"
        "    reason: hold it\n"
        "    approval: {timeout_seconds: 1, approver_roles: [admin]}\n"
    )
    with agent.firewall() as tf:
        held = tf.request_action("x.y.hold")
        assert held.approval is not None
        assert held.approval.id.startswith("apv_")
        assert held.approval.required_approver_roles == ("admin",)
        assert held.approval.expires_at
        outcome = tf.wait_for_approval(held.action_request_id, timeout_seconds=20)
    assert not outcome
    assert outcome.status == "expired"
    assert held.approval.expires_at in outcome.reason


def test_waiting_with_no_deadline_of_its_own(agent: LiveAgent) -> None:
    """docs: `timeout_seconds` is any number >= 0; math.inf waits until a decision."""
    assert BaseClient._poll_seconds(math.inf) == 60
    agent.require_approval("github.release.create")
    with agent.firewall() as tf:
        held = tf.request_action("github.release.create")
        thread = in_thread(lambda: agent.decide_next("approve"))
        approved = tf.wait_for_approval(held.action_request_id, timeout_seconds=math.inf)
        thread.join(10)
    assert approved


@pytest.mark.parametrize("level", ["monitor", "soft_enforce"])
def test_monitor_and_soft_enforcement_report_would_deny(server: LiveServer, level: str) -> None:
    """docs: `.would_outcome` is `would_deny` under monitor or soft enforcement."""
    made = new_agent(server, level.replace("_", "-"), enforcement_level=level)
    made.deny("x.y.deny")
    with made.firewall() as tf:
        result = tf.request_action("x.y.deny")
    assert result.status == "allowed"
    assert result.decision.would_outcome == "would_deny"
    assert result.decision.enforcement_level == level


# -- the key: sent only to base_url, never shown -----------------------------------------


class JWKSMirror:
    """Serves a copy of the server's JWKS from another origin and records the headers."""

    def __init__(self, document: bytes) -> None:
        self.authorization: list[str | None] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.authorization.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/keys.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.mark.anyio
async def test_the_api_key_is_not_sent_with_the_jwks_fetch(agent: LiveAgent) -> None:
    """docs: the key is sent only to `base_url`, not with the JWKS fetch (another host)."""
    mirror = JWKSMirror(httpx.get(agent.server.url + "/.well-known/jwks.json").content)
    try:
        with agent.firewall(jwks_url=mirror.url) as tf:
            result = tf.request_action("github.pr.merge")
            assert result.decision_token
            tf.verify_decision_token(result.decision_token, agent=agent.name)
        async with agent.async_firewall(jwks_url=mirror.url) as atf:
            await atf.verify_decision_token(result.decision_token, agent=agent.name)
    finally:
        mirror.close()
    assert mirror.authorization == [None, None]


def test_a_key_read_with_its_line_break_works_and_a_bad_one_is_never_shown(
    agent: LiveAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs: surrounding whitespace is ignored; a key with other spaces or control
    characters raises AuthenticationError at once, without echoing it."""
    monkeypatch.setenv("AAF_API_KEY", agent.key + "\r\n")
    with AgentFirewall(base_url=agent.server.api_url) as tf:
        assert tf.check("github.pr.merge").allowed
    for bad in (agent.key + "\nX-Injected: 1", agent.key[:12] + " " + agent.key[12:], "aaf_tést"):
        with pytest.raises(AuthenticationError) as info:
            AgentFirewall(api_key=bad, base_url=agent.server.api_url)
        assert agent.key not in str(info.value)
        assert agent.key[12:] not in str(info.value)


def test_swapped_key_and_url_are_said_without_showing_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AAF_API_KEY and AAF_BASE_URL swapped: the base URL's error echoed the key."""
    monkeypatch.setenv("AAF_API_KEY", "http://localhost:3000/api")
    monkeypatch.setenv("AAF_BASE_URL", KEY)
    with pytest.raises(AuthenticationError, match="is a URL: are `api_key` and `base_url`"):
        AgentFirewall()
    with pytest.raises(ValueError, match="holds an API key") as info:
        AgentFirewall(api_key=KEY.replace("k", "j"))
    assert KEY not in str(info.value)
    assert KEY[9:] not in str(info.value)


def test_a_transport_error_never_carries_the_key() -> None:
    """docs: the key never appears in exception messages (nor in the traceback's cause)."""

    def leak(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value {request.headers['Authorization']}")

    with AgentFirewall(KEY, "http://tf.test/api", transport=Recorder(leak), max_retries=0) as tf:
        with pytest.raises(TransportError) as info:
            tf.request_action("github.pr.merge")
    shown = "".join(traceback.format_exception(info.value))
    assert KEY not in shown
    assert "cannot reach" in shown


# -- server down, redirects, a closed client -------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api"


def test_a_server_that_is_down_fails_closed_with_what_to_do() -> None:
    """docs (fail closed): no answer is a TransportError naming AAF_BASE_URL; a guarded block
    and a firewalled tool do not run."""
    ran: list[str] = []
    with AgentFirewall(KEY, _closed_port_url(), max_retries=0) as tf:
        with pytest.raises(TransportError, match="AAF_BASE_URL"):
            with tf.guard("github.repo.delete"):
                ran.append("guarded block")

        @firewall_tool(tf, action_type="github.repo.delete")
        def delete_repo(repo: str) -> str:
            """Delete a repository."""
            ran.append("tool")
            return "deleted"

        with pytest.raises(TransportError):
            delete_repo.invoke({"repo": "acme/api"})
    assert ran == []


def test_a_redirect_is_not_followed_and_says_where_it_points() -> None:
    """docs: a 3xx is an APIError (not followed: the key would go with it)."""
    recorder = Recorder(
        lambda _: httpx.Response(308, headers={"Location": "https://tf.example/api/v1/actions"})
    )
    with AgentFirewall(KEY, "http://tf.test/api", transport=recorder) as tf:
        with pytest.raises(APIError) as info:
            tf.request_action("github.pr.merge")
    assert info.value.status_code == 308
    assert "https://tf.example/api/v1/actions" in str(info.value)
    assert "AAF_BASE_URL" in str(info.value)
    assert len(recorder.requests) == 1


@pytest.mark.anyio
async def test_a_closed_client_says_so() -> None:
    tf, recorder = offline()
    with tf:
        pass
    with pytest.raises(AgentFirewallError, match=r"closed.*make a new one"):
        tf.check("github.pr.merge")
    atf = AsyncAgentFirewall(KEY, "http://tf.test/api", transport=recorder)
    await atf.aclose()
    with pytest.raises(AgentFirewallError, match="closed"):
        await atf.check("github.pr.merge")
    assert recorder.requests == []


# -- a wrong argument: typed, named, before anything is sent ------------------------------

CONSTRUCTION: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"api_key": 123}, TypeError, "`api_key` must be a string"),
    ({"base_url": 5}, TypeError, "`base_url`"),
    ({"base_url": "localhost:3000/api"}, ValueError, "not an http(s) URL"),
    ({"base_url": "http://localhost:3000/api/v1"}, ValueError, "ending in `/api`"),
    ({"timeout": "30"}, TypeError, "`timeout`"),
    ({"timeout": 0}, ValueError, "`timeout`"),
    ({"max_retries": -1}, ValueError, "`max_retries`"),
    ({"max_retries": 1.5}, TypeError, "`max_retries`"),
    ({"retry_backoff": -1}, ValueError, "`retry_backoff`"),
    ({"jwks_url": "keys.json"}, ValueError, "`jwks_url`"),
    ({"transport": httpx.AsyncHTTPTransport()}, TypeError, "AsyncAgentFirewall"),
]


@pytest.mark.parametrize(("kwargs", "error", "says"), CONSTRUCTION)
def test_a_bad_client_argument_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], says: str
) -> None:
    arguments: dict[str, Any] = {"api_key": KEY, "base_url": "http://tf.test/api"} | kwargs
    with pytest.raises(error) as info:
        AgentFirewall(**arguments)
    assert says in str(info.value)


def test_the_async_client_refuses_a_sync_transport() -> None:
    with pytest.raises(TypeError, match="AgentFirewall takes a BaseTransport"):
        AsyncAgentFirewall(KEY, transport=httpx.HTTPTransport())


CALLS: list[tuple[str, Callable[[AgentFirewall], object], type[Exception], str]] = [
    ("parameters list", lambda tf: tf.check("a.b.c", parameters=[1]), ActionSpecError, "mapping"),
    ("hints list", lambda tf: tf.check("a.b.c", risk_hints=["x"]), ActionSpecError, "mapping"),
    ("key int", lambda tf: tf.request_action("a.b", idempotency_key=5), TypeError, "idempotency"),
    (
        "key newline",
        lambda tf: tf.request_action("a.b", idempotency_key="a\nb"),
        ValueError,
        "idempotency",
    ),
    ("key long", lambda tf: tf.request_action("a.b", idempotency_key="k" * 201), ValueError, "200"),
    ("id None", lambda tf: tf.get_action(None), TypeError, "action_request_id"),
    ("id empty", lambda tf: tf.get_action(""), ValueError, "action_request_id"),
    ("id int", lambda tf: tf.execute(5, "t.t.t"), TypeError, "action_request_id"),
    ("token result", lambda tf: tf.execute("act_1", object()), TokenError, "decision_token"),
    ("wait str", lambda tf: tf.wait_for_approval("act_1", "5"), TypeError, "timeout_seconds"),
    ("wait nan", lambda tf: tf.wait_for_approval("act_1", math.nan), ValueError, "timeout_seconds"),
    ("wait negative", lambda tf: tf.wait_for_approval("act_1", -1), ValueError, "timeout_seconds"),
    ("guard typo", lambda tf: tf.guard("a.b", providr="x"), TypeError, "guard() got"),
    (
        "guard timeout",
        lambda tf: tf.guard("a.b", approval_timeout="x"),
        TypeError,
        "approval_timeout",
    ),
    ("guard type", lambda tf: tf.guard("Not A Type"), ActionSpecError, "action type"),
    ("dry_run typo", lambda tf: tf.dry_run("a.b", idempotency_key="k"), TypeError, "dry_run() got"),
]


@pytest.mark.parametrize(("case", "call", "error", "says"), CALLS, ids=[c[0] for c in CALLS])
def test_a_bad_call_argument_is_typed_and_sends_nothing(
    case: str, call: Callable[[AgentFirewall], object], error: type[Exception], says: str
) -> None:
    tf, recorder = offline()
    with tf, pytest.raises(error) as info:
        call(tf)
    assert says in str(info.value)
    assert recorder.requests == []


@pytest.mark.anyio
async def test_a_guard_of_the_wrong_kind_is_refused_when_decorating() -> None:
    """docs: the sync guard refuses an `async def`, the async guard a plain `def`."""
    tf, recorder = offline()
    atf = AsyncAgentFirewall(KEY, "http://tf.test/api", transport=recorder)

    async def coroutine() -> str:
        return "ran"

    def plain() -> str:
        return "ran"

    with tf, pytest.raises(TypeError, match="AsyncAgentFirewall"):
        tf.guard("a.b")(coroutine)
    async with atf:
        with pytest.raises(TypeError, match="not a coroutine function"):
            atf.guard("a.b")(plain)
    assert recorder.requests == []


# -- @firewall_tool and guard_tools: misuse fails when the tool is made ----------------


def _one(query: str) -> str:
    """Search."""
    return query


def _varargs(*queries: str) -> str:
    """Search many."""
    return ",".join(queries)


def _positional(query: str, /) -> str:
    """Search."""
    return query


class _Callable:
    def __call__(self, query: str) -> str:
        """Search."""
        return query


TOOL_MISUSE: list[tuple[str, Callable[[AgentFirewall], object], type[Exception], str]] = [
    ("no parentheses", lambda tf: firewall_tool(_one), TypeError, "@firewall_tool(firewall"),
    ("no firewall", lambda tf: firewall_tool(None)(_one), TypeError, "AgentFirewall"),
    ("on_deny typo", lambda tf: firewall_tool(tf, on_deny="raises")(_one), ValueError, "on_deny"),
    (
        "timeout text",
        lambda tf: firewall_tool(tf, approval_timeout="5")(_one),
        TypeError,
        "approval_timeout",
    ),
    ("target number", lambda tf: firewall_tool(tf, target=5)(_one), TypeError, "`target`"),
    ("*args", lambda tf: firewall_tool(tf)(_varargs), TypeError, "`*queries`"),
    ("positional-only", lambda tf: firewall_tool(tf)(_positional), TypeError, "`query`"),
    ("partial", lambda tf: firewall_tool(tf)(functools.partial(_one)), TypeError, "wrap"),
    ("callable object", lambda tf: firewall_tool(tf)(_Callable()), TypeError, "wrap"),
    ("one tool, no list", lambda tf: guard_tools(tool(_one), tf), TypeError, "list of tools"),
    ("a plain function", lambda tf: guard_tools([_one], tf), TypeError, "@firewall_tool"),
    (
        "arguments swapped",
        lambda tf: guard_tools(tf, [tool(_one)]),
        TypeError,
        "guard_tools(tools, firewall",
    ),
    (
        "guard_tools on_deny",
        lambda tf: guard_tools([tool(_one)], tf, on_deny="Raise"),
        ValueError,
        "on_deny",
    ),
]


@pytest.mark.parametrize(
    ("case", "make", "error", "says"), TOOL_MISUSE, ids=[c[0] for c in TOOL_MISUSE]
)
def test_tool_misuse_fails_when_the_tool_is_made(
    case: str, make: Callable[[AgentFirewall], object], error: type[Exception], says: str
) -> None:
    tf, recorder = offline()
    with tf, pytest.raises(error) as info:
        make(tf)
    assert says in str(info.value)
    assert recorder.requests == []


def test_a_failing_field_function_refuses_the_call_before_asking() -> None:
    """docs: a field function that fails raises ActionSpecError naming the field."""
    tf, recorder = offline()
    ran: list[str] = []

    @firewall_tool(tf, target=lambda args: args["repo"].split("/")[1])
    def search(query: str, repo: str | None = None) -> str:
        """Search issues."""
        ran.append(query)
        return query

    with tf, pytest.raises(ActionSpecError, match=r"`target`.*AttributeError") as info:
        search.invoke({"query": "bug"})
    assert info.value.field == "target"
    assert ran == []
    assert recorder.requests == []


def test_an_async_tool_called_synchronously_is_refused_before_asking() -> None:
    """docs: a sync call of an `async def` tool raises before the firewall is asked."""
    tf, recorder = offline()

    @firewall_tool(tf, action_type="github.issue.search")
    async def search(query: str) -> str:
        """Search issues."""
        return query

    with tf, pytest.raises(AgentFirewallError, match="ainvoke"):
        search.invoke({"query": "bug"})
    assert recorder.requests == []


def test_guard_tools_takes_one_action_type_for_all(agent: LiveAgent) -> None:
    """docs: guard_tools' `action_type` is one string for every tool, or a function."""
    agent.deny("github.issue.search", "searching is off today")
    with agent.firewall() as tf:
        (guarded,) = guard_tools([tool(_one)], tf, action_type="github.issue.search")
        answer = guarded.invoke({"query": "bug"})
    assert answer == "Action blocked by policy: searching is off today"
