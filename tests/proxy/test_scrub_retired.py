"""A credential the gateway injected before never reaches the agent while it may still be valid.

The attack (security review): an upstream that keeps a request log (most APIs show their
recent requests) is asked for it after the credential changed. The gateway scrubbed only
the credential it injects *now*, so the previous one came back whole:

- after an OAuth2 refresh, the previous access token, valid until it expires;
- after an admin rotated a connector's static credential, the previous key, valid upstream
  until it is revoked.

Every token sent is scrubbed until ``RETIRED_MARGIN`` past its expiry, every credential
rotated out while the gateway runs, the latest ``RETIRED`` of each connector (bounded).
In-process: the scrubbers of compiled snapshots and of the token broker, and the gateway's
own apply path (no sockets, no sleeping: the broker's clock is a value the test moves).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentfirewall.credentials import Token, sent
from agentfirewall_proxy import snapshot as compiled
from agentfirewall_proxy.flow import Flow, scrubber_of
from agentfirewall_proxy.gateway import Gateway
from agentfirewall_proxy.injection import RETIRED_MARGIN, TokenBroker, prepare
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.scrub import Scrubber
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot, refusing_config
from tests.proxy.support import connector, snapshot

KEYS = [f"sk_live_rotated_{n:02d}_000000000000000000" for n in range(5)]
#: The bound the tests set (8 in the gateway: a scrubber costs about as much per secret).
BOUND = 2
#: The same connector given an OAuth2 client in place of its static key.
OAUTH = connector(
    "generic", domains=["api.example.com"], auth_type="oauth2",
    credential=json.dumps({"kind": "oauth2", "token_url": "https://auth.example.com/token",
                           "client_id": "client-1", "client_secret": "cs_x"}),
)  # fmt: skip


def echoed(scrubber: Scrubber | None, secret: str) -> bool:
    """Whether `secret`, echoed in a request log, reaches the agent through `scrubber`."""
    body = json.dumps({"log": [{"authorization": f"Bearer {secret}"}]}).encode()
    return scrubber is None or secret.encode() in scrubber.scrub(body)[0]


def config_with(key: str, previous: CompiledConfig | None = None) -> CompiledConfig:
    conn = connector("generic", domains=["api.example.com"], credential=key, auth_type="bearer")
    return compile_snapshot(snapshot(connectors=[conn]), previous=previous)


def static_scrubber(config: CompiledConfig) -> Scrubber | None:
    return config.connectors["conn_generic_1"].scrubber


def test_a_static_credential_rotated_out_is_still_scrubbed() -> None:
    config = config_with(KEYS[0])
    config = config_with(KEYS[1], previous=config)
    scrubber = static_scrubber(config)
    assert not echoed(scrubber, KEYS[1])  # the one it injects now
    assert not echoed(scrubber, KEYS[0])  # the one an upstream logged before the rotation
    # a snapshot the gateway cannot read (refused) forgets nothing
    refusing = refusing_config(config, 3, ValueError("another version's"))
    assert not echoed(static_scrubber(config_with(KEYS[1], previous=refusing)), KEYS[0])


def test_the_credentials_rotated_out_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "RETIRED", BOUND)
    config = config_with(KEYS[0])
    for key in KEYS[1:]:
        config = config_with(key, previous=config)
        again = config_with(key, previous=config)  # (a snapshot changing nothing of it)
        assert static_scrubber(again) is static_scrubber(config)  # (not built again)
        config = again
    scrubber = static_scrubber(config)
    assert [key for key in KEYS if not echoed(scrubber, key)] == KEYS[-BOUND - 1 :]
    assert len(config.injected["conn_generic_1"]) == BOUND + 1


def test_a_connector_rotated_to_a_computed_credential_still_scrubs_its_static_key() -> None:
    config = compile_snapshot(snapshot(connectors=[OAUTH]), previous=config_with(KEYS[0]))
    assert not echoed(static_scrubber(config), KEYS[0])


def test_a_connector_removed_forgets_what_it_injected() -> None:
    config = compile_snapshot(snapshot(connectors=[]), previous=config_with(KEYS[0]))
    assert config.injected == {}
    assert static_scrubber(config_with(KEYS[1], previous=config)) is not None
    assert echoed(static_scrubber(config_with(KEYS[1], previous=config)), KEYS[0])


class _Control:
    """The gateway's control plane, which `apply` never calls."""


