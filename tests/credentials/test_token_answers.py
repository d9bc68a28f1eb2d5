"""What a token endpoint answers never leaks a secret to the agent, nor breaks the gateway.

The defects (security review):

- an error answer's text was relayed to the agent in the 502 reason (OAuth2's ``error``,
  GitHub's ``message``, STS's ``Code``): an endpoint that echoes the client secret or the
  refresh token in it handed them to the agent. Only an error *code* is relayed now (GitHub's
  text never), and no message holds a secret of the credential (masked, whatever a source
  relays). Second review: a code by RFC 6749's grammar still relayed the secret as the
  endpoint got it (the Basic credential's base64, the form's percent-encoding), and the mask
  knew only the raw secret: a code is relayed only when it is a registered one (OAuth2's,
  STS's), and every message is masked with the scrubber that knows every spelling;
- an access token outside RFC 6749's ``1*VSCHAR`` was used: ``€`` broke the header (the
  agent's connection dropped), a control character was forwarded, a latin-1 one escaped the
  scrubber. It is a CredentialError now (a clean 502);
- ``expires_in``: NaN passed, ``1e-9`` cost a token request per request, ``"3600"`` (Azure
  AD v1) failed every request. Numeric strings are read, a lifetime is finite, positive and
  ``MIN_LIFETIME`` at least;
- (second review) a ``refresh_token`` holding a lone surrogate (valid JSON: ``"\\ud800"``)
  was cached with its access token, and the scrubber could not encode it: every request of
  the connector was dropped for the token's lifetime. Every value of an answer is read
  before anything is cached (a token ``1*VSCHAR``), and whatever JSON an endpoint answers,
  the broker hands back a usable token or a CredentialError, never another exception.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall.credentials import Token, TokenRequest, parse_computed_credential
from agentfirewall.credentials.aws import AssumeRoleSource
from agentfirewall.credentials.broker import TokenBroker
from agentfirewall.credentials.githubapp import GitHubAppSource
from agentfirewall.credentials.model import (
    MIN_LIFETIME,
    AwsCredential,
    GitHubAppCredential,
    vschar,
)
from agentfirewall.credentials.oauth2 import OAuth2Source
from agentfirewall.errors import CredentialError
from agentfirewall_proxy.injection import TokenBroker as GatewayBroker
from agentfirewall_proxy.injection import prepare
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.pipeline import Flow, Refusal
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.credentials import test_sources as sources
from tests.credentials.test_sources import PEM
from tests.proxy.support import connector, snapshot

NOW = 1_800_000_000.0
CLIENT_SECRET = sources.SECRET
REFRESH = "rt_real_refresh_token_0000"


def oauth(**extra: Any) -> OAuth2Source:
    return OAuth2Source(sources.oauth(client_id="client-1", **extra), "k", "conn_1")


def refused(source: Any, status: int, body: bytes) -> str:
    with pytest.raises(CredentialError) as caught:
        source.read_token(status, body, NOW)
    return str(caught.value)


# -- error texts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("invalid_grant", True),
        ("invalid_client", True),
        ("unauthorized_client", True),
        ("slow_down", True),  # (RFC 8628)
        ("invalid_token", True),  # (RFC 6750)
        ("custom_error", False),  # a code by the grammar, not a registered one
        (CLIENT_SECRET, False),
        ("s3cr3t%2Dvalue", False),  # (percent-encoded: as the form sent it)
        ("Y2xpZW50LTE6czNjcjN0LXZhbHVlLW5ldmVyLWVjaG9lZA==", False),  # (the Basic credential)
        (f"invalid_client {CLIENT_SECRET}", False),  # a space: no error code
        (f"refresh token {REFRESH} revoked", False),
        ("bad\nline", False),
        ('quoted"code', False),  # (a quote or a backslash is outside the grammar)
        ("back\\slash", False),
        ("x" * 65, False),
        (42, False),
        ({"code": "invalid_grant"}, False),
    ],
)
def test_oauth2_relays_only_an_error_code(error: object, shown: bool) -> None:
    message = refused(oauth(), 400, json.dumps({"error": error}).encode())
    assert message.startswith("the token endpoint refused: status 400")
    assert (f"`{error}`" in message) is shown
    assert CLIENT_SECRET not in message
    assert REFRESH not in message


def test_an_unknown_token_type_is_named_only_when_it_is_a_name() -> None:
    assert "`mac`" in refused(oauth(), 200, b'{"access_token": "at", "token_type": "mac"}')
    echoed = json.dumps({"access_token": "at", "token_type": f"x {CLIENT_SECRET}"}).encode()
    assert CLIENT_SECRET not in refused(oauth(), 200, echoed)


def test_github_relays_no_text_of_its_own() -> None:
    source = GitHubAppSource(
        GitHubAppCredential(kind="github_app", app_id="7", private_key=PEM, installation_id="5"),
        "k",
    )
    for status in (401, 403, 404, 422, 500):
        echoed = json.dumps({"message": f"ECHOED {PEM[:60]}"}).encode()
        message = refused(source, status, echoed)
        assert message.startswith(f"github refused the installation token: status {status}")
        assert "ECHOED" not in message
        assert PEM[:60] not in message


def _sts_error(code: str) -> bytes:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Code>{code}</Code><Message>the key is wrong</Message></Error></ErrorResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("code", "shown"),
    [("AccessDenied", True), ("InvalidClientTokenId", True), ("Throttling", True),
     ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", False), ("Access Denied", False),
     ("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", False)],  # (a plain identifier, no code)
)  # fmt: skip
def test_sts_relays_only_a_plain_error_code(code: str, shown: bool) -> None:
    credential = parse_computed_credential(json.dumps({
        "kind": "aws_sigv4", "access_key_id": "AKIA0000000000000000",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "role_arn": "arn:aws:iam::123456789012:role/r"}))  # fmt: skip
    assert isinstance(credential, AwsCredential)
    message = refused(AssumeRoleSource(credential, "k"), 403, _sts_error(code))
    assert (f"`{code}`" in message) is shown
    assert "wJalrXUtnFEMI" not in message
    assert "the key is wrong" not in message


def _spellings(secret: str) -> list[str]:
    """`secret` as an endpoint may echo it: as is, as a form sent it, in a Basic credential
    (``client-1:secret``), in hex."""
    basic = base64.b64encode(f"client-1:{quote(secret, safe='')}".encode()).decode()
    return [secret, quote_plus(secret), basic, secret.encode().hex()]


@pytest.mark.parametrize("spelled", [*_spellings(CLIENT_SECRET), *_spellings(REFRESH)])
def test_no_message_of_the_broker_holds_a_secret_of_the_credential(spelled: str) -> None:
    """Defence in depth: whatever a source relays, the broker masks the credential's secrets
    (the client secret, the vaulted refresh token, the one sent) in every spelling."""

    class Relaying(OAuth2Source):
        def read_token(self, status: int, body: bytes, now: float) -> Token:
            raise CredentialError(f"the endpoint said `{spelled}`")

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        return 400, b"{}"

    credential = sources.oauth(client_id="client-1", grant="refresh_token", refresh_token=REFRESH)
    with pytest.raises(CredentialError) as caught:
        asyncio.run(TokenBroker(send).token(Relaying(credential, "k", "conn_1")))
    assert spelled not in str(caught.value)
    assert "[REDACTED" in str(caught.value)


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_an_error_code_echoing_the_credential_as_sent_is_not_relayed(client_auth: str) -> None:
    """The reviewer's probe 2: the endpoint answers the credential as it got it (the Basic
    header's base64, the form's percent-encoded secret) as its `error`."""
    secret = "s3cr3t+Key/With=Chars9"

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        basic = dict(request.headers).get("Authorization", "").removeprefix("Basic ")
        form = dict(p.split("=", 1) for p in request.body.decode().split("&"))
        echoed = basic or form["client_secret"]
        return 401, json.dumps({"error": echoed}).encode()

    source = OAuth2Source(sources.oauth(client_secret=secret, client_auth=client_auth), "k")
    with pytest.raises(CredentialError) as caught:
        asyncio.run(TokenBroker(send).token(source))
    message = str(caught.value)
    assert message.endswith("status 401, an unregistered error code (not shown)")
    assert quote(secret, safe="") not in message


# -- the token's characters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "at_\u20ac_euro",
        "at_\u00e9t\u00e9",
        "at_\x0bx",
        "at_\tx",
        "at x",
        "at_\x7f",
        "",
        "at\r\nX: y",
    ],
)
def test_an_access_token_outside_vschar_is_refused(token: str) -> None:
    answer = json.dumps({"access_token": token, "expires_in": 3600}).encode()
    assert "access_token" in refused(oauth(), 200, answer)
    github = GitHubAppSource(
        GitHubAppCredential(kind="github_app", app_id="7", private_key=PEM, installation_id="5"),
        "k",
    )
    minted = json.dumps({"token": token, "expires_at": "2027-01-15T09:00:00Z"}).encode()
    assert "invalid installation token" in refused(github, 201, minted) or not token


def test_the_gateway_answers_a_clean_502_for_a_token_no_header_can_carry() -> None:
    """The reviewer's ``€`` token: a UnicodeEncodeError dropped the agent's connection."""
    oauth2 = connector("generic", domains=["api.example.com"], auth_type="oauth2",
                       credential=json.dumps({"kind": "oauth2", "client_id": "c",
                                              "token_url": "https://auth.example.com/token",
                                              "client_secret": CLIENT_SECRET}))  # fmt: skip
    entry = compile_snapshot(snapshot(connectors=[oauth2])).connectors["conn_generic_1"]
    broker = GatewayBroker(Options())

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        return 200, '{"access_token": "at_\u20ac", "expires_in": 3600}'.encode()

    broker.send = send
    flow = Flow(request_id="req_1", method="GET", host="api.example.com", connector=entry)
    with pytest.raises(Refusal) as caught:
        asyncio.run(prepare(broker, flow))
    assert (caught.value.status, caught.value.error) == (502, "credential_unavailable")


# -- expires_in ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(3600, 3600), ("3600", 3600), ("3599.5", 3599.5), (1e-9, MIN_LIFETIME), (1, MIN_LIFETIME)],
)
def test_expires_in_is_read_and_floored(expires_in: object, lifetime: float) -> None:
    answer = json.dumps({"access_token": "at", "expires_in": expires_in}).encode()
    token = oauth().read_token(200, answer, NOW)
    assert token.expires_at == NOW + lifetime


@pytest.mark.parametrize(
    "raw", [b"NaN", b"Infinity", b"-Infinity", b"0", b"-5", b"true", b'"abc"', b'"1e9"',
            b'""', b"1" + b"0" * 400, b"null", b"[3600]"],
)  # fmt: skip
def test_an_expires_in_that_is_no_lifetime_is_refused(raw: bytes) -> None:
    answer = b'{"access_token": "at", "expires_in": ' + raw + b"}"
    assert "expires_in" in refused(oauth(), 200, answer)


def test_a_tiny_lifetime_costs_no_token_request_per_request() -> None:
    now = [NOW]
    sent: list[TokenRequest] = []

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        sent.append(request)
        return 200, b'{"access_token": "at_tiny", "expires_in": 1e-9}'

    async def run() -> None:
        broker = TokenBroker(send, clock=lambda: now[0])
        source = oauth()
        for _ in range(20):
            await broker.token(source)
            now[0] += 0.1  # twenty requests in two seconds
        assert len(sent) == 1

    asyncio.run(run())


# -- every value read before anything is cached ----------------------------------------------


@pytest.mark.parametrize(
    "refresh",
    ["rt\ud800z", "rt\udfff", "rt_\u00e9t\u00e9", "rt\x01x", "rt x", "rt\r\nX: y", 42, True,
     ["rt"], {"rt": "x"}],
)  # fmt: skip
def test_a_refresh_token_outside_vschar_is_refused_before_anything_is_cached(
    refresh: object,
) -> None:
    """The reviewer's probe 1: `"refresh_token": "rt\\ud800z"` was cached with the access
    token; building the scrubber then failed every request for the token's lifetime."""
    sent: list[TokenRequest] = []

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        sent.append(request)
        answer = {"access_token": "at_ok_123456", "expires_in": 3600, "refresh_token": refresh}
        return 200, json.dumps(answer).encode()  # (a lone surrogate as JSON writes it)

    async def run() -> None:
        broker, source = TokenBroker(send), oauth()
        for _ in range(2):
            with pytest.raises(CredentialError, match="invalid `refresh_token`"):
                await broker.token(source)
            assert broker.cache.get(source.key) is None
        assert len(sent) == 2  # (nothing cached: each request asks again)

    asyncio.run(run())


