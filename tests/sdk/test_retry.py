"""Retries and error mapping, against respx-mocked answers (unit tests only).

Everything else in tests/sdk runs against the real server.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from agentfirewall.client import RetryPolicy
from agentfirewall.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)

BASE = "http://firewall.test/api"
ALLOWED = {
    "action_request_id": "act_1",
    "status": "allowed",
    "decision": {
        "outcome": "allow",
        "reason": "No deny rules matched",
        "risk_score": 0,
        "matched_policies": [],
    },
    "decision_token": "tok",
}
EXECUTED = {
    "action_request_id": "act_1",
    "status": "executed",
    "result": {"status_code": 200, "headers": {}, "body": {"id": "tr_1"}},
}


def client(**kwargs: object) -> AgentFirewall:
    return AgentFirewall(api_key="aaf_test_" + "k" * 32, base_url=BASE, retry_backoff=0, **kwargs)  # type: ignore[arg-type]


def request(fw: AgentFirewall) -> object:
    return fw.request_action(action_type="github.pr.merge", provider="github")


@respx.mock
def test_429_is_retried_after_retry_after_then_succeeds() -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "0"}, json={"error": "rate_limited", "retry_after": 0}
            ),
            httpx.Response(200, json=ALLOWED),
        ]
    )
    result = client().request_action("github.pr.merge")
    assert result.status == "allowed"
    assert route.call_count == 2
    keys = {c.request.headers["Idempotency-Key"] for c in route.calls}
    assert len(keys) == 1, "a retry must reuse the idempotency key"


@respx.mock
def test_429_retries_are_bounded_and_raise_rate_limit_error() -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(
        return_value=httpx.Response(
            429,
            headers={"Retry-After": "0"},
            json={"error": "rate_limited", "message": "slow down"},
        )
    )
    with pytest.raises(RateLimitError) as info:
        client(max_retries=2).request_action("github.pr.merge")
    assert route.call_count == 3
    assert info.value.retry_after == 0
    assert info.value.status_code == 429


@respx.mock
def test_retry_after_longer_than_the_cap_is_not_slept_on() -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(
        return_value=httpx.Response(
            429,
            headers={"Retry-After": "3600"},
            json={"error": "rate_limited", "message": "slow down"},
        )
    )
    with pytest.raises(RateLimitError) as info:
        client().request_action("github.pr.merge")
    assert route.call_count == 1
    assert info.value.retry_after == 3600


@pytest.mark.parametrize("status", [502, 503, 504])
@respx.mock
def test_gateway_errors_are_retried_for_request_action(status: int) -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(
        side_effect=[httpx.Response(status, text="bad gateway"), httpx.Response(200, json=ALLOWED)]
    )
    assert client().request_action("github.pr.merge").decision_token == "tok"
    assert route.call_count == 2


@pytest.mark.parametrize("status", [502, 503, 504])
@respx.mock
def test_execute_is_never_replayed_after_it_may_have_reached_the_server(status: int) -> None:
    route = respx.post(f"{BASE}/v1/actions/act_1/execute").mock(
        side_effect=[httpx.Response(status, text="x"), httpx.Response(200, json=EXECUTED)]
    )
    with pytest.raises(ServerError) as info:
        client().execute("act_1", "tok")
    assert info.value.status_code == status
    assert route.call_count == 1


@respx.mock
def test_execute_is_not_replayed_after_a_read_timeout() -> None:
    route = respx.post(f"{BASE}/v1/actions/act_1/execute").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=EXECUTED)]
    )
    with pytest.raises(TransportError):
        client().execute("act_1", "tok")
    assert route.call_count == 1


@respx.mock
def test_execute_is_retried_when_the_connection_never_opened() -> None:
    route = respx.post(f"{BASE}/v1/actions/act_1/execute").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=EXECUTED)]
    )
    result = client().execute("act_1", "tok")
    assert result.status_code == 200
    assert result.body == {"id": "tr_1"}
    assert route.call_count == 2


@respx.mock
def test_execute_429_is_retried() -> None:
    route = respx.post(f"{BASE}/v1/actions/act_1/execute").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json=EXECUTED),
        ]
    )
    assert client().execute("act_1", "tok").ok
    assert route.call_count == 2


@respx.mock
def test_connection_errors_are_retried_then_raise_transport_error() -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransportError) as info:
        client(max_retries=1).request_action("github.pr.merge")
    assert route.call_count == 2
    assert "firewall.test" in str(info.value)
    assert "is it running — `tf up` — and is `AAF_BASE_URL` its address" in str(info.value)


@respx.mock
def test_max_retries_zero_sends_once() -> None:
    route = respx.get(f"{BASE}/v1/actions/act_1").mock(return_value=httpx.Response(503))
    with pytest.raises(ServerError):
        client(max_retries=0).get_action("act_1")
    assert route.call_count == 1


ERRORS = [
    (401, {"error": "unauthorized", "message": "invalid API key"}, AuthenticationError),
    (
        403,
        {
            "error": "forbidden",
            "message": "role too low",
            "required_role": "admin",
            "your_role": "viewer",
        },
        PermissionDeniedError,
    ),
    (404, {"error": "not_found", "message": "no action `act_x`"}, NotFoundError),
    (409, {"error": "token_used", "message": "decision token already used"}, ConflictError),
    (
        422,
        {"error": "invalid_request", "message": "`action_spec.type`: bad", "field": "type"},
        ValidationError,
    ),
    (400, {"error": "invalid_request", "message": "body is not JSON"}, ValidationError),
    (413, {"error": "payload_too_large", "message": "over 1 MiB"}, ValidationError),
    (500, {"error": "internal_error", "message": "boom"}, ServerError),
]


@pytest.mark.parametrize(("status", "body", "cls"), ERRORS)
@respx.mock
def test_error_answers_map_to_the_exception_tree(
    status: int, body: dict[str, str], cls: type[Exception]
) -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(cls) as info:
        client().request_action("github.pr.merge")
    assert body["message"] in str(info.value)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.code == body["error"]  # type: ignore[attr-defined]
    assert route.call_count == 1
    if cls is PermissionDeniedError:
        assert info.value.required_role == "admin"  # type: ignore[attr-defined]
        assert info.value.your_role == "viewer"  # type: ignore[attr-defined]


@respx.mock
def test_a_malformed_success_answer_is_a_server_error() -> None:
    respx.post(f"{BASE}/v1/actions").mock(return_value=httpx.Response(200, text="<html>"))
    with pytest.raises(ServerError, match="not JSON"):
        client().request_action("github.pr.merge")
    respx.post(f"{BASE}/v1/actions").mock(return_value=httpx.Response(200, json={"status": "x"}))
    with pytest.raises(ServerError, match="action_request_id"):
        client().request_action("github.pr.merge")


@respx.mock
def test_the_api_key_never_appears_in_errors_or_repr() -> None:
    key = "aaf_test_" + "s" * 32
    respx.post(f"{BASE}/v1/actions").mock(side_effect=httpx.ConnectError("refused"))
    fw = AgentFirewall(api_key=key, base_url=BASE, max_retries=0)
    with pytest.raises(TransportError) as info:
        fw.request_action("github.pr.merge")
    assert key not in str(info.value)
    assert key not in repr(fw)


@pytest.mark.anyio
@respx.mock
async def test_async_client_retries_the_same_way() -> None:
    route = respx.post(f"{BASE}/v1/actions").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(503, text="unavailable"),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json=ALLOWED),
        ]
    )
    async with AsyncAgentFirewall(api_key="k", base_url=BASE, retry_backoff=0) as fw:
        result = await fw.request_action("github.pr.merge")
    assert result.allowed
    assert route.call_count == 4


@pytest.mark.anyio
@respx.mock
async def test_async_execute_is_not_replayed() -> None:
    route = respx.post(f"{BASE}/v1/actions/act_1/execute").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=EXECUTED)]
    )
    async with AsyncAgentFirewall(api_key="k", base_url=BASE, retry_backoff=0) as fw:
        with pytest.raises(ServerError):
            await fw.execute("act_1", "tok")
    assert route.call_count == 1


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, backoff=0.5, max_backoff=3.0, max_wait=60.0)
    assert [policy.delay(None, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    limited = RateLimitError("slow down", retry_after=7.0)
    assert policy.delay(limited, 1) == 7.0
    assert policy.delay(RateLimitError("slow down", retry_after=None), 2) == 1.0
    assert not policy.should_retry(RateLimitError("x", retry_after=61.0), replay_safe=True)
    assert policy.should_retry(ServerError("x", status_code=503), replay_safe=True)
    assert not policy.should_retry(ServerError("x", status_code=500), replay_safe=True)
    assert not policy.should_retry(ServerError("x", status_code=503), replay_safe=False)
    assert not policy.should_retry(ValidationError("x", status_code=422), replay_safe=True)
