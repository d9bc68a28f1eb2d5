"""The pure parts: certificates, options, paths and hosts, the parser, static config."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from agentfirewall_proxy.certs import CertStore, load_or_create_ca, mint_leaf
from agentfirewall_proxy.control import StaticControl, load_snapshot_file
from agentfirewall_proxy.http1 import END, Head, ParseError, RequestParser, Upgrade
from agentfirewall_proxy.main import parse_args
from agentfirewall_proxy.options import parse_listen, parse_port_range, parse_resolve
from agentfirewall_proxy.pipeline import Refusal, clean_path, split_authority
from agentfirewall_proxy.snapshot import compile_snapshot


def test_ca_is_created_once_with_a_private_key(tmp_path: Path) -> None:
    first = load_or_create_ca(tmp_path)
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    again = load_or_create_ca(tmp_path)
    assert again.cert == first.cert
    assert first.cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


@pytest.mark.parametrize("host", ["api.github.com", "127.0.0.1"])
def test_leaf_names_only_its_host(tmp_path: Path, host: str) -> None:
    ca = load_or_create_ca(tmp_path)
    chain, _ = mint_leaf(ca, host)
    leaf = x509.load_pem_x509_certificate(chain)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    expected = (
        x509.IPAddress(ipaddress.ip_address(host)) if host[0].isdigit() else x509.DNSName(host)
    )
    assert list(names) == [expected]
    assert leaf.issuer == ca.cert.subject


def test_cert_store_is_capped_and_cached(tmp_path: Path) -> None:
    store = CertStore(load_or_create_ca(tmp_path), capacity=2)
    first = store.context_for("a.example")
    assert store.context_for("a.example") is first
    store.context_for("b.example")
    store.context_for("c.example")
    assert store.context_for("a.example") is not first  # evicted, minted again
    assert isinstance(first, ssl.SSLContext)
    store.close()


def test_options_parsing() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("9000") == ("127.0.0.1", 9000)
    assert parse_resolve(["api.github.com=127.0.0.1:9443", "API.github.com:80=127.0.0.1:1"]) == {
        ("api.github.com", None): ("127.0.0.1", 9443),
        ("api.github.com", 80): ("127.0.0.1", 1),
    }
    assert parse_port_range("10001-10100") == (10001, 10100)
    for bad in ("x=1", "a=b:c"):
        with pytest.raises(ValueError, match="invalid resolve entry"):
            parse_resolve([bad])
    with pytest.raises(ValueError, match="invalid port range"):
        parse_port_range("9-1")


def test_main_needs_a_control_plane_or_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--config-file" in capsys.readouterr().err
    options = parse_args(["--config-file", "g.yaml", "--listen", ":0", "--passthrough", "X.COM."])
    assert (options.listen_port, options.passthrough) == (0, ("x.com",))


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/repos/a/b/pulls/1", "/repos/a/b/pulls/1"),
        ("/repos/a/b/pulls/..", "/repos/a/b/"),
        ("/repos/a/b/%2e%2e/c", "/repos/a/c"),
        ("/a/./b/../../c?x=1", "/c"),
        ("/../../etc", "/etc"),
        ("/a/.hidden", "/a/.hidden"),
    ],
)
def test_clean_path(target: str, path: str) -> None:
    assert clean_path(target)[0] == path


@pytest.mark.parametrize("target", ["relative", "/a\\b", "/a%5c..", "/a%00", "/a#frag", "/a\x7f"])
def test_clean_path_refuses(target: str) -> None:
    with pytest.raises(Refusal):
        clean_path(target)


def test_split_authority() -> None:
    assert split_authority("API.GitHub.com.:443", 80) == ("api.github.com", 443)
    assert split_authority("[::1]:8080", 80) == ("::1", 8080)
    assert split_authority("example.com", 80) == ("example.com", 80)
    for bad in ("a.com:99999", "a.com:x", "a/b.com", "a@b.com", ""):
        with pytest.raises(Refusal):
            split_authority(bad, 80)


def test_parser_events_and_errors() -> None:
    parser = RequestParser(max_head=100)
    parser.feed(b"POST http://a/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    head = parser.events.popleft()
    assert isinstance(head, Head)
    assert (head.method, head.target, head.content_length) == ("POST", b"http://a/x", 3)
    assert list(parser.events) == [b"abc", END]
    connect = RequestParser()
    connect.feed(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\nearly")
    assert connect.events[-1] == Upgrade(b"early")
    big = RequestParser(max_head=100)
    big.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 200 + b"\r\n\r\n")
    assert big.events[-1] == ParseError(431, "request header fields too large")


def test_static_snapshot_file_conveniences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_TOKEN_FOR_TEST", "ghp_from_env")
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({
        "agents": [{"name": "Bot", "api_keys": ["aaf_live_x"]}],
        "connectors": [{"id": "c1", "type": "github", "credential_env": "GH_TOKEN_FOR_TEST"}],
        "permissions": [{"agent": "Bot", "connector": "github", "action_pattern": "*",
                         "decision": "allow"}],
    }))  # fmt: skip
    snapshot = load_snapshot_file(path)
    assert snapshot["agents"][0]["key_hashes"] == [hashlib.sha256(b"aaf_live_x").hexdigest()]
    assert snapshot["connectors"][0]["credential"] == "ghp_from_env"
    config = compile_snapshot(snapshot)
    connector = config.route("api.github.com")
    assert connector is not None
    assert connector.auth_headers == ((b"Authorization", b"token ghp_from_env"),)
    assert config.route("evil.example") is None
    assert StaticControl(path).snapshot["version"] == 1


def test_a_broken_connector_is_skipped_not_fatal() -> None:
    config = compile_snapshot({
        "connectors": [{"id": "bad", "type": "nope"}, {"id": "ok", "type": "slack"}],
    })  # fmt: skip
    assert config.route("slack.com") is not None
    assert list(config.connectors) == ["ok"]
