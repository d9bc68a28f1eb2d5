"""An agent under `tf run` against the Node preload: every request that leaves a Node program
goes through the gateway with the agent's credential on the connection to the gateway only,
or is refused. Never to a host NO_PROXY does not name, never the key to anyone else, never the
key in a request's header map, its rendered head or what ``console.log`` prints.

The stand-ins are those of test_node_clients_preload.py (:mod:`tests.cli.nodeproxy_support`):
origins that answer whoever connects and a forward-proxy gateway that checks the credential
(and relays a redirect). Node runs in a directory whose node_modules are the npm clients of
``tests/cli/node_clients`` (ws, superagent, got, node-fetch, agentkeepalive, undici).

Before the fix (hunt H4): ``ws`` and any ``http.request({createConnection})`` reached the
origins directly; the key was in the request's header map (superagent carried it across a
redirect, to a NO_PROXY host and into a tunnel), on a unix-socket agent's requests, missing on
every kept-alive reused http:// connection (407), and printed by ``console.log(res)``; with
``--no-experimental-fetch`` the undici package connected directly; a user's own ``--require``
loaded before the preload and its requests went direct.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from agentfirewall_proxy.cli.doctor_probes import NODE_CHECK, judge_node
from agentfirewall_proxy.cli.run_cmd import NODE_PRELOAD
from agentfirewall_proxy.runenv import RunSpec, SupportFiles, build_child_env, control_plane_hosts
from tests.cli.nodeproxy_support import (
    GATEWAY_AUTH,
    KEY,
    LOCAL,
    REMOTE,
    Loopback,
    Seen,
    Stage,
)
from tests.cli.test_node_clients import node_clients

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

KEY_B64 = GATEWAY_AUTH.split()[1]


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    modules = node_clients()  # npm ci, once per machine
    ca = trustme.CA()
    where = tmp_path_factory.mktemp("node-preload-attacks")
    ca_file = where / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    workdir = where / "work"
    workdir.mkdir()
    (workdir / "node_modules").symlink_to(modules, target_is_directory=True)
    servers = (Loopback("gateway", ca), Loopback("origin", ca), Loopback("origin", ca, tls=True))
    try:
        yield Stage(*servers, ca_file=ca_file, workdir=workdir)
    finally:
        for server in servers:
            server.close()


def run_node(
    stage: Stage,
    script: str,
    *args: str,
    server_url: str = REMOTE,
    cwd: Path | None = None,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full = env if env is not None else stage.env(server_url)
    full.update(HTTP_PORT=str(stage.http_origin.port), TLS_PORT=str(stage.tls_origin.port))
    return subprocess.run(
        ["node", *flags, "-e", script, *args], env=full, cwd=cwd or stage.workdir,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def results(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The script's JSON lines, by probe; nothing of the key anywhere in its output."""
    assert KEY not in done.stdout + done.stderr
    assert KEY_B64 not in done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["probe"]: line for line in lines}


def at(server: Loopback, probe: str) -> list[Seen]:
    return [seen for seen in server.records() if seen.probe == probe]


def assert_through_gateway(stage: Stage, probe: str, scheme: str, path: str) -> None:
    """`probe` reached the gateway once, as a proxy request with the agent's credential
    (http) or inside a tunnel that credential opened to the origin (https); no origin saw it."""
    assert at(stage.http_origin, probe) == at(stage.tls_origin, probe) == []
    [seen] = at(stage.gateway, probe)
    if scheme == "http":
        target = f"http://127.0.0.1:{stage.http_origin.port}{path}"
        assert (seen.target, seen.tunnel, seen.proxy_auth) == (target, None, GATEWAY_AUTH)
        return
    authority = f"127.0.0.1:{stage.tls_origin.port}"
    assert (seen.target, seen.tunnel, seen.proxy_auth) == (path, authority, None)
    tunnels = [s for s in stage.gateway.records() if s.method == "CONNECT"]
    assert {s.proxy_auth for s in tunnels if s.target == authority} == {GATEWAY_AUTH}


# ---- connections of their own: the ws package, http.request({createConnection}) ----------------

