"""Every common Node HTTP client goes through the gateway under `tf run`, and `tf doctor` says so.

node-fetch 2 and 3, got 11 and 14, axios, superagent, request-promise, the undici package's
request and fetch, Node's own fetch and https module (global agent, ``new https.Agent()``,
``agent: false``), agentkeepalive, and an https-proxy-agent the user made from HTTPS_PROXY:
under a real `tf run`, each asks the fake GitHub for a path of its own. The fake receives each
request from the gateway only (the vaulted token injected, the gateway's request id on it; a
client that bypassed cannot even resolve ``api.github.com`` here), and the gateway's traffic
records name each one. Plain ``http://`` goes through too: every client gets the gateway's own
403 for a host that has a connector and no permission. Before the fix node-fetch and got
failed with ``ENOTFOUND api.github.com`` (their own DNS lookup: a direct connection), and so did
Node's https module, superagent and agentkeepalive.

The clients come from ``tests/cli/node_clients`` (its lockfile), installed with ``npm ci`` when
missing or older than the lockfile, once per machine (:mod:`tests.node.support`): about 40 MB
and 20 s the first time, nothing after. ``.ci/run`` does not install them: the first test does.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Project, wait_for
from tests.node.support import install_dev_dependencies

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(600)]

PACKAGE = Path(__file__).with_name("node_clients")

#: `node clients.mjs TEMPLATE CLIENT...`: one JSON line per client, each asking TEMPLATE with
#: `{client}` replaced by its own name (a client's error, not a crash, when it fails).
CLIENTS_JS = r"""
import { createRequire } from 'node:module';
import http from 'node:http';
import https from 'node:https';

const require = createRequire(import.meta.url);
const [template, ...names] = process.argv.slice(2);
const headers = { authorization: 'token ' + (process.env.GITHUB_TOKEN || 'none') };
const secure = template.startsWith('https:');
const nodeModule = secure ? https : http;

function viaAgent(url, agent) {
  return new Promise((resolve, reject) => {
    const req = nodeModule.request(url, { headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve([res.statusCode, body]));
    });
    req.on('error', reject);
    req.setTimeout(20000, () => req.destroy(new Error('timed out')));
    req.end();
  });
}

const text = async (r) => [r.status, await r.text()];
const CLIENTS = {
  'fetch': (url) => fetch(url, { headers }).then(text),
  'node-fetch-2': (url) => require('node-fetch-2')(url, { headers }).then(text),
  'node-fetch-3': async (url) => (await import('node-fetch')).default(url, { headers }).then(text),
  'got-11': async (url) => {
    const r = await require('got-11')(url, { headers, throwHttpErrors: false, retry: 0 });
    return [r.statusCode, r.body];
  },
  'got-14': async (url) => {
    const got = (await import('got')).default;
    const r = await got(url, { headers, throwHttpErrors: false, retry: { limit: 0 } });
    return [r.statusCode, r.body];
  },
  'axios': async (url) => {
    const r = await require('axios').get(url, {
      headers, validateStatus: () => true, transformResponse: (x) => x });
    return [r.status, r.data];
  },
  'superagent': async (url) => {
    const r = await require('superagent').get(url).set(headers).ok(() => true);
    return [r.status, r.text];
  },
  'request-promise': async (url) => {
    const r = await require('request-promise')({
      uri: url, headers, resolveWithFullResponse: true, simple: false });
    return [r.statusCode, r.body];
  },
  'undici-request': async (url) => {
    const r = await require('undici').request(url, { headers });
    return [r.statusCode, await r.body.text()];
  },
  'undici-fetch': (url) => require('undici').fetch(url, { headers }).then(text),
  'node-global-agent': (url) => viaAgent(url, undefined),
  'node-new-agent': (url) => viaAgent(url, new nodeModule.Agent({ keepAlive: true })),
  'node-agent-false': (url) => viaAgent(url, false),
  'agentkeepalive': (url) => {
    const KeepAlive = require('agentkeepalive');
    return viaAgent(url, secure ? new KeepAlive.HttpsAgent() : new KeepAlive());
  },
  'https-proxy-agent': (url) => {
    const { HttpsProxyAgent } = require('https-proxy-agent');
    return viaAgent(url, new HttpsProxyAgent(process.env.HTTPS_PROXY));
  },
};

