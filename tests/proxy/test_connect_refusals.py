"""HTTPS agents read the gateway's reasons: a tunnel the gateway refuses (kill switch, no
connector for the host) is intercepted and its requests get the same 403 JSON and headers as
plain HTTP, with requests, httpx and curl alike. Nothing reaches an upstream, no credential
reaches the agent. Only a passthrough host (no interception possible) is refused at CONNECT.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from agentfirewall_proxy.control import StaticControl
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import tunnel
from tests.proxy.support import (
    CREDENTIALS,
    RunningGateway,
    ca_bundle,
    connector,
    rule,
    snapshot,
    start_gateway,
)

Start = Callable[..., tuple[RunningGateway, StaticControl]]
KILL = [{"scope": "all", "target": None, "reason": "incident"}]
RULES = [rule("github.*", "allow"), rule("stripe.*", "allow")]
#: (case, snapshot, url, expected error, kill-switch header expected)
CASES = {
    "kill_switch": (
        snapshot(RULES, connectors=[connector("github")], kill_switches=KILL),
        "api.github.com/user",
        "kill_switch",
    ),
    "no_connector": (
        snapshot(RULES, connectors=[connector("github")]),
        "api.stripe.com/v1/balance",
        "no_connector",
    ),
}


@pytest.fixture
def start(fakes: FakeUpstreams, tmp_path: Path) -> Iterator[Start]:
    started: list[RunningGateway] = []
    for name in ("github", "stripe"):
        fakes[name].clear()

    def run(snap: dict[str, Any], **options: Any) -> tuple[RunningGateway, StaticControl]:
        running, control = start_gateway(tmp_path, fakes, snap, **options)
        started.append(running)
        return running, control

    yield run
    for running in started:
        running.stop()


def _update(running: RunningGateway, control: StaticControl, snap: dict[str, Any]) -> None:
    """Change the control plane's config and wait until the gateway runs it."""
    control.update(snap)
    version = control.snapshot["version"]
    deadline = time.monotonic() + 15
    while (
        running.gateway is None
        or running.gateway.config is None
        or (running.gateway.config.version != version)
    ):
        assert time.monotonic() < deadline, "the gateway never loaded the new config"
        time.sleep(0.02)


def _bundle(running: RunningGateway) -> Path:
    return ca_bundle(running.ca_path, running.options.ca_dir / "bundle.pem")


def _with_requests(running: RunningGateway, url: str) -> tuple[int, dict[str, str], str]:
    proxy = running.proxy_url()
    answer = requests.get(
        url, proxies={"http": proxy, "https": proxy}, verify=str(_bundle(running)), timeout=20
    )
    return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.text


def _with_httpx(running: RunningGateway, url: str) -> tuple[int, dict[str, str], str]:
    trust = ssl.create_default_context(cafile=str(_bundle(running)))
    with httpx.Client(proxy=running.proxy_url(), verify=trust, trust_env=False) as http:
        answer = http.get(url, timeout=20)
    return answer.status_code, dict(answer.headers), answer.text


def _with_curl(running: RunningGateway, url: str) -> tuple[int, dict[str, str], str]:
    done = subprocess.run(
        ["curl", "-sS", "-i", "--proxy", running.proxy_url(), "--cacert", str(_bundle(running)),
         "--max-time", "20", url],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # curl used to exit 56 on a refused CONNECT
    # -i prints the CONNECT's "200 Connection Established" first, then the real answer
    last = done.stdout.replace("\r\n", "\n").split("HTTP/1.1 ")[-1]
    head, _, body = last.partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[0]), headers, body


CLIENTS = {"requests": _with_requests, "httpx": _with_httpx, "curl": _with_curl}


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_https_agent_reads_the_same_refusal_as_plain_http(
    start: Start, fakes: FakeUpstreams, client: str, case: str
) -> None:
    snap, where, error = CASES[case]
    running, _ = start(snap)
    status, headers, text = CLIENTS[client](running, "https://" + where)
    assert status == 403
    body = json.loads(text)
    assert body["error"] == error
    assert body["reason"]
    assert headers["content-type"] == "application/json"
    assert headers["x-tameflare-request-id"] == body["request_id"]
    assert (headers.get("x-tameflare-kill-switch") == "active") is (case == "kill_switch")

    # the same answer as over plain HTTP (but for the request id)
    plain_status, plain_headers, plain_text = _with_httpx(running, "http://" + where)
    plain = json.loads(plain_text)
    assert plain_status == status
    assert {k: v for k, v in plain.items() if k != "request_id"} == {
        k: v for k, v in body.items() if k != "request_id"
    }
    assert plain_headers.get("x-tameflare-kill-switch") == headers.get("x-tameflare-kill-switch")

    # nothing went upstream; no credential reached the agent
    assert fakes["github"].received() == []
    assert fakes["stripe"].received() == []
    seen = text + json.dumps(headers) + plain_text + json.dumps(plain_headers)
    assert not [name for name, secret in CREDENTIALS.items() if secret in seen]


def test_every_request_in_a_refused_tunnel_is_refused(start: Start, fakes: FakeUpstreams) -> None:
    running, control = start(CASES["kill_switch"][0])
    trust = ssl.create_default_context(cafile=str(_bundle(running)))
    with httpx.Client(proxy=running.proxy_url(), verify=trust, trust_env=False) as http:
        answers = [
            http.request(method, "https://api.github.com" + path, timeout=20)
            for method, path in [("GET", "/user"), ("DELETE", "/repos/acme/api"), ("GET", "/")]
        ]
        assert [a.status_code for a in answers] == [403, 403, 403]
        # the switch cleared: the same tunnel (kept alive by httpx) now forwards
        _update(running, control, snapshot(RULES, connectors=[connector("github")]))
        assert http.get("https://api.github.com/user", timeout=20).status_code == 200
    assert [r.path for r in fakes["github"].received()] == ["/user"]


def test_no_connector_tunnel_never_forwards_even_when_a_connector_appears(
    start: Start, fakes: FakeUpstreams
) -> None:
    running, control = start(CASES["no_connector"][0])
    trust = ssl.create_default_context(cafile=str(_bundle(running)))
    with httpx.Client(proxy=running.proxy_url(), verify=trust, trust_env=False) as http:
        assert http.get("https://api.stripe.com/v1/balance", timeout=20).status_code == 403
        # a connector added later does not open a tunnel routed before it existed
        both = [connector("github"), connector("stripe")]
        _update(running, control, snapshot(RULES, connectors=both))
        assert http.get("https://api.stripe.com/v1/balance", timeout=20).status_code == 403
    assert fakes["stripe"].received() == []


def test_passthrough_host_is_still_refused_at_connect(start: Start, fakes: FakeUpstreams) -> None:
    snap = snapshot(RULES, connectors=[connector("github")], kill_switches=KILL)
    running, _ = start(snap, passthrough=("api.github.com",))
    with pytest.raises(ConnectionRefusedError) as refused:
        tunnel(running.port, "api.github.com", running.ca_path)
    answer = str(refused.value)
    assert answer.startswith("HTTP/1.1 403")
    assert "X-TameFlare-Kill-Switch: active" in answer
    assert fakes["github"].received() == []