#: Every shape at once: ws and wss, and `createConnection` with options, a URL string or a URL
#: object, through `request` and `get`, `agent` absent or null.
OWN_CONNECTION_JS = r"""
const http = require('http');
const https = require('https');
const net = require('net');
const tls = require('tls');
const WebSocket = require('ws');
const [H, T] = [process.env.HTTP_PORT, process.env.TLS_PORT];
const plain = (o) => net.createConnection(o);
const secure = (o) => tls.connect(o);

function viaWs(probe, url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { 'X-Probe': probe } });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        req.socket.destroy();
        resolve({ probe, status: res.statusCode, body });
      });
    });
    ws.on('open', () => { ws.terminate(); resolve({ probe, status: 101 }); });
    ws.on('error', (e) => resolve({ probe, error: e.message }));
  });
}
function viaRequest(probe, mod, call, args) {
  return new Promise((resolve) => {
    const options = args[args.length - 1];
    options.headers = { 'X-Probe': probe };
    const req = mod[call](...args, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ probe, status: res.statusCode, body }));
    });
    req.on('error', (e) => resolve({ probe, error: e.message }));
    if (call === 'request') req.end();
  });
}
const p = process.argv[1];
Promise.all([
  viaWs(p + 'ws', `ws://127.0.0.1:${H}/${p}ws`),
  viaWs(p + 'wss', `wss://127.0.0.1:${T}/${p}wss`),
  viaRequest(p + 'http-options', http, 'request',
    [{ host: '127.0.0.1', port: H, path: `/${p}http-options`, createConnection: plain }]),
  viaRequest(p + 'http-url', http, 'get',
    [`http://127.0.0.1:${H}/${p}http-url`, { createConnection: plain, agent: null }]),
  viaRequest(p + 'https-url-object', https, 'request',
    [new URL(`https://127.0.0.1:${T}/${p}https-url-object`), { createConnection: secure }]),
  viaRequest(p + 'https-options', https, 'get',
    [{ hostname: '127.0.0.1', port: T, path: `/${p}https-options`, createConnection: secure }]),
]).then((all) => all.forEach((one) => console.log(JSON.stringify(one))));
"""
OWN_CONNECTIONS = {
    "ws": "http",
    "wss": "https",
    "http-options": "http",
    "http-url": "http",
    "https-url-object": "https",
    "https-options": "https",
}


@pytest.mark.parametrize("server_url", [REMOTE, LOCAL])
def test_a_request_with_a_connection_of_its_own_goes_through_the_gateway(
    stage: Stage, server_url: str
) -> None:
    """ws passes its own `createConnection` and no agent: Node then never asks an agent. Through
    the gateway like every request (it relays WebSockets); with a local control plane, loopback
    is NO_PROXY: the request's own connection, to the origin."""
    prefix = "own-remote-" if server_url == REMOTE else "own-local-"
    before = (stage.http_origin.connections, stage.tls_origin.connections)
    got = results(run_node(stage, OWN_CONNECTION_JS, prefix, server_url=server_url))
    assert set(got) == {prefix + name for name in OWN_CONNECTIONS}, got
    for name, scheme in OWN_CONNECTIONS.items():
        probe = prefix + name
        if server_url == LOCAL:
            assert got[probe] == {"probe": probe, "status": 200, "body": "origin"}
            [seen] = at(stage.origin(scheme), probe)
            assert (seen.target, seen.proxy_auth) == (f"/{probe}", None)
            assert at(stage.gateway, probe) == []
            continue
        assert got[probe] == {"probe": probe, "status": 200, "body": "gateway"}
        assert_through_gateway(stage, probe, scheme, f"/{probe}")
    if server_url == REMOTE:
        assert (stage.http_origin.connections, stage.tls_origin.connections) == before


def test_a_client_request_made_with_its_own_connection_and_no_agent_is_refused(
    stage: Stage,
) -> None:
    """``new http.ClientRequest({createConnection})`` skips http.request: refused before it
    writes a byte, rather than sent around the gateway."""
    script = r"""
    const http = require('http');
    const net = require('net');
    const probe = 'client-request';
    const req = new http.ClientRequest({ host: '127.0.0.1', port: process.env.HTTP_PORT,
      path: '/' + probe, headers: { 'X-Probe': probe },
      createConnection: (o) => net.createConnection(o) }, (res) => {
      res.resume();
      console.log(JSON.stringify({ probe, status: res.statusCode }));
    });
    req.on('error', (e) => console.log(JSON.stringify({ probe, error: e.message })));
    req.end();
    """
    before = stage.http_origin.connections
    got = results(run_node(stage, script))
    assert got["client-request"].get("error", "").startswith("tf run: "), got
    assert at(stage.http_origin, "client-request") == at(stage.gateway, "client-request") == []
    assert stage.http_origin.connections == before  # not even connected