@pytest.mark.parametrize("refresh", [None, ""])
def test_no_refresh_token_is_no_rotation(refresh: object) -> None:
    answer = json.dumps({"access_token": "at", "refresh_token": refresh}).encode()
    token = oauth(grant="refresh_token", refresh_token=REFRESH).read_token(200, answer, NOW)
    assert token.secrets() == ("at",)


#: Any text: lone surrogates, controls, any plane.
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
#: The fields a token endpoint answers: a valid value, or any JSON.
_FIELDS = {
    "access_token": st.just("at_ok_123456") | _JSON,
    "token_type": st.sampled_from(["bearer", "Bearer", "mac"]) | _JSON,
    "expires_in": st.sampled_from([3600, "3600", 0.5]) | _JSON,
    "refresh_token": st.just("rt_next_0001") | _JSON,
    "id_token": st.just("eyJ.eyJ.sig") | _JSON,
    "error": st.sampled_from(["invalid_grant", CLIENT_SECRET]) | _JSON,
    "token": st.just("ghs_installation_0001") | _JSON,
    "expires_at": st.sampled_from(["2030-01-15T09:00:00Z", "9999-12-31T23:59:59-14:00"]) | _JSON,
}
_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional=_FIELDS).map(lambda d: json.dumps(d).encode()),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth),  # (past the parser's depth)
)
_SOURCES = [
    oauth(),
    oauth(grant="refresh_token", refresh_token=REFRESH),
    GitHubAppSource(
        GitHubAppCredential(kind="github_app", app_id="7", private_key=PEM, installation_id="5"),
        "k",
    ),
]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SOURCES), st.sampled_from([200, 201, 400, 401, 500]), _BODIES)
def test_any_answer_is_a_usable_token_or_a_credential_error(
    source: Any, status: int, body: bytes
) -> None:
    """Whatever a token endpoint answers: a token whose every value a header carries and a
    scrubber finds, or a CredentialError; never another exception, nothing cached on error."""

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        return status, body

    broker = TokenBroker(send, clock=lambda: NOW)
    try:
        token = asyncio.run(broker.token(source))
    except CredentialError:
        assert broker.cache.get(source.key) is None
        return
    assert all(vschar(value) for value in token.secrets())
    assert token.usable(NOW)
    assert broker.scrubber("conn_1", token) is not None