for (const name of names) {
  try {
    const [status, body] = await CLIENTS[name](template.replace('{client}', name));
    console.log(JSON.stringify({ client: name, status, body: String(body) }));
  } catch (e) {
    const why = String((e && e.code) || '') + ' ' + String(e && (e.cause || e.message || e));
    console.log(JSON.stringify({ client: name, error: why }));
  }
}
"""
#: Every client, for http:// and https:// alike...
CLIENTS = (
    "fetch",
    "node-fetch-2",
    "node-fetch-3",
    "got-11",
    "got-14",
    "axios",
    "superagent",
    "request-promise",
    "undici-request",
    "undici-fetch",
    "node-global-agent",
    "node-new-agent",
    "node-agent-false",
    "agentkeepalive",
)
#: ... and one for https:// only (its agent tunnels whatever it is given)
HTTPS_CLIENTS = (*CLIENTS, "https-proxy-agent")


def node_clients() -> Path:
    """The installed ``node_modules`` of tests/cli/node_clients (skips without node and npm)."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("needs Node.js and npm on PATH (Debian: apt-get install nodejs npm)")
    install_dev_dependencies(npm, PACKAGE)
    return PACKAGE / "node_modules"


def write_clients(where: Path, *, with_modules: bool = True) -> Path:
    """`clients.mjs` in `where`, with the clients' node_modules beside it when asked."""
    modules = node_clients()
    if with_modules:
        (where / "node_modules").symlink_to(modules, target_is_directory=True)
    script = where / "clients.mjs"
    script.write_text(CLIENTS_JS)
    return script


def answers(stdout: str) -> dict[str, dict[str, Any]]:
    """Each client's line of `clients.mjs` output, by client."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {line["client"]: line for line in lines}


def _allow_github(project: Project, token: str) -> None:
    project.up()
    project.tf("connector", "add", "github", "--token", token)
    project.tf("connector", "add", "generic", "--domains", "plain.test")
    project.tf(
        "permissions", "set", "--gateway", "Bot", "--connector", "github", "--action",
        "github.*", "--decision", "allow",
    )  # fmt: skip


def _traffic(project: Project, wanted: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The gateway's records, once every (host, path) in `wanted` is among them."""

    def arrived() -> list[dict[str, Any]] | None:
        traffic = project.tf_json("logs", "--agent", "Bot", "--last", "200")["traffic"]
        seen = {(t.get("host"), t.get("path")) for t in traffic}
        return traffic if wanted <= seen else None

    return list(wait_for(arrived, timeout=60, what="every client's traffic record"))


def test_every_node_client_goes_through_the_gateway_under_tf_run(project: Project) -> None:
    assert project.fakes is not None
    github = project.fakes["github"]
    github.clear()
    token = "ghp_node" + secrets.token_hex(10)
    _allow_github(project, token)
    write_clients(project.root)

    done = project.tf(
        "run", "--name", "Bot", "node", "clients.mjs",
        "https://api.github.com/repos/acme/{client}/pulls", *HTTPS_CLIENTS, timeout=240,
    )  # fmt: skip
    got = answers(done.stdout)
    assert {name: got.get(name, {}).get("status") for name in HTTPS_CLIENTS} == dict.fromkeys(
        HTTPS_CLIENTS, 200
    ), done.stdout + done.stderr[-3000:]
    for name in HTTPS_CLIENTS:
        [seen] = github.received("GET", f"/repos/acme/{name}/pulls")
        assert seen.header("authorization") == f"token {token}", name  # injected by the gateway
        assert seen.header("x-tameflare-request-id"), name

    plain = project.tf(
        "run", "--name", "Bot", "node", "clients.mjs", "http://plain.test/{client}", *CLIENTS,
        timeout=240,
    )  # fmt: skip
    refused = answers(plain.stdout)
    for name in CLIENTS:
        assert refused.get(name, {}).get("status") == 403, plain.stdout + plain.stderr[-3000:]
        body = json.loads(refused[name]["body"])
        assert body["request_id"], name  # the gateway's own answer
        assert body["action"] == "http.get", name

    wanted = {("api.github.com", f"/repos/acme/{name}/pulls") for name in HTTPS_CLIENTS}
    wanted |= {("plain.test", f"/{name}") for name in CLIENTS}
    records = {(t["host"], t["path"]): t for t in _traffic(project, wanted)}
    for name in HTTPS_CLIENTS:
        assert records["api.github.com", f"/repos/acme/{name}/pulls"]["decision"] == "allow"
    for name in CLIENTS:
        assert records["plain.test", f"/{name}"]["decision"] == "deny"
    assert token not in done.stdout + plain.stdout  # the agent never sees the credential


