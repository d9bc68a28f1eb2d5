"""`tf run`'s Node preload against a stand-in gateway and origins a bypass would really reach.

The origins (plain HTTP and TLS, on 127.0.0.1) answer whoever connects, so a client that went
around the gateway would succeed quietly: none may ever connect to them unless NO_PROXY names
their host. The stand-in gateway answers like a forward proxy: absolute-form requests, and
CONNECT, whose tunnel it opens with a certificate the test CA signed (trusted through
NODE_EXTRA_CA_CERTS, as `tf run` trusts the gateway's) to read the request inside; a wrong
proxy credential gets 407. NO_PROXY is what `tf run` sets (`control_plane_hosts`).

- every request shape Node's http/https modules send (method, path, headers as an object or
  an array, Expect, a body, the global agent, ``new Agent()``, ``agent: false``, a shared
  keep-alive agent; Hypothesis) reaches a host NO_PROXY names directly and every other host
  only through the gateway, exactly as asked, with the agent's proxy credential;
- every npm client (the tf run test's list, here with Node's bundled undici as the dispatcher:
  no `undici` package resolves from the working directory) never connects to an origin;
- the proxy credential goes to the gateway only, and a refused credential fails closed.

Before the fix every http/https-module request here connected to the origin directly.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.runenv import control_plane_hosts
from tests.cli.nodeproxy_support import GATEWAY_AUTH, KEY, LOCAL, REMOTE, Loopback, Stage
from tests.cli.test_node_clients import CLIENTS, HTTPS_CLIENTS, answers, write_clients

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    ca = trustme.CA()
    where = tmp_path_factory.mktemp("node-preload")
    ca_file = where / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    workdir = where / "work"
    workdir.mkdir()
    servers = (Loopback("gateway", ca), Loopback("origin", ca), Loopback("origin", ca, tls=True))
    try:
        yield Stage(*servers, ca_file=ca_file, workdir=workdir)
    finally:
        for server in servers:
            server.close()


#: `node -e REQUESTS_JS SPECS`: each spec sent in turn with Node's http/https module, one JSON
#: line (status and body, or the error) for each.
REQUESTS_JS = r"""
const http = require('http');
const https = require('https');
const specs = JSON.parse(process.argv[1]);
const shared = { http: new http.Agent({ keepAlive: true }),
                 https: new https.Agent({ keepAlive: true }) };