# ---- the key on the connection to the gateway only --------------------------------------------

#: For each agent: four requests at once (maxSockets 1 queues them on one kept-alive
#: connection), then two in turn; each reports whether its header map, its rendered head or
#: console.log of its response shows the key.
CREDENTIAL_JS = r"""
const http = require('http');
const util = require('util');
const KeepAlive = require('agentkeepalive');
const superagent = require('superagent');
const key = process.argv[1];
const H = process.env.HTTP_PORT;
const agents = {
  global: undefined,
  none: false,
  'keep-alive': new http.Agent({ keepAlive: true, maxSockets: 1 }),
  agentkeepalive: new KeepAlive({ keepAlive: true, maxSockets: 1 }),
};
function shows(req, res) {
  const where = [];
  if (JSON.stringify(req.getHeaders()).toLowerCase().includes('proxy-authorization'))
    where.push('header map');
  if (String(req._header).includes(key)) where.push('head');
  if (util.inspect(res, { depth: 4 }).includes(key)) where.push('console.log(res)');
  return where;
}
function get(probe, agent) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: H, path: '/' + probe, agent,
                           headers: { 'X-Probe': probe } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ probe, status: res.statusCode, body, shows: shows(req, res) }));
    });
    req.on('error', (e) => resolve({ probe, error: e.message }));
  });
}
(async () => {
  for (const [name, agent] of Object.entries(agents)) {
    const at = (i) => get(`cred-${name}-${i}`, agent);
    const all = await Promise.all([0, 1, 2, 3].map(at));
    all.push(await at(4), await at(5));
    all.forEach((one) => console.log(JSON.stringify(one)));
    if (agent) agent.destroy();
  }
  const res = await superagent.get(`http://127.0.0.1:${H}/cred-superagent`)
    .set('X-Probe', 'cred-superagent');
  console.log(JSON.stringify({ probe: 'cred-superagent', status: res.status, body: res.text,
                               shows: shows(res.res.req, res) }));
  console.log(res);  // as a user would print it
  http.get(`http://127.0.0.1:${H}/cred-printed`, (plain) => {
    plain.resume();
    plain.on('end', () => console.log(plain));
  });
})();
"""


def test_the_proxy_credential_goes_only_on_the_connection_to_the_gateway(stage: Stage) -> None:
    """Every http:// request carries the agent's credential to the gateway, a reused kept-alive
    connection's too (agentkeepalive's were sent without it: 407), and nothing a program can
    read or print shows it: not the header map (superagent copies it into a redirect), not the
    rendered head, not console.log of the response."""
    got = results(run_node(stage, CREDENTIAL_JS, KEY_B64))
    probes = [f"cred-{agent}-{i}" for agent in ("global", "none", "keep-alive", "agentkeepalive")
              for i in range(6)] + ["cred-superagent"]  # fmt: skip
    assert sorted(got) == sorted(probes), got
    for probe in probes:
        assert got[probe] == {"probe": probe, "status": 200, "body": "gateway", "shows": []}
        assert_through_gateway(stage, probe, "http", f"/{probe}")


