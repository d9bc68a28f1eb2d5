"""A credential in a URL (`https://user:password@host`) is refused, never stored or shown.

A connector's `base_url` and the settings' `gateway_url` are read by every viewer (and
`base_url` goes to every gateway in the configuration), and nothing sends the user name or
password of a URL as a credential: the request is built from host, port and path. Pasted
in, such a password sat outside the vault in clear, shown to the lowest role, while the
connector silently did not authenticate. Both fields take `http(s)://host[:port]` (and
`base_url` a path) only: a URL with a user name or a password, in any spelling the URL
parser reads as one, is 422 naming the field, saying where a credential goes, and never
repeating the password. `tf connector add --base-url` shows the server's answer.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from agentfirewall_proxy.cli.app import main as tf_main
from tests.livesrv import LiveServer
from tests.server.conftest import Harness

PASSWORD = "Sup3rS3cretBasicPw"
HOST = "billing.internal.example"
#: Each way a URL carries a user name or a password (the parser drops tabs and line
#: breaks, takes the last `@`, and reads the port after the credential).
WITH_USERINFO = [
    f"https://svc:{PASSWORD}@{HOST}",
    f"https://svc:{PASSWORD}@{HOST}:8443/api/v3",
    f"https://{PASSWORD}@{HOST}",  # a token as the user name
    f"https://:{PASSWORD}@{HOST}",
    "https://svc:@" + HOST,
    f"HTTP://svc:{PASSWORD}@{HOST}",
    f"http://svc:{PASSWORD}@[::1]:8443",
    f"http://svc:{PASSWORD}@127.0.0.1:8443",
    f"https://svc:{PASSWORD}@evil.example@{HOST}",
    f"https://svc:Sup3r%40S3cretBasicPw@{HOST}",
    f"https://svc:{PASSWORD}\t@{HOST}",
    f"https://svc:{PASSWORD}\n@{HOST}",
    f"https://svc:{PASSWORD}@{HOST}:99999",  # refused for the credential, not echoed
    f"https://svc:{PASSWORD}@[::1/",
]
#: URLs with an `@` that is no credential: accepted as before.
WITHOUT_USERINFO = [
    f"https://{HOST}/users/@me",
    f"https://{HOST}/api?owner=a@b.example",
    f"https://{HOST}/#@frag",
]


def _refused(answer: Any, field: str, says: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["field"] == field, error
    assert f"`{field}` holds a credential" in error["message"], error
    assert says in error["message"], error
    assert PASSWORD.lower() not in answer.text.lower()
    assert "S3cret" not in answer.text


def test_a_url_with_a_credential_is_refused_in_either_field(harness: Harness) -> None:
    """Every spelling, both fields, one server (a server costs seconds to start)."""
    h = harness
    settings = h.admin("GET", "/v1/settings").json()
    for url in WITH_USERINFO:
        body = {"type": "generic", "domains": [HOST], "base_url": url, "token": "tok-1"}
        _refused(h.admin("POST", "/v1/connectors", json=body), "base_url", "`token`")
        answer = h.admin("PATCH", "/v1/settings", json={"gateway_url": url})
        _refused(answer, "gateway_url", "alone")
    assert h.admin("GET", "/v1/connectors").json()["connectors"] == []
    assert h.admin("GET", "/v1/settings").json() == settings
    assert PASSWORD not in h.gateway("GET", "/v1/gateway/config").text


def test_an_at_sign_past_the_host_is_no_credential(harness: Harness) -> None:
    h = harness
    for n, url in enumerate(WITHOUT_USERINFO):
        body = {"type": "generic", "domains": [f"h{n}.example"], "base_url": url}
        answer = h.admin("POST", "/v1/connectors", json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["base_url"] == url
        answer = h.admin("PATCH", "/v1/settings", json={"gateway_url": url})
        assert answer.status_code == 200, answer.text
        assert answer.json()["gateway_url"] == url


def test_tf_connector_add_shows_the_servers_refusal(
    shared_live_server: LiveServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    server = shared_live_server
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("TF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TF_ADMIN_TOKEN", server.admin_token)
    capsys.readouterr()
    url = f"https://svc:{PASSWORD}@userinfo-cli.example"
    code = tf_main(["connector", "add", "generic", "--domains", "userinfo-cli.example",
                    "--base-url", url, "--server", server.url])  # fmt: skip
    out, err = capsys.readouterr()
    assert code != 0, out
    assert "`base_url` holds a credential" in err, (out, err)
    assert PASSWORD not in out + err
    listed = server.admin("GET", "/v1/connectors").json()["connectors"]
    assert "userinfo-cli.example" not in {d for c in listed for d in c["domains"]}
