"""The SDK's rough edges a user meets: a JWKS holding a key that does not load, an async
client used from a second event loop, parameters nested past the limit."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import threading
import warnings
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall import ActionSpecError, AgentFirewallError
from agentfirewall.errors import TokenError
from agentfirewall.jwks import verify_with_jwks
from agentfirewall.testing import FirewallTransport
from agentfirewall.tokens import generate_signing_key, sign_decision_token
from tests.fuzzscale import examples
from tests.sdk.liveagent import LiveAgent
from tests.sdk.test_docs_sdk_claims import JWKSMirror

# -- a JWKS holding a key that does not load ----------------------------------------------

P256_PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
DROP = object()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


#: Ways a published P-256 key fails to load (a publisher's typo, a truncated copy...).
BROKEN: dict[str, dict[str, object]] = {
    "off the curve": {"y": b64(b"\x01" * 32)},
    "x one byte": {"x": "AA"},
    "x a number": {"x": 5},
    "x missing": {"x": DROP},
    "x 33 bytes": {"x": b64(b"\x01" * 33)},
    "x the field prime": {"x": b64(P256_PRIME.to_bytes(32, "big"))},
}


def broken_jwk(how: str, kid: str | None = "other") -> dict[str, object]:
    """A P-256 signing key of its own, broken `how`."""
    jwk: dict[str, object] = {**generate_signing_key().public_jwk(), **BROKEN[how]}
    if kid is not None:
        jwk["kid"] = kid
    return {name: value for name, value in jwk.items() if value is not DROP}


NOW = 1_800_000_000
KEY = generate_signing_key()


def token(key: Any = KEY) -> str:
    return sign_decision_token(
        key, agent="Bot", action_request_id="act_1", action_hash="a" * 64, now=NOW
    )


@settings(max_examples=examples(50), deadline=None)
@given(
    broken=st.lists(st.sampled_from(sorted(BROKEN)), min_size=1, max_size=3),
    position=st.integers(0, 3),
)
def test_a_key_that_does_not_load_is_skipped_beside_a_good_one(
    broken: list[str], position: int
) -> None:
    """Before: `bad_key` (`JWK is not a point on P-256`) for every token, whatever key
    signed it; docs/sdk.md: `bad_key` when the JWKS document holds no usable key."""
    keys: list[object] = [broken_jwk(how) for how in broken]
    keys.insert(min(position, len(keys)), KEY.public_jwk())
    claims = verify_with_jwks(token(), {"keys": keys}, now=NOW)
    assert claims.action_request_id == "act_1"


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_a_jwks_without_a_usable_key_is_still_bad_key(how: str) -> None:
    with pytest.raises(TokenError) as refused:
        verify_with_jwks(token(), {"keys": [broken_jwk(how), broken_jwk(how, kid=None)]}, now=NOW)
    assert refused.value.code == "bad_key"


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_a_token_naming_a_key_that_does_not_load_is_refused_as_bad_key(how: str) -> None:
    """A key skipped never verifies anything: a token its `kid` names is refused, saying
    the published key is broken (not that the token's signature is)."""
    signer = generate_signing_key()
    named = broken_jwk(how, kid=signer.kid)
    with pytest.raises(TokenError) as refused:
        verify_with_jwks(token(signer), {"keys": [named, KEY.public_jwk()]}, now=NOW)
    assert refused.value.code == "bad_key"
    assert "holds but cannot load" in str(refused.value)


def test_a_token_of_a_key_not_in_the_jwks_is_still_bad_signature() -> None:
    document = {"keys": [broken_jwk("x one byte"), KEY.public_jwk()]}
    with pytest.raises(TokenError) as refused:
        verify_with_jwks(token(generate_signing_key()), document, now=NOW)
    assert refused.value.code == "bad_signature"


@pytest.mark.anyio
async def test_the_clients_verify_beside_a_key_that_does_not_load(agent: LiveAgent) -> None:
    """The server's JWKS mirrored with a broken key first (an aggregated or rotated JWKS)."""
    published = httpx.get(agent.server.url + "/.well-known/jwks.json").json()
    document = {"keys": [broken_jwk("off the curve"), *published["keys"]]}
    mirror = JWKSMirror(json.dumps(document).encode())
    try:
        with agent.firewall(jwks_url=mirror.url) as tf:
            result = tf.request_action("github.pr.merge")
            assert result.decision_token
            claims = tf.verify_decision_token(result.decision_token, agent=agent.name)
            assert claims.action_request_id == result.action_request_id
        async with agent.async_firewall(jwks_url=mirror.url) as atf:
            await atf.verify_decision_token(result.decision_token, agent=agent.name)
    finally:
        mirror.close()


# -- one AsyncAgentFirewall, two event loops -----------------------------------------------


def test_an_async_client_works_on_a_second_event_loop(agent: LiveAgent) -> None:
    """`asyncio.run` twice with one client: before, the second raised a bare
    `RuntimeError: Event loop is closed` (docs: everything raised is an
    AgentFirewallError)."""
    firewall = agent.async_firewall()

    async def ask(number: int) -> str:
        result = await firewall.request_action("a.b.c", parameters={"n": number})
        return result.status

    async def ask_and_close(number: int) -> str:
        async with firewall:
            return await ask(number)

    # the first loop's pooled connection cannot be closed once its loop is (its socket is
    # closed when collected, with asyncio's ResourceWarning): a client per loop avoids it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(ask(1)) == "allowed"
        assert asyncio.run(ask_and_close(2)) == "allowed"
        gc.collect()


def test_an_async_client_in_use_on_another_loop_says_so(agent: LiveAgent) -> None:
    agent.require_approval("a.b.c")
    firewall = agent.async_firewall()
    waiting = threading.Event()
    outcome: list[object] = []

    async def wait_in_a_thread(action_id: str) -> None:
        await firewall.get_action(action_id)
        waiting.set()
        outcome.append(await firewall.wait_for_approval(action_id, 30))
        await firewall.aclose()

    async def held() -> str:
        async with agent.async_firewall() as other:
            return (await other.request_action("a.b.c")).action_request_id

    action_id = asyncio.run(held())
    thread = threading.Thread(target=asyncio.run, args=(wait_in_a_thread(action_id),))
    thread.start()
    try:
        assert waiting.wait(20)
        with pytest.raises(AgentFirewallError, match="in use on another event loop"):
            asyncio.run(firewall.request_action("a.b.c"))
    finally:
        agent.decide_next("approve")
        thread.join(30)
    [approved] = outcome
    assert approved


def test_a_transport_of_the_callers_is_kept_across_event_loops() -> None:
    firewall = FirewallTransport()
    client = firewall.async_client()

    async def ask() -> str:
        return (await client.request_action("a.b.c")).status

    assert [asyncio.run(ask()), asyncio.run(ask())] == ["allowed", "allowed"]
    assert len(firewall.actions) == 2


# -- parameters nested past the limit ------------------------------------------------------


def nested(depth: int, kind: str) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"d": value} if kind == "dict" else [value]
    return value