#: Clients that follow redirects, each asked for http://api.example.test/<probe>, which the
#: gateway answers with a 302 to argv[1] + <probe>.
REDIRECT_JS = r"""
const superagent = require('superagent');
const got = require('got-11');
const fetch = require('node-fetch-2');
const [landing, prefix] = process.argv.slice(1);
const clients = {
  superagent: (url, headers) => superagent.get(url).set(headers).then((r) => [r.status, r.text]),
  got: (url, headers) => got(url, { headers, retry: 0 }).then((r) => [r.statusCode, r.body]),
  'node-fetch': (url, headers) => fetch(url, { headers })
    .then(async (r) => [r.status, await r.text()]),
};
Promise.all(Object.entries(clients).map(([name, client]) => {
  const probe = prefix + name;
  return client(`http://api.example.test/${probe}`,
                { 'X-Probe': probe, 'X-Location': landing + probe })
    .then(([status, body]) => ({ probe, status, body }), (e) => ({ probe, error: e.message }));
})).then((all) => all.forEach((one) => console.log(JSON.stringify(one))));
"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_redirect_takes_no_proxy_credential_along(stage: Stage, scheme: str) -> None:
    """A 302 the gateway relays: to a NO_PROXY host (with `tf up`, every loopback service), the
    followed request goes direct; to https://, inside a tunnel the gateway may relay blind to
    the origin. Neither may carry the agent's credential."""
    prefix = f"redirect-{scheme}-"
    landing = f"{scheme}://127.0.0.1:{stage.origin(scheme).port}/landing-"
    server_url = LOCAL if scheme == "http" else REMOTE  # LOCAL: 127.0.0.1 goes direct
    got = results(run_node(stage, REDIRECT_JS, landing, prefix, server_url=server_url))
    for name in ("superagent", "got", "node-fetch"):
        probe = prefix + name
        expected = "origin" if scheme == "http" else "gateway"
        assert got[probe] == {"probe": probe, "status": 200, "body": expected}, got
        [first] = [s for s in at(stage.gateway, probe) if s.target.endswith(f"/{probe}")]
        assert (first.target, first.proxy_auth) == (
            f"http://api.example.test/{probe}",
            GATEWAY_AUTH,
        )
        servers = (stage.http_origin,) if scheme == "http" else (stage.gateway,)
        [followed] = [
            seen for server in servers for seen in server.records()
            if seen.target == f"/landing-{probe}"
        ]  # fmt: skip
        assert followed.proxy_auth is None
        assert followed.tunnel == (None if scheme == "http" else landing[8:].split("/")[0])


#: A service on a unix socket (the Docker API's way), asked through an agent bound to it, the
#: global agent and `agent: false`: each request as the service reads it.
UNIX_SOCKET_JS = r"""
const http = require('http');
const fs = require('fs');
const path = process.argv[1];
try { fs.unlinkSync(path); } catch (_) {}
const asked = [];
const server = http.createServer((req, res) => {
  asked.push({ probe: req.headers['x-probe'], url: req.url,
               auth: req.headers['proxy-authorization'] || null });
  res.end('unix');
}).listen(path, async () => {
  const ways = { bound: { agent: new http.Agent({ socketPath: path }) },
                 global: { socketPath: path }, none: { socketPath: path, agent: false } };
  for (const [name, options] of Object.entries(ways)) {
    await new Promise((resolve) => http.get({ host: 'docker.example', path: '/v1.43/' + name,
      headers: { 'X-Probe': 'unix-' + name }, ...options }, (res) => {
      res.resume(); res.on('end', resolve);
    }).on('error', (e) => { asked.push({ probe: 'unix-' + name, error: e.message }); resolve(); }));
  }
  server.close();
  asked.forEach((one) => console.log(JSON.stringify(one)));
});
"""


def test_a_unix_socket_service_gets_neither_the_credential_nor_a_proxy_request(
    stage: Stage, tmp_path: Path
) -> None:
    """`new http.Agent({socketPath})` (axios' `httpAgent` for /var/run/docker.sock...) and
    `socketPath` on a request: no network host, so no gateway: the service gets the request
    as it was made, without the key."""
    got = results(run_node(stage, UNIX_SOCKET_JS, str(tmp_path / "service.sock")))
    assert got == {
        f"unix-{name}": {"probe": f"unix-{name}", "url": f"/v1.43/{name}", "auth": None}
        for name in ("bound", "global", "none")
    }


# ---- undici without Node's fetch ---------------------------------------------------------------

UNDICI_JS = r"""
const undici = require(process.argv[2] || 'undici');
const prefix = process.argv[1];
const state = globalThis[Symbol.for('tameflare.preload')];
console.log(JSON.stringify({ probe: prefix + 'state', fetch: state.fetch, global: typeof fetch }));
const urls = { http: `http://127.0.0.1:${process.env.HTTP_PORT}/`,
               https: `https://127.0.0.1:${process.env.TLS_PORT}/` };
Promise.all(Object.entries(urls).map(async ([scheme, url]) => {
  const probe = prefix + scheme;
  try {
    const r = await undici.request(url + probe, { headers: { 'x-probe': probe } });
    return { probe, status: r.statusCode, body: await r.body.text() };
  } catch (e) { return { probe, error: e.message }; }
})).then((all) => all.forEach((one) => console.log(JSON.stringify(one))));
"""


