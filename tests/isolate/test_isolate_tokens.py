"""Where `tf run --isolate` sends its blocked-connection records: the project's gateway token
(which unlocks every vaulted credential) goes only to the project's own server, and never
through a proxy of the user's environment; and `tf run --isolate` itself, which holds the
admin token, is not dumpable while the agent runs (no same-user process reads its
``/proc/PID/environ``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import Project
from tests.cli.recorder import recording
from tests.isolate.conftest import needs_isolation

pytestmark = [pytest.mark.slow, needs_isolation]

BLOCKED = """
import socket
try:
    socket.create_connection(("127.0.0.1", 5432), 2)
except OSError as exc:
    print("agent:", type(exc).__name__)
"""

#: what `tf run` asks a control plane before it starts an agent
_CONTROL_PLANE = {
    "/api/v1/agents": {"agents": []},
    "/api/v1/agents/ensure": {
        "agent": {"name": "Bot", "enforcement_level": "full_enforce"},
        "api_key": "aaf_live_" + "0" * 32,
    },
    "/api/v1/status": {"gateway": {"proxies": []}},
}


def _gateway_token(project: Project) -> str:
    return (project.root / ".tf" / "gateway.token").read_text().strip()


def test_a_server_named_by_server_never_gets_the_projects_gateway_token(
    isolated_project: Project,
) -> None:
    project = isolated_project
    project.agent("blocked.py", BLOCKED)
    proxy = json.loads((project.root / ".tf" / "up.json").read_text())["proxy_url"]
    with recording(_CONTROL_PLANE) as named:
        env = {"TF_ADMIN_TOKEN": "tfa_for_the_named_server", "TF_PROXY": proxy}
        done = project.tf("run", "--isolate", "--server", named.url, "--name", "Bot",
                          "--", "python", "blocked.py", env=env)  # fmt: skip
    assert "agent: ConnectionRefusedError" in done.stdout
    assert "--isolate blocked 1 direct connection" in done.stderr
    assert _gateway_token(project) not in named.everything()
    assert [r.target for r in named.requests if "/gateway/" in r.target] == []
    # with the named server's own gateway token, the records go there
    with recording(_CONTROL_PLANE) as named:
        env["TF_GATEWAY_TOKEN"] = "tfg_of_the_named_server"
        project.tf("run", "--isolate", "--server", named.url, "--name", "Bot",
                   "--", "python", "blocked.py", env=env)  # fmt: skip
    sent = [r for r in named.requests if r.target == "/api/v1/gateway/traffic"]
    assert sent
    assert {r.authorization for r in sent} == {"Bearer tfg_of_the_named_server"}


def test_records_never_go_through_the_users_http_proxy(isolated_project: Project) -> None:
    project = isolated_project
    project.agent("blocked.py", BLOCKED)
    with recording() as users_proxy:
        proxies = {name: users_proxy.url for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY")}
        done = project.tf("run", "--isolate", "--name", "Bot", "--", "python", "blocked.py",
                          env=proxies)  # fmt: skip
    assert users_proxy.requests == []
    assert "--isolate blocked 1 direct connection" in done.stderr
    assert "not recorded" not in done.stderr  # they reached the project's own server


# `tf run`, its `Supervisor.wait` wrapped to ask the kernel (PR_GET_DUMPABLE) while the agent runs
WATCHED = """
import ctypes, sys
from agentfirewall_proxy.cli import main, run_cmd
real = run_cmd.Supervisor.wait
def wait(self, child):
    dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)
    print("tf run dumpable while the agent runs:", dumpable, file=sys.stderr, flush=True)
    return real(self, child)
run_cmd.Supervisor.wait = wait
raise SystemExit(main(sys.argv[1:]))
"""


def test_tf_run_isolate_is_not_dumpable_while_the_agent_runs(isolated_project: Project) -> None:
    project = isolated_project
    admin = (project.root / ".tf" / "admin.token").read_text().strip()
    done = subprocess.run(
        [sys.executable, "-c", WATCHED, "run", "--name", "Bot", "--isolate", "--", "true"],
        cwd=project.root, env={**project.env, "TF_ADMIN_TOKEN": admin},
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tf run dumpable while the agent runs: 0" in done.stderr