def _doctor(project: Project, path: str | None = None) -> dict[str, dict[str, Any]]:
    env = {"PATH": path} if path else None
    done = project.tf("doctor", "--json", check=False, env=env, timeout=300)
    return {c["name"]: c for c in json.loads(done.stdout)}


NODE_DOCTOR_CHECKS = ("node", "node fetch", "node https", "node-fetch", "got", "axios", "undici")


@pytest.fixture
def doctor_project(bare_project: Project) -> Project:
    bare_project.up()
    bare_project.tf("connector", "add", "generic", "--domains", "doctor.test")
    (bare_project.root / "node_modules").symlink_to(node_clients(), target_is_directory=True)
    return bare_project


def _wrapped_node(where: Path, project: Project, before: str = "", flags: str = "") -> str:
    """A PATH whose `node` is the real one, started after `before` (shell) with `flags`."""
    bin_dir = where / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "node"
    wrapper.write_text(f'#!/bin/sh\n{before}\nexec {shutil.which("node")} {flags} "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:{project.env['PATH']}"


def test_doctor_checks_the_preload_and_the_projects_node_clients(
    doctor_project: Project, tmp_path: Path
) -> None:
    checks = _doctor(doctor_project)
    for name in NODE_DOCTOR_CHECKS:
        assert checks[name]["ok"] is True, checks[name]
    assert "the preload routes the http/https agents and fetch" in checks["node"]["detail"]
    assert checks["node-fetch"]["detail"] == "through the gateway, CA trusted"

    # NODE_OPTIONS replaced (a wrapper script, a Dockerfile): the preload never loads
    unloaded = _doctor(
        doctor_project, _wrapped_node(tmp_path, doctor_project, "unset NODE_OPTIONS")
    )
    assert unloaded["node"]["ok"] is False
    assert "did not load the preload" in unloaded["node"]["detail"]
    assert "keep NODE_OPTIONS" in unloaded["node"]["detail"]
    for name in ("node fetch", "node https", "node-fetch", "got", "undici"):
        assert unloaded[name]["ok"] is False, unloaded[name]
        assert "keep NODE_OPTIONS" in unloaded[name]["detail"], unloaded[name]
    # a library that is not in the project is not checked
    (doctor_project.root / "node_modules").unlink()
    missing = _doctor(doctor_project)
    assert missing["got"]["ok"] is None
    assert missing["got"]["detail"] == "not installed (not checked)"


def test_doctor_says_what_to_do_when_node_is_too_old(
    doctor_project: Project, tmp_path: Path
) -> None:
    # the real node, reporting the version of one older than the preload supports
    old = tmp_path / "old-node.js"
    old.write_text(
        "Object.defineProperty(process, 'version', {value: 'v16.20.2'});\n"
        "Object.defineProperty(process.versions, 'node', {value: '16.20.2'});\n"
    )
    checks = _doctor(
        doctor_project, _wrapped_node(tmp_path, doctor_project, flags=f"--require {old}")
    )
    node = checks["node"]
    assert node["ok"] is False
    assert "Node v16.20.2 is older than Node 18" in node["detail"]
    assert "install Node 18 or later" in node["detail"]
