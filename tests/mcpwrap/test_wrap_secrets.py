"""TameFlare's own secrets never reach the wrapped server, nor through it the agent: the
gateway token in its environment would read every vaulted credential. Nor does a computed
credential's vaulted document (the long-lived secrets the gateway mints tokens from), and
what `--env` hands over is scrubbed field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfirewall.credentials import COMPUTED_KINDS
from agentfirewall_proxy.mcpwrap.launch import HELD_BACK, WrapError, child_env, resolve_env
from tests.livesrv import LiveServer
from tests.mcpwrap.conftest import add_agent, wrap_env
from tests.mcpwrap.wire import wire

pytestmark = pytest.mark.anyio

#: A value for every variable TameFlare reads a secret from (the gateway's and admin tokens
#: are the live server's own).
OTHERS = {name: f"{name.lower()}-secret-value-0123456789" for name in HELD_BACK}


def test_the_child_environment_holds_back_every_tameflare_secret() -> None:
    base = {**OTHERS, "PATH": "/usr/bin", "SHORT": "x", "TF_SERVER": "http://127.0.0.1:1"}
    env, scrubber = child_env(base, {"GITHUB_TOKEN": "ghp_vaulted0123456789"}, ["tfg_fromafile01"])
    assert env == {"PATH": "/usr/bin", "SHORT": "x", "TF_SERVER": "http://127.0.0.1:1",
                   "GITHUB_TOKEN": "ghp_vaulted0123456789"}  # fmt: skip
    assert scrubber is not None
    for secret in [*OTHERS.values(), "ghp_vaulted0123456789", "tfg_fromafile01"]:
        out, count = scrubber.scrub(f"said {secret}.".encode())
        assert count == 1, secret
        assert secret.encode() not in out
    assert scrubber.scrub(b"x marks http://127.0.0.1:1")[1] == 0  # only secrets


#: A vaulted document of each computed kind, and the secrets in it.
COMPUTED = {
    "aws_sigv4": {"kind": "aws_sigv4", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                  "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
    "github_app": {"kind": "github_app", "app_id": "12345", "installation_id": "678",
                   "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3\n"
                                  "-----END RSA PRIVATE KEY-----\n"},
    "oauth2": {"kind": "oauth2", "token_url": "https://auth.example.com/token",
               "client_id": "client-1", "client_secret": "cs_SuperSecretClientSecret_42",
               "grant": "refresh_token", "refresh_token": "rt_LongLivedRefreshToken_0123"},
}  # fmt: skip


def test_every_computed_kind_is_covered() -> None:
    assert set(COMPUTED) == set(COMPUTED_KINDS)


@pytest.mark.parametrize("kind", COMPUTED)
def test_a_computed_credential_is_never_handed_to_the_server(kind: str) -> None:
    """Its document holds what the gateway mints short-lived tokens from: handed over
    whole, any field the server wrote reached the client (only the whole was scrubbed)."""
    connector = {"id": "c9", "type": "generic", "name": "crm", "auth_type": kind,
                 "credential": json.dumps(COMPUTED[kind])}  # fmt: skip
    with pytest.raises(WrapError, match=rf"connector `crm` holds a computed credential \({kind}\)"):
        resolve_env({"connectors": [connector]}, {"CRED": "crm"})


def test_each_field_of_a_json_credential_is_scrubbed() -> None:
    """A static credential may be a JSON document (a service account's key): the server
    may write any one field of it."""
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\n"
    key = {"type": "service_account", "private_key_id": "0123456789abcdef", "private_key": pem,
           "scopes": ["listed-secret-value"],
           "nested": {"token": "nested-secret-value"}}  # fmt: skip
    credential = json.dumps(key)
    env, scrubber = child_env({}, {"GOOGLE_KEY": credential})
    assert env == {"GOOGLE_KEY": credential}
    assert scrubber is not None
    for field in [credential, "0123456789abcdef", "MIIEvQIBADANBgkqhkiG9w0B",
                  "listed-secret-value", "nested-secret-value"]:  # fmt: skip
        out, count = scrubber.scrub(json.dumps({"error": f"auth failed for {field}"}).encode())
        assert count >= 1, field
        assert field.encode() not in out
    said = json.dumps({"key": pem}).encode()  # the PEM key as JSON writes it (`\n`)
    assert b"MIIEvQIBADANBgkqhkiG9w0B" not in scrubber.scrub(said)[0]


async def test_the_server_never_gets_the_gateway_token_nor_leaks_it(
    server: LiveServer, tmp_path: Path
) -> None:
    """The documented set-up outside a project (TF_GATEWAY_TOKEN and TF_SERVER in the
    server's `env`), an admin token and the control plane's keys beside them: the server
    gets none, and one it finds (on disk) is scrubbed from its answers and its stderr."""
    agent = add_agent(server, "McpSecrets", {"mcp.rpc.*": "allow", "mcp.tools.*": "allow"})
    found = tmp_path / "found-on-disk.txt"
    found.write_text(server.gateway_token)
    env = {**OTHERS, **wrap_env(server)}
    async with wire(tmp_path, agent, env, stderr=True) as relay:
        seen = json.loads((await relay.call(1, "env"))["result"]["content"][0]["text"])
        read = (await relay.call(2, "read", path=str(found)))["result"]["content"][0]["text"]
    assert not set(HELD_BACK) & set(seen)
    assert server.gateway_token not in read
    assert read.startswith("[REDACTED by TameFlare]")
    assert server.gateway_token.encode() not in relay.stderr
    assert b"read [REDACTED by TameFlare]" in relay.stderr
