"""ConnectorRouter: host normalisation and precedence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.connectors import ConnectorError, ConnectorRouter, RoutedConnector
from agentfirewall.connectors.router import normalize_host

GITHUB = RoutedConnector("conn_github_1", "github")
STRIPE = RoutedConnector("conn_stripe_1", "stripe")
GENERIC = RoutedConnector("conn_generic_1", "generic", ("api.stripe.com", "*.internal.example"))
WIDE = RoutedConnector("conn_generic_2", "generic", ("*.example",))
EXACT = RoutedConnector("conn_webhook_1", "webhook", ("hooks.internal.example",))
GHE = RoutedConnector("conn_github_2", "github", (), "https://GHE.Example.com/api/v3")
MCP = RoutedConnector("conn_mcp_1", "mcp", ("mcp.example.org", "10.0.0.5"))

ROUTER = ConnectorRouter([GITHUB, STRIPE, GENERIC, WIDE, EXACT, GHE, MCP])


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.github.com", GITHUB),
        ("API.GitHub.COM", GITHUB),
        ("api.github.com.", GITHUB),
        ("api.github.com:443", GITHUB),
        ("github.com", GITHUB),
        ("api.stripe.com", GENERIC),  # explicit domains beat a connector's defaults
        ("a.internal.example", GENERIC),  # longer wildcard suffix beats *.example
        ("a.b.internal.example", GENERIC),
        ("hooks.internal.example", EXACT),  # exact beats any wildcard
        ("x.example", WIDE),
        ("internal.example", WIDE),
        ("ghe.example.com", GHE),
        ("mcp.example.org:8080", MCP),
        ("10.0.0.5", MCP),
        ("10.0.0.5:443", MCP),
        ("[::1]", None),
        ("127.0.0.1", None),
        ("example", None),  # a wildcard never matches its own apex
        ("evilapi.github.com", None),
        ("api.github.com.evil.test", None),
        ("api.github.com..", None),
        ("", None),
        ("a b.example", None),
        ("api.github.com:x:y", None),
    ],
)
def test_match(host: str, expected: RoutedConnector | None) -> None:
    assert ROUTER.match(host) == expected


def test_idna_hosts() -> None:
    router = ConnectorRouter([RoutedConnector("c", "generic", ("bücher.example",))])
    assert router.match("xn--bcher-kva.example") is not None
    assert router.match("BÜCHER.example") is not None
    assert router.match("bucher.example") is None


def test_ip_literals_never_match_names_or_wildcards() -> None:
    router = ConnectorRouter([RoutedConnector("c", "generic", ("*.0.0.1", "localhost"))])
    assert router.match("127.0.0.1") is None
    assert router.match("[::ffff:127.0.0.1]") is None
    ips = ConnectorRouter([RoutedConnector("c", "generic", ("[::1]",))])
    assert ips.match("[0:0::1]:80") is not None


def test_first_configured_wins_between_equals() -> None:
    one = RoutedConnector("one", "generic", ("x.test",))
    two = RoutedConnector("two", "webhook", ("x.test",))
    assert ConnectorRouter([one, two]).match("x.test") == one
    assert ConnectorRouter([two, one]).match("x.test") == two


def test_stripe_defaults_when_no_generic_claims_it() -> None:
    assert ConnectorRouter([STRIPE]).match("api.stripe.com") == STRIPE


@pytest.mark.parametrize("domain", ["*.10.0.0.1", "exa mple.com", "", "*.", "http://x"])
def test_invalid_domains_are_refused(domain: str) -> None:
    with pytest.raises(ConnectorError, match="invalid domain"):
        ConnectorRouter([RoutedConnector("c", "generic", (domain,))])


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ConnectorError, match="unknown connector type `nope`"):
        ConnectorRouter([RoutedConnector("c", "nope")])


def test_mcp_has_no_default_domains() -> None:
    assert ConnectorRouter([RoutedConnector("m", "mcp")]).match("anything.example") is None


@given(st.text(max_size=80))
def test_normalize_host_never_crashes(host: str) -> None:
    result = normalize_host(host)
    assert result is None or result == result.lower()
    ROUTER.match(host)
