# ruff: noqa: E501  (agent scripts are embedded verbatim)
"""`tf run --isolate` end to end, with `tf up` and real clients: the clients that honour the
proxy variables work as before; the ones that ignore them fail closed, reach nothing (the
fake upstreams' request logs prove it) and are reported on stderr and in `tf logs`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agentfirewall_proxy.cli.state import load_config
from tests.cli.conftest import Project
from tests.isolate.conftest import (
    host_tool,
    needs_isolation,
    needs_root,
    run_as_root_without_sys_admin,
)

pytestmark = [pytest.mark.slow, needs_isolation]

HONOURING = """
import json, openai, httpx, requests
chat = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
print(json.dumps({
    "requests": requests.get("https://api.github.com/user").status_code,
    "httpx": httpx.get("https://api.github.com/user").status_code,
    "openai": chat.choices[0].message.role,
}))
"""

NODE_FETCH = "fetch('https://api.github.com/user').then(r => console.log('node-fetch', r.status)).catch(e => { console.log('node-fetch', e.message); process.exit(1) })"

BYPASSING = """
import asyncio, json, os, socket
import aiohttp, urllib3
tls, plain = int(os.environ["FAKE_TLS"]), int(os.environ["FAKE_HTTP"])
out = {}

def attempt(name, call):
    try:
        call()
        out[name] = "reached"
    except Exception as exc:
        out[name] = type(exc).__name__

def raw():
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as s:
        s.sendall(b"GET /bypass/raw HTTP/1.1\\r\\nHost: api.github.com\\r\\n\\r\\n")
        if not s.recv(16):
            raise ConnectionError("closed")

async def aio():
    async with aiohttp.ClientSession() as session:  # trust_env=False: ignores the proxy
        async with session.get(f"http://127.0.0.1:{plain}/bypass/aiohttp") as r:
            await r.read()

pool = urllib3.PoolManager(retries=False)
attempt("urllib3", lambda: pool.request("GET", f"http://127.0.0.1:{plain}/bypass/urllib3"))
attempt("urllib3-name", lambda: pool.request("GET", "https://api.github.com/bypass/urllib3-name"))
attempt("aiohttp", lambda: asyncio.run(aio()))
attempt("raw", raw)
attempt("dns", lambda: socket.getaddrinfo("api.github.com", 443))
attempt("ip", lambda: socket.create_connection(("192.0.2.10", 443), timeout=5).close())
seen = b""  # everything the agent can read of the processes it can see
for pid in filter(str.isdigit, os.listdir("/proc")):
    for part in ("environ", "cmdline"):
        try:
            seen += open(f"/proc/{pid}/{part}", "rb").read()
        except OSError:
            pass
open("seen.bin", "wb").write(seen)
print(json.dumps(out))
"""

NODE_HTTPS = """
require('https').get({host: '127.0.0.1', port: Number(process.env.FAKE_TLS), path: '/bypass/node', rejectUnauthorized: false},
  r => { console.log('node-https reached', r.statusCode) }).on('error', e => console.log('node-https', e.code))
