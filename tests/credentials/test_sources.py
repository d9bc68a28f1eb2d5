"""The pure token sources and the credential documents: what each asks for, how answers
are read, and errors that name the field but never echo a secret."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qsl

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.connectors import get_connector
from agentfirewall.credentials import TokenCache, build_injector, parse_computed_credential
from agentfirewall.credentials.aws import AssumeRoleSource
from agentfirewall.credentials.githubapp import GitHubAppSource
from agentfirewall.credentials.model import GitHubAppCredential, OAuth2Credential, vschar
from agentfirewall.credentials.oauth2 import OAuth2Source, with_rotated_refresh_token
from agentfirewall.errors import CredentialError

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
NOW = 1_800_000_000.0
SECRET = "s3cr3t-value-never-echoed"


def oauth(**extra: object) -> OAuth2Credential:
    data = {"kind": "oauth2", "token_url": "https://auth.example.com/token",
            "client_id": "cid", "client_secret": SECRET, **extra}  # fmt: skip
    found = parse_computed_credential(json.dumps(data))
    assert isinstance(found, OAuth2Credential)
    return found


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "aws_sigv4", "access_key_id": "AKIA0000000000000000"}, "secret_access_key"),
        ({"kind": "aws_sigv4", "access_key_id": "lower-case-key-id", "secret_access_key":
          SECRET}, "access_key_id"),
        ({"kind": "oauth2", "token_url": "http://auth.example.com/t", "client_id": "c",
          "client_secret": SECRET}, "token_url"),
        ({"kind": "oauth2", "token_url": "https://a.example/t", "client_id": "c"}, "credential"),
        ({"kind": "oauth2", "token_url": "https://a.example/t", "client_id": "c",
          "client_secret": SECRET, "scopes": ["a b"]}, "scopes"),
        ({"kind": "github_app", "app_id": "1", "installation_id": "2", "private_key": SECRET * 5},
         "private_key"),
        ({"kind": "github_app", "app_id": "1", "installation_id": "2", "private_key": PEM,
          "extra": SECRET}, "extra"),
    ],
)  # fmt: skip
def test_bad_documents_name_the_field_not_the_secret(data: dict[str, object], field: str) -> None:
    with pytest.raises(CredentialError) as caught:
        parse_computed_credential(json.dumps(data))
    assert caught.value.field == field
    assert SECRET not in str(caught.value)


def test_kind_must_match_the_auth_type() -> None:
    with pytest.raises(CredentialError, match="is not `oauth2`"):
        parse_computed_credential(json.dumps({"kind": "aws_sigv4"}), "oauth2")
    with pytest.raises(CredentialError, match="JSON object"):
        parse_computed_credential("not json", "oauth2")


def test_github_app_jwt_and_token() -> None:
    cred = GitHubAppCredential(kind="github_app", app_id="77", private_key=PEM,
                               installation_id="5")  # fmt: skip
    source = GitHubAppSource(cred, "k")
    request = source.token_request(NOW, None)
    assert request.url == "https://api.github.com/app/installations/5/access_tokens"
    token = dict(request.headers)["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, KEY.public_key(), algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})  # fmt: skip
    assert claims == {"iss": "77", "iat": int(NOW) - 60, "exp": int(NOW) + 540}
    answer = json.dumps({"token": "ghs_x", "expires_at": "2027-01-15T09:00:00Z"}).encode()
    minted = source.read_token(201, answer, NOW)
    assert minted.get("token") == "ghs_x"
    assert minted.expires_at - minted.refresh_at == 300
    with pytest.raises(CredentialError, match="status 401: the app JWT was refused") as caught:
        source.read_token(401, b'{"message": "Bad credentials"}', NOW)
    assert "Bad credentials" not in str(caught.value)  # (GitHub's text is not relayed)


def test_github_app_needs_an_rsa_key() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    cred = GitHubAppCredential(kind="github_app", app_id="1", private_key=other * 2,
                               installation_id="2")  # fmt: skip
    with pytest.raises(CredentialError, match="RSA"):
        GitHubAppSource(cred, "k")


def test_oauth2_client_credentials_and_rotated_refresh_token() -> None:
    source = OAuth2Source(oauth(scopes=["read", "write"]), "k")
    request = source.token_request(NOW, None)
    form = dict(parse_qsl(request.body.decode()))
    assert form == {"grant_type": "client_credentials", "scope": "read write"}
    basic = dict(request.headers)["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == f"cid:{SECRET}"
    refreshing = OAuth2Source(oauth(grant="refresh_token", refresh_token="rt0",
                                    client_auth="body"), "k")  # fmt: skip
    first = dict(parse_qsl(refreshing.token_request(NOW, None).body.decode()))
    assert (first["refresh_token"], first["client_id"]) == ("rt0", "cid")
    answer = b'{"access_token": "at1", "expires_in": 120, "refresh_token": "rt1"}'
    token = refreshing.read_token(200, answer, NOW)
    assert (token.expires_at, token.refresh_at) == (NOW + 120, NOW + 90)  # a quarter early
    again = dict(parse_qsl(refreshing.token_request(NOW, token).body.decode()))
    assert again["refresh_token"] == "rt1"  # the rotated one


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, b'{"error": "invalid_grant"}', "invalid_grant"),
        (200, b"<html>", "without JSON"),
        (200, b'{"token_type": "bearer"}', "access_token"),
        (200, b'{"access_token": "a", "token_type": "mac"}', "unsupported token type"),
        (200, b'{"access_token": "a", "expires_in": -5}', "expires_in"),
        (200, b'{"access_token": "a\\r\\nX: y"}', "access_token"),
    ],
)
def test_oauth2_bad_answers_fail_closed(status: int, body: bytes, message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        OAuth2Source(oauth(), "k").read_token(status, body, NOW)


def test_assume_role_request_and_answer() -> None:
    cred = parse_computed_credential(json.dumps({
        "kind": "aws_sigv4", "access_key_id": "AKIA0000000000000000",
        "secret_access_key": SECRET, "role_arn": "arn:aws:iam::123456789012:role/r",
    }))  # fmt: skip
    source = AssumeRoleSource(cred, "k")  # type: ignore[arg-type]
    request = source.token_request(NOW, None)
    assert request.url == "https://sts.us-east-1.amazonaws.com/"
    assert dict(parse_qsl(request.body.decode()))["Action"] == "AssumeRole"
    assert SECRET not in repr(request)
    ns = "https://sts.amazonaws.com/doc/2011-06-15/"
    xml = (f'<AssumeRoleResponse xmlns="{ns}"><AssumeRoleResult><Credentials>'
           "<AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>sk</SecretAccessKey>"
           "<SessionToken>st</SessionToken><Expiration>2027-01-15T08:00:00Z</Expiration>"
           "</Credentials></AssumeRoleResult></AssumeRoleResponse>").encode()  # fmt: skip
    token = source.read_token(200, xml, NOW)
    assert token.secrets() == ("sk", "st")
    with pytest.raises(CredentialError, match="without credentials"):
        source.read_token(200, b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', NOW)


def test_token_cache_is_bounded() -> None:
    cache = TokenCache(size=2)
    source = OAuth2Source(oauth(), "k")
    token = source.read_token(200, b'{"access_token": "a"}', NOW)
    for key in ("a", "b", "c"):
        cache.put(key, token)
    assert (cache.get("a"), cache.get("c")) == (None, token)


def test_a_github_app_injector_uses_the_connector_scheme() -> None:
    text = json.dumps({"kind": "github_app", "app_id": "1", "installation_id": "2",
                       "private_key": PEM})  # fmt: skip
    injector = build_injector("conn_github_1", get_connector("github"), "github_app", text)
    assert injector.source is not None
    assert injector.source.key.startswith("conn_github_1:")
    assert "authorization" in injector.drop


# -- rotated refresh tokens: which one is sent, and the vault's compare-and-write ----------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _refreshing(vaulted: str) -> OAuth2Source:
    return OAuth2Source(oauth(grant="refresh_token", refresh_token=vaulted), "k", "conn_1")


def _minted(source: OAuth2Source, rotated: str | None) -> object:
    answer = {"access_token": "at", "expires_in": 600}
    if rotated is not None:
        answer["refresh_token"] = rotated
    return source.read_token(200, json.dumps(answer).encode(), NOW)


def _sent(source: OAuth2Source, previous: object) -> str:
    form = dict(parse_qsl(source.token_request(NOW, previous).body.decode()))  # type: ignore[arg-type]
    return form["refresh_token"]


def test_a_rotated_refresh_token_is_sent_until_the_vault_changes() -> None:
    r0 = _refreshing("rt0")
    token = _minted(r0, "rt1")
    rotation = r0.rotation(token)  # type: ignore[arg-type]
    assert rotation is not None
    assert (rotation.connector_id, rotation.vaulted_sha256, rotation.refresh_token) == (
        "conn_1", _sha("rt0"), "rt1",
    )  # fmt: skip
    assert "rt1" not in repr(rotation)
    assert "rt0" not in repr(rotation)
    assert "vaulted_sha256" not in dict.fromkeys(token.secrets())  # type: ignore[attr-defined]
    assert _sent(r0, token) == "rt1"  # the vault still holds rt0: the rotated one
    # the rotation stored (the config now carries rt1), another gateway's rotation, or an
    # admin's new grant: the vault's token is sent
    for vaulted in ("rt1", "rt_other", "rt_admin"):
        assert _sent(_refreshing(vaulted), token) == vaulted
    assert _refreshing("rt1").rotation(_minted(_refreshing("rt1"), "rt1")) is None  # not rotated
    assert _refreshing("rt1").rotation(_minted(_refreshing("rt1"), None)) is None
    plain = OAuth2Source(oauth(), "k", "conn_1")
    assert plain.rotation(_minted(plain, "rt9")) is None  # client credentials: no vault write


def test_a_stored_refresh_token_keeps_the_token_cache_key() -> None:
    github = get_connector("generic")
    base = {"kind": "oauth2", "token_url": "https://auth.example.com/token", "client_id": "cid",
            "grant": "refresh_token"}  # fmt: skip

    def key(**extra: object) -> str:
        injector = build_injector("conn_1", github, "oauth2", json.dumps({**base, **extra}))
        return str(injector.source.key)  # type: ignore[union-attr]

    assert key(refresh_token="rt0") == key(refresh_token="rt1")  # no new token, no new rotation
    assert key(refresh_token="rt0") != key(refresh_token="rt0", scopes=["admin"])
    assert key(refresh_token="rt0") != key(refresh_token="rt0", client_id="other")


DOCUMENT = json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                       "client_id": "cid", "grant": "refresh_token", "refresh_token": "rt0",
                       "scopes": ["read"]})  # fmt: skip


def test_the_vault_write_compares_first() -> None:
    stored = with_rotated_refresh_token(DOCUMENT, _sha("rt0"), "rt1")
    assert json.loads(stored) == {**json.loads(DOCUMENT), "refresh_token": "rt1"}
    assert with_rotated_refresh_token(stored, _sha("rt0"), "rt1") == stored  # sent twice
    with pytest.raises(CredentialError) as newer:  # another rotation came first: it stays
        with_rotated_refresh_token(stored, _sha("rt0"), "rt2")
    assert newer.value.field == "refresh_token"
    with pytest.raises(CredentialError) as bad:
        with_rotated_refresh_token(DOCUMENT, _sha("rt0"), "rt\r\nX: y")
    assert "rt\r" not in str(bad.value)
    with pytest.raises(CredentialError) as surrogate:  # (its digest raised: the route's 500)
        with_rotated_refresh_token(DOCUMENT, _sha("rt0"), "rt\ud800")
    assert surrogate.value.field == "refresh_token"
    static = json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                         "client_id": "cid", "client_secret": SECRET})  # fmt: skip
    with pytest.raises(CredentialError) as no_grant:
        with_rotated_refresh_token(static, _sha("rt0"), "rt1")
    assert no_grant.value.field == "grant"
    with pytest.raises(CredentialError):
        with_rotated_refresh_token(SECRET, _sha("rt0"), "rt1")  # a static token


@given(st.text(max_size=40), st.booleans())
def test_no_vault_write_error_echoes_a_token(tail: str, matching: bool) -> None:
    """Whatever is sent, a refusal names the field, never a token (old, new or guessed)."""
    new = "tok-" + tail
    previous = _sha("rt0") if matching else _sha("tok-guessed")
    error: CredentialError | None = None
    try:
        stored = with_rotated_refresh_token(DOCUMENT, previous, new)
    except CredentialError as exc:
        error = exc
    if error is None:
        assert matching
        assert json.loads(stored)["refresh_token"] == new
    else:
        assert error.field == "refresh_token"
        assert "tok-" not in str(error)
        assert "rt0" not in str(error)
        assert not matching or not vschar(new)  # (a token is ``1*VSCHAR``)