@settings(max_examples=examples(40), deadline=None)
@given(
    depth=st.integers(65, 3000),
    kind=st.sampled_from(["dict", "list"]),
    field=st.sampled_from(["parameters", "risk_hints"]),
)
def test_parameters_nested_past_the_limit_say_so(depth: int, kind: str, field: str) -> None:
    """Before, past about 255 levels: `Recursion error - cyclic reference detected` under a
    path of 1,800 characters (`parameters.d.dict.d.dict...`)."""
    with FirewallTransport().client() as tf, pytest.raises(ActionSpecError) as refused:
        tf.request_action("a.b.c", **{field: {"value": nested(depth, kind)}})  # type: ignore[arg-type]
    message = str(refused.value)
    assert message.startswith(f"invalid action spec: `{field}.value")
    assert message.endswith("nests deeper than 64 levels")
    assert len(message) < 250
    assert refused.value.field == field


def test_the_client_and_the_server_agree_on_deep_parameters(agent: LiveAgent) -> None:
    deep = {"value": nested(300, "dict")}
    with agent.firewall() as tf, pytest.raises(ActionSpecError, match="nests deeper than 64"):
        tf.request_action("a.b.c", parameters=deep)  # type: ignore[arg-type]
    answer = agent.server.agent(
        agent.key,
        "POST",
        "/v1/actions",
        json={"action_spec": {"type": "a.b.c", "parameters": deep}},
    )
    assert answer.status_code == 400
    assert answer.json()["message"].endswith("nests deeper than 64 levels")


def test_a_cyclic_parameter_is_refused_without_recursion() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with FirewallTransport().client() as tf:
        with pytest.raises(ActionSpecError, match="nests deeper than 64 levels"):
            tf.request_action("a.b.c", parameters=cycle)