def test_the_undici_package_is_routed_without_nodes_fetch(stage: Stage, tmp_path: Path) -> None:
    """`--no-experimental-fetch` (in NODE_OPTIONS too): the project's undici package, found
    from the working directory or beside the script, still gets the routed dispatcher."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "node_modules").symlink_to(stage.workdir / "node_modules")
    script = project / "agent.js"
    script.write_text(UNDICI_JS.replace("process.argv[1]", "'undici-script-'"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = stage.env(REMOTE)
    env.update(HTTP_PORT=str(stage.http_origin.port), TLS_PORT=str(stage.tls_origin.port))
    env["NODE_OPTIONS"] += " --no-experimental-fetch"
    beside = subprocess.run(["node", str(script)], env=env, cwd=elsewhere, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    runs = {
        "undici-cwd-": run_node(stage, UNDICI_JS, "undici-cwd-", env=env),
        "undici-script-": beside,
    }
    for prefix, done in runs.items():
        got = results(done)
        assert got[prefix + "state"] == {
            "probe": prefix + "state", "fetch": "undici package", "global": "undefined"
        }, done.stderr[-2000:]  # fmt: skip
        for scheme in ("http", "https"):
            probe = prefix + scheme
            assert got[probe] == {"probe": probe, "status": 200, "body": "gateway"}
            assert_through_gateway(stage, probe, scheme, f"/{probe}")


def test_undici_is_refused_when_there_is_nothing_to_route_it_with(
    stage: Stage, tmp_path: Path
) -> None:
    """No fetch and no undici package where the preload looks: an undici loaded later from
    elsewhere finds a dispatcher that refuses, never its own direct one; `tf doctor` says so."""
    env = stage.env(REMOTE)
    env["NODE_OPTIONS"] += " --no-experimental-fetch"
    undici = str(stage.workdir / "node_modules" / "undici")
    got = results(run_node(stage, UNDICI_JS, "undici-none-", undici, cwd=tmp_path, env=env))
    assert got["undici-none-state"]["fetch"] == "not routed"
    for scheme in ("http", "https"):
        probe = f"undici-none-{scheme}"
        assert got[probe].get("error", "").startswith("tf run: "), got
        assert at(stage.origin(scheme), probe) == at(stage.gateway, probe) == []
    checked = run_node(stage, NODE_CHECK, cwd=tmp_path, env=env)
    ok, detail = judge_node(checked.stdout, checked.stderr)
    assert not ok
    assert "no --no-experimental-fetch" in detail


# ---- the user's own preloads ---------------------------------------------------------------------

#: A preload of the user's that asks for its configuration while it loads.
EARLY_JS = r"""
const probe = 'early-' + require('path').basename(__filename).split('.')[0];
require('https').get({ host: '127.0.0.1', port: process.env.TLS_PORT, path: '/' + probe,
                       headers: { 'X-Probe': probe } }, (res) => res.resume())
  .on('error', () => {});
"""


@pytest.mark.parametrize("how", ["node-options", "command-line", "import"])
def test_a_request_the_users_own_preload_makes_goes_through_the_gateway(
    stage: Stage, tmp_path: Path, how: str
) -> None:
    """`tf run` keeps the NODE_OPTIONS the user had and puts its preload first, so a request
    that a user's `--require` (NODE_OPTIONS, `node -r`) or `--import` makes while it loads
    finds Node's clients routed already (before the fix a NODE_OPTIONS one went direct)."""
    name = how.replace("-", "")
    early = tmp_path / (f"{name}.mjs" if how == "import" else f"{name}.js")
    early.write_text(
        EARLY_JS.replace("require('path').basename(__filename)", f"'{name}'").replace(
            "require('https')", "(await import('node:https')).default"
        )
        if how == "import"
        else EARLY_JS
    )
    mine = {"node-options": f"--require {early}", "import": f"--import {early.as_uri()}"}
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    base["NODE_OPTIONS"] = mine.get(how, "")
    files = SupportFiles(stage.ca_file, tmp_path, NODE_PRELOAD)
    spec = RunSpec(
        f"http://127.0.0.1:{stage.gateway.port}", "Bot", KEY, files,
        no_proxy=control_plane_hosts(REMOTE),
    )  # fmt: skip
    env = build_child_env(base, spec)  # what `tf run` gives the agent
    flags = ("-r", str(early)) if how == "command-line" else ()
    run_node(stage, "0", env=env, flags=flags)  # node ends when the early request has
    assert at(stage.tls_origin, f"early-{name}") == [], env["NODE_OPTIONS"]
    assert_through_gateway(stage, f"early-{name}", "https", f"/early-{name}")