function agentFor(spec, mod) {
  if (spec.agent === 'global') return undefined;
  if (spec.agent === 'none') return false;
  if (spec.agent === 'new') return new mod.Agent();
  return shared[spec.scheme];
}
function send(spec) {
  return new Promise((resolve) => {
    const mod = spec.scheme === 'https' ? https : http;
    const body = Buffer.from(spec.body);
    const pairs = [['Host', spec.host + ':' + spec.port], ['X-Probe', spec.probe]];
    if (body.length) pairs.push(['Content-Length', String(body.length)]);
    if (spec.expect) pairs.push(['Expect', '100-continue']);
    const headers = spec.array ? pairs.flat() : Object.fromEntries(pairs);
    const req = mod.request({ host: spec.host, port: spec.port, method: spec.method,
      path: spec.path, headers, agent: agentFor(spec, mod) }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', (e) => resolve({ error: String(e && e.message || e) }));
    req.setTimeout(15000, () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}
(async () => { for (const spec of specs) console.log(JSON.stringify(await send(spec))); })();
"""


def _send(stage: Stage, env: dict[str, str], specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["node", "-e", REQUESTS_JS, json.dumps(specs)], env=env, cwd=stage.workdir,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(specs), done.stdout + done.stderr[-3000:]
    return results


_PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%"
paths = st.builds(
    lambda parts, query: "/" + "/".join(parts) + query,
    st.lists(st.text(_PATH_CHARS, max_size=10), min_size=1, max_size=4),
    st.one_of(st.just(""), st.text(_PATH_CHARS + "/?", max_size=12).map("?{}".format)),
)
request_specs = st.fixed_dictionaries(
    {
        "scheme": st.sampled_from(["http", "https"]),
        "host": st.sampled_from(["127.0.0.1", "localhost"]),
        "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
        "path": paths,
        "array": st.booleans(),  # headers as Node's raw array: rendered at once
        "expect": st.booleans(),  # Expect: 100-continue: rendered and queued at once
        "agent": st.sampled_from(["global", "new", "none", "shared"]),
        "body": st.sampled_from(["", "x", '{"a": 1}']),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    server_url=st.sampled_from([REMOTE, LOCAL, "http://localhost:3000", "http://[::1]:3000"]),
    specs=st.lists(request_specs, min_size=1, max_size=6),
)
def test_every_request_goes_through_the_gateway_unless_no_proxy_names_its_host(
    stage: Stage, server_url: str, specs: list[dict[str, Any]]
) -> None:
    exempt = set(control_plane_hosts(server_url))
    for index, spec in enumerate(specs):
        spec["probe"] = f"p{index}-{os.urandom(4).hex()}"
        spec["port"] = stage.origin(spec["scheme"]).port
    connections = {scheme: stage.origin(scheme).connections for scheme in ("http", "https")}
    start = len(stage.gateway.records())
    results = _send(stage, stage.env(server_url), specs)

    through = stage.gateway.records()[start:]
    for spec, result in zip(specs, results, strict=True):
        direct = spec["host"] in exempt
        assert result == {"status": 200, "body": "origin" if direct else "gateway"}, (spec, result)
        authority = f"{spec['host']}:{spec['port']}"
        at_origin = [s for s in stage.origin(spec["scheme"]).records() if s.probe == spec["probe"]]
        at_gateway = [s for s in through if s.probe == spec["probe"]]
        if direct:
            assert not at_gateway
            [seen] = at_origin
            assert (seen.method, seen.target) == (spec["method"], spec["path"])
            assert seen.proxy_auth is None
            continue
        assert not at_origin  # never reached directly
        [seen] = at_gateway
        if spec["scheme"] == "http":  # a proxy request, with the agent's credential
            expected = (f"http://{authority}{spec['path']}", None, GATEWAY_AUTH)
            assert (seen.target, seen.tunnel, seen.proxy_auth) == expected
        else:  # inside a tunnel the agent's credential opened to exactly that host
            assert (seen.target, seen.tunnel, seen.proxy_auth) == (spec["path"], authority, None)
            tunnels = [s for s in through if s.method == "CONNECT" and s.target == authority]
            assert tunnels
            assert {s.proxy_auth for s in tunnels} == {GATEWAY_AUTH}
        assert (seen.method, seen.host) == (spec["method"], authority)
    if not exempt & {"127.0.0.1", "localhost"}:
        assert {s: stage.origin(s).connections for s in connections} == connections


@pytest.mark.slow
@pytest.mark.parametrize("server_url", [REMOTE, LOCAL])
def test_no_node_client_connects_around_the_gateway(
    stage: Stage, tmp_path: Path, server_url: str
) -> None:
    """Every npm client, each asking a path of its own; with a local control plane (loopback
    exempt) each reaches the origin directly instead: NO_PROXY honoured by every client but
    https-proxy-agent, whose agent the user pointed at the proxy."""
    script = write_clients(tmp_path)
    env = stage.env(server_url)
    routed = server_url == REMOTE
    for scheme, clients in (("http", CLIENTS), ("https", HTTPS_CLIENTS)):
        origin = stage.origin(scheme)
        before, start = origin.connections, len(stage.gateway.records())
        template = f"{scheme}://127.0.0.1:{origin.port}/c/{{client}}"
        done = subprocess.run(
            ["node", str(script), template, *clients], env=env, cwd=stage.workdir,
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        got = answers(done.stdout)
        expected = {
            name: "gateway" if routed or name == "https-proxy-agent" else "origin"
            for name in clients
        }
        assert {name: got.get(name, {}).get("body") for name in clients} == expected, (
            done.stdout + done.stderr[-3000:]
        )
        if routed:
            assert origin.connections == before, f"a {scheme} client connected directly"
        asked = [s.target for s in stage.gateway.records()[start:] if "/c/" in s.target]
        assert {target.rsplit("/c/", 1)[-1] for target in asked} == {
            name for name, where in expected.items() if where == "gateway"
        }


def test_the_proxy_credential_never_reaches_an_origin(stage: Stage) -> None:
    """An agent with connection code of its own (not Node's) is not routed, so the request is
    not given the agent's Proxy-Authorization either: it would carry the key to the origin."""
    script = r"""
    const http = require('http');
    const net = require('net');
    class Own extends http.Agent { createConnection(o) { return net.connect(o.port, o.host); } }
    http.get({ host: '127.0.0.1', port: Number(process.argv[1]), path: '/own',
               headers: { 'X-Probe': 'own' }, agent: new Own() }, (res) => {
      res.resume(); res.on('end', () => console.log(res.statusCode));
    }).on('error', (e) => console.log('error', e.message));
    """
    port = str(stage.http_origin.port)
    done = subprocess.run(
        ["node", "-e", script, port], env=stage.env(REMOTE), cwd=stage.workdir,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "200", done.stderr[-2000:]
    [seen] = [s for s in stage.http_origin.records() if s.probe == "own"]
    assert seen.proxy_auth is None
    assert KEY not in repr(stage.http_origin.records())


def test_a_refused_proxy_credential_fails_closed(stage: Stage) -> None:
    """A key the gateway refuses (a run that ended, a revoked key): https fails with the
    gateway's refusal named, http gets its 407; neither reaches the origin."""
    specs = [
        {"scheme": scheme, "host": "127.0.0.1", "port": stage.origin(scheme).port,
         "method": "GET", "path": "/refused", "array": False, "expect": False, "agent": "global",
         "body": "",
         "probe": f"refused-{scheme}"}
        for scheme in ("https", "http")
    ]  # fmt: skip
    before = (stage.http_origin.connections, stage.tls_origin.connections)
    tunnelled, plain = _send(stage, stage.env(REMOTE, key="aaf_test_revoked"), specs)
    assert "the TameFlare gateway refused CONNECT 127.0.0.1:" in tunnelled["error"]
    assert "HTTP 407" in tunnelled["error"]
    assert plain == {"status": 407, "body": ""}
    assert (stage.http_origin.connections, stage.tls_origin.connections) == before


def test_a_proxy_url_that_does_not_parse_stops_node_without_showing_it(stage: Stage) -> None:
    env = stage.env(REMOTE)
    broken = "http://Bot:aaf_live_s3cr3tk3y@[127.0.0.1"
    env.update(HTTP_PROXY=broken, HTTPS_PROXY=broken, http_proxy=broken, https_proxy=broken)
    done = subprocess.run(["node", "-e", "console.log('ran')"], env=env, cwd=stage.workdir,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert done.stdout == ""  # nothing runs unrouted
    assert "tf run: HTTPS_PROXY holds no URL" in done.stderr
    assert "s3cr3tk3y" not in done.stderr
