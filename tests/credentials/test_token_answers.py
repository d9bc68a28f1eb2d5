"""What a token endpoint answers never leaks a secret to the agent, nor breaks the gateway.

The defects (security review):

- an error answer's text was relayed to the agent in the 502 reason (OAuth2's ``error``,
  GitHub's ``message``, STS's ``Code``): an endpoint that echoes the client secret or the
  refresh token in it handed them to the agent. Only an error *code* is relayed now (RFC
  6749's grammar, one word; STS's a plain identifier; GitHub's text never), and no message
  holds a secret of the credential (masked, whatever a source relays);
- an access token outside RFC 6749's ``1*VSCHAR`` was used: ``€`` broke the header (the
  agent's connection dropped), a control character was forwarded, a latin-1 one escaped the
  scrubber. It is a CredentialError now (a clean 502);
- ``expires_in``: NaN passed, ``1e-9`` cost a token request per request, ``"3600"`` (Azure
  AD v1) failed every request. Numeric strings are read, a lifetime is finite, positive and
  ``MIN_LIFETIME`` at least.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agentfirewall.credentials import TokenRequest, parse_computed_credential
from agentfirewall.credentials.aws import AssumeRoleSource
from agentfirewall.credentials.broker import TokenBroker
from agentfirewall.credentials.githubapp import GitHubAppSource
from agentfirewall.credentials.model import MIN_LIFETIME, AwsCredential, GitHubAppCredential
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
    [("AccessDenied", True), ("InvalidClientTokenId", True), ("sts.Throttling", True),
     ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", False), ("Access Denied", False)],
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


@pytest.mark.parametrize(
    "answer",
    [
        {"error": REFRESH},  # (a code by the grammar: masked all the same)
        {"error": CLIENT_SECRET},
        {"access_token": "at", "token_type": REFRESH},
    ],
)
def test_no_message_of_the_broker_holds_a_secret_of_the_credential(answer: dict[str, str]) -> None:
    """Defence in depth: whatever a source relays, the broker masks the credential's secrets
    (the client secret, the vaulted refresh token, the one sent)."""

    async def send(request: TokenRequest) -> tuple[int, bytes]:
        return (400 if "error" in answer else 200), json.dumps(answer).encode()

    source = oauth(grant="refresh_token", refresh_token=REFRESH, client_auth="body")
    with pytest.raises(CredentialError) as caught:
        asyncio.run(TokenBroker(send).token(source))
    assert REFRESH not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)
    assert "[secret]" in str(caught.value)


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