def test_the_gateway_compiles_each_snapshot_with_the_last(tmp_path: Path) -> None:
    gateway = Gateway(Options(ca_dir=tmp_path), _Control())  # type: ignore[arg-type]
    try:
        for key in KEYS[:2]:
            conn = connector("generic", domains=["api.example.com"], credential=key)
            gateway.apply(snapshot(connectors=[conn]))
    finally:
        gateway.certs.close()
    assert gateway.config is not None
    assert not echoed(static_scrubber(gateway.config), KEYS[0])


# -- computed credentials: tokens refreshed ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def token(name: str, expires_at: float) -> Token:
    return Token(values=(("access_token", name),), expires_at=expires_at, refresh_at=expires_at)


def test_a_refreshed_token_is_scrubbed_until_it_expires() -> None:
    clock = Clock()
    broker = TokenBroker(Options(), clock=clock)
    first = token("at_first_token_000000000000", clock.now + 3600)
    assert not echoed(broker.scrubber("conn_1", first), "at_first_token_000000000000")
    clock.now += 3500  # refreshed a little before the first expires
    second = token("at_second_token_00000000000", clock.now + 3600)
    scrubber = broker.scrubber("conn_1", second)
    assert not echoed(scrubber, "at_first_token_000000000000")
    assert not echoed(scrubber, "at_second_token_00000000000")
    assert broker.scrubber("conn_1", second) is scrubber  # (built once while nothing changes)
    clock.now = first.expires_at + RETIRED_MARGIN - 1  # an upstream may accept it late
    assert not echoed(broker.scrubber("conn_1", second), "at_first_token_000000000000")
    clock.now = first.expires_at + RETIRED_MARGIN  # invalid anywhere now: not searched
    scrubber = broker.scrubber("conn_1", second)
    assert echoed(scrubber, "at_first_token_000000000000")
    assert not echoed(scrubber, "at_second_token_00000000000")
    # another connector's tokens are its own
    assert echoed(broker.scrubber("conn_2", token("at_other", clock.now + 60)), "at_second_token")


def test_the_tokens_scrubbed_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sent, "RETIRED", BOUND)
    clock = Clock()
    broker = TokenBroker(Options(), clock=clock)
    names = [f"at_token_{n:02d}_000000000000" for n in range(BOUND + 3)]
    for name in names:  # refreshed often (a short lifetime), all still valid
        scrubber = broker.scrubber("conn_1", token(name, clock.now + 86400))
    assert [name for name in names if not echoed(scrubber, name)] == names[-BOUND - 1 :]


def test_a_computed_credentials_scrubber_finds_the_connectors_static_secrets(
    tmp_path: Path,
) -> None:
    """`prepare` gives the flow one scrubber: the tokens and the connector's own secrets
    (here a static key it injected before it was given an OAuth2 client)."""
    config = compile_snapshot(snapshot(connectors=[OAUTH]), previous=config_with(KEYS[0]))
    entry = config.connectors["conn_generic_1"]
    assert entry.injector is not None
    assert entry.injector.source is not None
    clock = Clock()
    broker = TokenBroker(Options(), clock=clock)
    broker.cache.put(entry.injector.source.key, token("at_fresh_token_00000000000", 1e12))
    flow = Flow(request_id="req_1", method="GET", host="api.example.com", connector=entry)

    async def main() -> Any:
        return await prepare(broker, flow)

    assert anyio.run(main) is not None
    assert not echoed(scrubber_of(flow), "at_fresh_token_00000000000")
    assert not echoed(scrubber_of(flow), KEYS[0])


@pytest.mark.parametrize("secret", [KEYS[0], "at_first_token_000000000000"])
def test_echoed_sees_a_secret_that_is_not_scrubbed(secret: str) -> None:
    """(The helper above: an unscrubbed secret is seen.)"""
    assert echoed(None, secret)
    assert echoed(static_scrubber(config_with(KEYS[-1])), secret)