"""


def _fake_env(project: Project) -> dict[str, str]:
    assert project.fakes is not None
    github = project.fakes["github"]
    return {"FAKE_TLS": str(github.tls_port), "FAKE_HTTP": str(github.http_port)}


def _bypassed(project: Project) -> list[str]:
    assert project.fakes is not None
    return [
        r.path for name in ("github", "openai", "git")
        for r in project.fakes[name].received() if "bypass" in r.path
    ]  # fmt: skip


def _blocked_records(project: Project) -> list[dict[str, Any]]:
    data = project.tf_json("logs", "--agent", "Bot", "--last", "200")
    return [t for t in data["traffic"] if t["action"] == "isolate.direct_connection"]


def test_honouring_clients_work_as_before(isolated_project: Project) -> None:
    project = isolated_project
    assert project.fakes is not None
    git, node = host_tool("git"), host_tool("node")
    curl = host_tool("curl")
    project.agent("honour.py", HONOURING)
    project.agent("fetch.js", NODE_FETCH)
    script = (
        "python honour.py && "
        f"{curl} -sS -o /dev/null -w 'curl %{{http_code}}\\n' https://api.github.com/user && "
        f"{git} ls-remote https://github.com/acme/api.git | head -1 && "
        f"{node} fetch.js"
    )
    done = project.tf("run", "--name", "Bot", "--isolate", "--", "bash", "-c", script)
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"requests": 200, "httpx": 200, "openai": "assistant"}
    assert lines[1] == "curl 200"
    assert lines[2].endswith("HEAD")  # git ls-remote through the gateway
    assert lines[3] == "node-fetch 200"
    assert "isolated" in done.stderr
    assert "blocked" not in done.stderr
    # the connector's credential reached the fakes, through the gateway
    assert "ghp_isolate_real_token" in (
        project.fakes["github"].last().header("authorization") or ""
    )
    assert project.fakes["openai"].received("POST", "/v1/chat/completions")


def test_bypassing_clients_fail_closed_reach_nothing_and_are_reported(
    isolated_project: Project,
) -> None:
    project = isolated_project
    node = host_tool("node")
    project.agent("bypass.py", BYPASSING)
    project.agent("https.js", NODE_HTTPS)
    env = _fake_env(project)
    script = f"python bypass.py; {node} https.js"
    admin = (project.root / ".tf" / "admin.token").read_text().strip()
    done = project.tf("run", "--name", "Bot", "--isolate", "--", "bash", "-c", script,
                      env={**env, "TF_ADMIN_TOKEN": admin})  # fmt: skip
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[0])
    assert set(result) == {"urllib3", "urllib3-name", "aiohttp", "raw", "dns", "ip"}
    assert "reached" not in result.values(), result
    # no process the agent can see holds `tf run`'s secrets (the sandbox's own environment is
    # only what finds Python; the agent runs as root here, so it reads PID 1's)
    seen = (project.root / "seen.bin").read_bytes()
    assert b"TF_ADMIN_TOKEN" not in seen
    assert admin.encode() not in seen
    assert result["dns"] == "gaierror"
    assert lines[1] == "node-https ECONNREFUSED"
    assert _bypassed(project) == []  # nothing reached any upstream
    # reported: on stderr, and in `tf logs` (records sent before `tf run` returned)
    assert "--isolate blocked" in done.stderr
    records = _blocked_records(project)
    hosts = {t["host"] for t in records}
    # each record names this run and counts its attempts: "run 3f9c0a12 #1" ... "#N"
    run = records[-1]["path"].split("#")[0]
    numbers = sorted(int(t["path"].split("#")[1]) for t in records if t["path"].startswith(run))
    assert numbers == list(range(1, len(numbers) + 1))
    assert f"--isolate blocked {len(numbers)} direct connection" in done.stderr
    tls, plain = env["FAKE_TLS"], env["FAKE_HTTP"]
    assert {f"127.0.0.1:{tls}", f"127.0.0.1:{plain}", "api.github.com", "192.0.2.10:443"} <= hosts
    shown = project.tf("logs", "--agent", "Bot", "--last", "50").stdout
    assert "isolate.direct_connection" in shown
    assert "deny" in shown


def test_without_isolate_the_same_raw_socket_does_reach_the_upstream(
    isolated_project: Project,
) -> None:
    """The control for the test above: the bypass is real when nothing isolates the agent."""
    project = isolated_project
    project.agent("bypass.py", BYPASSING)
    done = project.tf("run", "--name", "Bot", "--no-isolate", "--", "python", "bypass.py",
                      env=_fake_env(project))  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1])["raw"] == "reached"
    assert "/bypass/raw" in _bypassed(project)
    assert project.fakes is not None
    project.fakes["github"].clear()


def test_exit_codes_pass_through(isolated_project: Project) -> None:
    done = isolated_project.tf("run", "--name", "Bot", "--isolate", "--",
                               "python", "-c", "raise SystemExit(7)", check=False)  # fmt: skip
    assert done.returncode == 7
    missing = isolated_project.tf("run", "--name", "Bot", "--isolate", "--",
                                  "no-such-agent-command", check=False)  # fmt: skip
    assert missing.returncode == 127
    assert "command not found: `no-such-agent-command`" in missing.stderr


def test_project_and_agent_defaults(isolated_project: Project) -> None:
    project = isolated_project
    host_net = os.readlink("/proc/self/ns/net")
    show = ["python", "-c", "import os; print(os.readlink('/proc/self/ns/net'))"]
    project.tf("agent", "add", "Iso", "--isolate")
    config = (project.root / ".tf" / "config.yaml").read_text()
    assert "isolate_agents:\n- Iso" in config
    isolated = project.tf("run", "--name", "Iso", "--", *show).stdout.strip()
    assert isolated.startswith("net:[")
    assert isolated != host_net
    plain = project.tf("run", "--name", "Iso", "--no-isolate", "--", *show).stdout.strip()
    assert plain == host_net
    config_path = project.root / ".tf" / "config.yaml"
    project.tf("agent", "isolate", "Iso", "--off")
    assert load_config(config_path).isolate_agents == ()
    project.tf("agent", "isolate", "Iso")
    assert load_config(config_path).isolate_agents == ("Iso",)


@needs_root
def test_refusal_names_the_fix_and_runs_nothing(isolated_project: Project, tmp_path: Path) -> None:
    """Root without CAP_SYS_ADMIN (a container's default) cannot make namespaces: `tf run
    --isolate` refuses before the agent starts, and says how to fix it."""
    marker = tmp_path / "ran"
    project = isolated_project
    done = run_as_root_without_sys_admin(
        ["tf", "run", "--name", "Bot", "--isolate", "--", "touch", str(marker)],
        cwd=project.root, env=project.env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--isolate is unavailable here: cannot create the namespaces" in done.stderr
    assert "CAP_SYS_ADMIN" in done.stderr
    assert not marker.exists()
    doctor = run_as_root_without_sys_admin(["tf", "doctor", "--isolate"], env=project.env)
    assert doctor.returncode == 1
    assert "Operation not permitted" in doctor.stdout
