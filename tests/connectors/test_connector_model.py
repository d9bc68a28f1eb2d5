"""HttpRequest, ParsedAction and ActionInfo basics."""

from __future__ import annotations

import dataclasses

import pytest

from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/repos/a/b?x=1",
        "http://127.0.0.1:8080/v1/x",
        "https://[::1]:8443/mcp",
        "https://example.com/",
    ],
)
def test_url_round_trip(url: str) -> None:
    assert HttpRequest.from_url("GET", url).url == url


def test_default_ports_are_left_out() -> None:
    request = HttpRequest.from_url("GET", "https://example.com:443/a")
    assert (request.port, request.url) == (443, "https://example.com/a")


@pytest.mark.parametrize("url", ["ftp://x/", "https:///nohost", "https://x:99999/", "/relative"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConnectorError, match="invalid url"):
        HttpRequest.from_url("GET", url)


def test_header_lookup_is_case_insensitive_and_first_wins() -> None:
    request = HttpRequest("GET", "https", "h", headers=(("X-A", "1"), ("x-a", "2")))
    assert request.header("x-A") == "1"
    assert request.header("missing") is None


def test_types_are_frozen() -> None:
    request = HttpRequest("GET", "https", "h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.path = "/x"  # type: ignore[misc]
    parsed = get_connector("github").parse(
        HttpRequest("GET", "https", "api.github.com", None, "/user")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.risk = "high"  # type: ignore[misc]
    assert parsed.action_type == parsed.spec.type == "github.user.get"
    with pytest.raises(Exception, match="frozen"):
        parsed.spec.resource.target = "x"  # type: ignore[misc]
