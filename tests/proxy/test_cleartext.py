"""An injected credential never travels in cleartext (issue 12, item 1).

A plain ``http://`` request (absolute-form, through the proxy) to a connector whose
upstream is TLS is upgraded: it reaches the upstream over TLS, with the credential. A
connector that declares no TLS upstream and injects a credential is refused (403
``cleartext_refused``); only an admin's ``http://`` base URL allows plain HTTP upstream,
and only on its port (another port of that host is another service).
Table-driven over every connector type and three real clients (curl, requests, httpx),
against a reflecting upstream that records the scheme each request arrived on.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import connector_types
from agentfirewall_proxy.pipeline import Refusal
from agentfirewall_proxy.snapshot import compile_snapshot
from agentfirewall_proxy.upstream import plain_request_upstream
from tests.fuzzscale import examples
from tests.proxy.reflecting import SECRETS, TABLE, Case, Reflecting
from tests.proxy.support import ca_bundle, connector, snapshot

#: How each configured connector answers a plain http:// request.
EXPECTED = {
    "github": "upgraded", "openai": "upgraded", "anthropic": "upgraded", "stripe": "upgraded",
    "slack": "upgraded", "sendgrid": "upgraded", "mcp": "refused", "webhook": "refused",
    "generic": "refused", "generic-tls": "upgraded", "generic-plain": "declared plain",
    "generic-open": "plain, nothing injected",
}  # fmt: skip
CLIENTS = ["curl", "requests", "httpx"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reflecting]:
    running = Reflecting(tmp_path_factory.mktemp("cleartext"))
    yield running
    running.stop()


def https_client(world: Reflecting) -> httpx.Client:
    bundle = ca_bundle(world.gateway.ca_path, world.gateway.options.ca_dir / "bundle.pem")
    verify = ssl.create_default_context(cafile=str(bundle))
    return httpx.Client(proxy=world.gateway.proxy_url(), trust_env=False, timeout=30, verify=verify)


def get(client: str, proxy: str, url: str) -> tuple[int, str]:
    """(status, body) of a plain GET through the proxy with a real client."""
    if client == "curl":
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        done = subprocess.run(
            ["curl", "-s", "-x", proxy, "-w", "\n%{http_code}", url],
            capture_output=True, text=True, timeout=30, env=env, check=True,
        )  # fmt: skip
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body
    if client == "requests":
        with requests.Session() as session:
            session.trust_env = False
            answer = session.get(url, proxies={"http": proxy}, timeout=30)
            return answer.status_code, answer.text
    with httpx.Client(proxy=proxy, trust_env=False, timeout=30) as http:
        reply = http.get(url)
        return reply.status_code, reply.text


def test_the_table_covers_every_connector_type() -> None:
    # aws takes only a computed credential (SigV4): its plain-http upgrade is tested in
    # tests/credentials/test_sigv4_gateway.py against the verifying fake AWS
    assert {case.kind for case in TABLE} | {"aws"} == set(connector_types())
    assert set(EXPECTED) == {case.name for case in TABLE}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
def test_credential_never_sent_in_cleartext(world: Reflecting, case: Case, client: str) -> None:
    upstream = world.upstream
    upstream.clear()
    status, body = get(client, world.gateway.proxy_url(), f"http://{case.host}{case.path}")
    received = upstream.received()
    expected = EXPECTED[case.name]
    if expected == "refused":
        assert status == 403, body
        answer = json.loads(body)
        assert answer["error"] == "cleartext_refused"
        assert "declares no TLS upstream" in answer["reason"]
        assert received == []
        return
    assert status == 200, body
    (request,) = received
    if expected == "upgraded":
        assert request.scheme == "https"
        assert request.host == case.host  # the real name, over TLS on 443
        assert case.credential is not None
        assert case.credential in request.raw_text()  # it went, but only over TLS
    elif expected == "declared plain":
        assert request.scheme == "http"  # the admin's http:// base URL says so
    else:
        assert request.scheme == "http"
        assert not any(secret in request.raw_text() for secret in SECRETS)


def test_no_credential_of_an_undeclared_connector_ever_reached_a_plain_socket(
    world: Reflecting,
) -> None:
    """After a mixed run, every plain-HTTP request the upstream saw is credential-free
    (the admin-declared plain connector aside)."""
    upstream = world.upstream
    upstream.clear()
    with https_client(world) as http:
        for case in TABLE:
            for scheme in ("http", "https"):
                http.get(f"{scheme}://{case.host}{case.path}")
    declared = {c.credential for c in TABLE if c.base_url and c.base_url.startswith("http:")}
    plain = [r for r in upstream.received() if r.scheme == "http"]
    assert plain, "the no-credential and declared-plain connectors go plain"
    for request in plain:
        leaked = [s for s in SECRETS if s in request.raw_text() and s not in declared]
        assert leaked == []


@pytest.mark.parametrize(
    ("base_url", "host", "port", "expected"),
    [
        (None, "api.github.com", 80, ("https", 443)),
        ("https://ghe.example/api/v3", "ghe.example", 80, ("https", 443)),
        ("https://ghe.example:8443/api/v3", "ghe.example", 80, ("https", 8443)),
        ("https://ghe.example:8443/api/v3", "ghe.example", 8080, ("https", 8443)),
        ("http://ghe.internal:8080", "ghe.internal", 8080, ("http", 8080)),
        ("http://ghe.internal", "ghe.internal", 80, ("http", 80)),
        # a declared plain host is one service on one port: another port is another service
        ("http://ghe.internal", "ghe.internal", 6379, "declared on port 80 only"),
        ("http://ghe.internal:8080", "ghe.internal", 80, "declared on port 8080 only"),
        ("http://ghe.internal:8080", "ghe.internal", 6379, "declared on port 8080 only"),
        (None, "api.github.com", 8080, ("https", 443)),  # the type's own TLS upstream
        (None, "github.internal", 8080, "unknown port"),  # TLS, but on which port?
    ],
)
def test_plain_request_upstream_table(
    base_url: str | None, host: str, port: int, expected: object
) -> None:
    entry = compile_snapshot(
        snapshot(connectors=[connector("github", domains=[host], base_url=base_url)])
    ).connectors["conn_github_1"]
    if isinstance(expected, str):  # refused: the reason says why
        with pytest.raises(Refusal, match=expected) as refused:
            plain_request_upstream(entry, host, port)
        assert (refused.value.status, refused.value.error) == (403, "cleartext_refused")
    else:
        assert plain_request_upstream(entry, host, port) == expected


def test_a_declared_plain_host_without_a_credential_goes_plain_on_any_port() -> None:
    entry = compile_snapshot(snapshot(connectors=[connector(
        "generic", domains=["open.internal"], base_url="http://open.internal", credential=None,
    )])).connectors["conn_generic_1"]  # fmt: skip
    assert plain_request_upstream(entry, "open.internal", 8080) == ("http", 8080)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_declared_plain_host_gets_its_credential_on_its_port_only(
    world: Reflecting, client: str
) -> None:
    """``base_url: http://plain.example.org`` (port 80): a request to another port of that
    host (a Redis, an admin console) is refused before anything is sent."""
    upstream = world.upstream
    upstream.clear()
    url = "http://plain.example.org:6379/echo"
    status, body = get(client, world.gateway.proxy_url(), url)
    assert status == 403, body
    answer = json.loads(body)
    assert answer["error"] == "cleartext_refused"
    assert "declared on port 80 only" in answer["reason"]
    assert upstream.received() == []


def test_a_tunnel_still_goes_upstream_over_tls(world: Reflecting) -> None:
    """CONNECT is always intercepted with TLS on both legs: no cleartext path there."""
    upstream = world.upstream
    upstream.clear()
    with https_client(world) as http:
        assert http.get("https://api.github.com/user").status_code == 200
    assert [r.scheme for r in upstream.received()] == ["https"]


@settings(max_examples=examples(300), deadline=None)
@given(
    kind=st.sampled_from(sorted(connector_types())),
    base=st.sampled_from([None, "https://h.example", "https://h.example:8443/api", "http://h.example",
                          "https://other.example", "http://other.example:8080"]),
    credential=st.sampled_from([None, "real-secret-value-0000"]),
    port=st.sampled_from([80, 443, 8080, 8443]),
)  # fmt: skip
def test_plain_upstream_only_when_declared_or_nothing_is_injected(
    kind: str, base: str | None, credential: str | None, port: int
) -> None:
    """The invariant behind the table: plain HTTP upstream with a credential happens only
    when an admin's base_url says http://; a TLS upstream keeps the request's host."""
    entry = compile_snapshot(snapshot(connectors=[connector(
        kind, domains=["h.example"], base_url=base, credential=credential)]))  # fmt: skip
    found = entry.connectors.get(f"conn_{kind}_1")
    assume(found is not None)
    assert found is not None
    refusal: Refusal | None = None
    try:
        scheme, _ = plain_request_upstream(found, "h.example", port)
    except Refusal as exc:
        refusal = exc
    if refusal is not None:
        assert (refusal.status, refusal.error) == (403, "cleartext_refused")
        return
    if scheme == "http" and found.has_credential:
        assert base is not None
        assert base.startswith("http://")
        assert port == (urlsplit(base).port or 80)  # the declared service, no other port
