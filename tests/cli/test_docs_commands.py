"""Every command block of README.md and docs/quickstart.md, run as a newcomer would.

1. README's two commands in a clean clone, in a fresh virtualenv: `pip install -e '.[proxy]'`
   then `tf up` (kept running, in the background), `pip install -e '.[dev]'` then pytest (on one
   test file: the full suite is this very run).
2. In an empty directory, with that clone's `tf up` still holding the default ports: every
   ```bash block of docs/quickstart.md, then README's quick start block, as one bash script.
   The package index serves the `tameflare` wheel built from this checkout (PIP_FIND_LINKS),
   as PyPI would once it is published.

Only these lines are changed, and each is asserted to be in the docs as written: the
long-running `tf up` runs in the background (with --resolve to the local fake GitHub, started
under `default_ports()`, as the clone's is: another test file may start one at once), and so
does `tf run … my_agent.py` while it waits for its approval; `apv_...`/`<id>` become the pending
approval's id; `ghp_xxx` a test token; `tf logs --follow` is skipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import DEFAULT_PORTS, REPO, default_ports, fresh_venv, wait_for
from tests.fakes import FakeUpstreams
from tests.machinelock import lock_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

RUN_AGENT = 'tf run --name "Bot" python my_agent.py'
PROLOGUE = """\
set -euo pipefail
wait_up() {
  for _ in $(seq 900); do [ -s .tf/up.json ] && return 0; sleep 0.1; done
  cat tf-up.log; return 1
}
pending_id() {
  for _ in $(seq 900); do
    id=$(tf approvals list --json | python -c \\
      'import json,sys; a=json.load(sys.stdin)["approvals"]; print(a[0]["id"] if a else "")')
    if [ -n "$id" ]; then echo "$id"; return 0; fi
    sleep 0.1
  done
  return 1
}
"""


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)


def _script(
    blocks: list[str], fakes: FakeUpstreams, token: str, ports_lock: Path | None = None
) -> str:
    resolve = " ".join(f"--resolve {entry}" for entry in fakes.resolve_entries())
    lock = shlex.quote(str(ports_lock or lock_file(DEFAULT_PORTS)))
    up_line = (  # `default_ports()` held from before `tf up` chooses its ports until it is up
        f"exec 9>>{lock}; flock 9; "  # (fd 9: the lock; `tf up` is not given it)
        f"tf up {resolve} --upstream-ca {fakes.ca_path} 9>&- > tf-up.log 2>&1 & "
        "echo $! > tf-up.pid; wait_up; exec 9>&-"
    )
    lines, started, agents = [PROLOGUE], False, 0
    for block in blocks:
        for line in block.replace("ghp_xxx", token).splitlines():
            command = line.split("  #")[0].strip()
            if command == "tf up":
                lines.append(up_line if not started else ": tf up runs already")
                started = True
            elif command == RUN_AGENT:
                agents += 1
                lines.append(f"{RUN_AGENT} > agent-{agents}.out 2> agent-{agents}.err & AGENT=$!")
            elif "apv_..." in command or "<id>" in command:
                pending = '"$(pending_id)"'
                lines.append(command.replace("apv_...", pending).replace("<id>", pending))
                lines.append('wait "$AGENT"')
            elif "--follow" in command:
                lines.append(": " + command)  # long-running: `tf logs` above shows the same
            else:
                lines.append(line)
    assert started
    return "\n".join(lines) + "\n"


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="tf up to stop")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)


def _readme_in_a_clone(tmp_path: Path, readme: str, started: list[subprocess.Popen[str]]) -> Path:
    first = _blocks(readme)[0].strip().splitlines()
    commands = [line.split("  #")[0].strip() for line in first]
    assert commands == [
        "pip install -e '.[proxy]' && tf up",
        "pip install -e '.[dev]' && python -m pytest",
    ]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = fresh_venv(tmp_path / "venv-clone")
    install, _, up = commands[0].partition(" && ")
    run = {"cwd": clone, "env": env, "capture_output": True, "text": True, "check": False}
    done = subprocess.run(["bash", "-c", install], timeout=900, **run)
    assert done.returncode == 0, done.stderr[-3000:]
    up_file = clone / ".tf" / "up.json"
    with default_ports():
        with open(tmp_path / "clone-up.log", "w") as log:
            server = subprocess.Popen(
                ["bash", "-c", f"exec {up}"], cwd=clone, env=env, stdout=log,
                stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        started.append(server)
        (tmp_path / "clone-up.pid").write_text(str(server.pid))
        wait_for(lambda: up_file.exists() or server.poll() is not None, timeout=300)
    assert up_file.exists(), _read(tmp_path / "clone-up.log")
    dashboard = json.loads(up_file.read_text())["dashboard_url"]
    assert httpx.get(dashboard, timeout=30).status_code < 400
    dev = commands[1].replace("python -m pytest", "python -m pytest -q tests/cli/test_output.py")
    done = subprocess.run(["bash", "-c", dev], timeout=1200, **run)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    return clone


def test_readme_and_quickstart_run_as_written(
    tmp_path: Path, tameflare_dist: Path, upstreams: FakeUpstreams
) -> None:
    readme = (REPO / "README.md").read_text()
    quickstart = (REPO / "docs" / "quickstart.md").read_text()
    github = upstreams["github"]
    github.clear()
    token = "ghp_docs" + secrets.token_hex(12)
    project, second = tmp_path / "my-agent", tmp_path / "readme-agent"
    project.mkdir()
    second.mkdir()
    started: list[subprocess.Popen[str]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for name in ("TF_SERVER", "TF_ADMIN_TOKEN", "HTTPS_PROXY", "HTTP_PROXY", "NODE_OPTIONS"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PIP_FIND_LINKS"] = f"{tameflare_dist} {env.get('PIP_FIND_LINKS', '')}".strip()
    env["COLUMNS"] = "100"
    output = ""
    try:
        clone = _readme_in_a_clone(tmp_path, readme, started)
        assert len(_blocks(readme)) == 2
        # the quickstart, in an empty directory
        output += _run_script(project, _script(_blocks(quickstart), upstreams, token), env)
        # README's quick start in another one (a third `tf up` on this machine), with the
        # my_agent.py the quickstart wrote (README: "docs/quickstart.md writes my_agent.py")
        (second / "my_agent.py").write_text((project / "my_agent.py").read_text())
        output += _run_script(second, _script(_blocks(readme)[1:], upstreams, token), env)
    finally:
        _stop(project / "tf-up.pid")
        _stop(second / "tf-up.pid")
        _stop(tmp_path / "clone-up.pid")
        for process in started:
            process.wait(timeout=30)

    for out in (project / "agent-1.out", second / "agent-1.out"):  # quickstart's, README's
        lines = out.read_text().splitlines()
        assert lines[0] == "open PR: 201", lines
        assert lines[1].startswith("delete repo: 403 "), lines
        assert '"action":"github.repo.delete"' in lines[1].replace(" ", "")
        assert lines[2] == "merge: 200", lines
    assert len(github.received("PUT", "/repos/acme/api/pulls/1/merge")) >= 2
    assert token in (github.received("POST", "/repos/acme/api/pulls")[0].header("authorization"))
    # the project's `tf up` moved off the ports the clone's holds, and said so
    ours = _read(project / "tf-up.log")
    logs = [_read(tmp_path / "clone-up.log"), ours, _read(second / "tf-up.log")]
    dashboards = [re.findall(r"dashboard: (http://\S+)", log) for log in logs]
    assert [len(d) for d in dashboards] == [1, 1, 1]
    assert len({d[0] for d in dashboards}) == 3  # three projects, three servers at once
    if dashboards[0][0] == "http://127.0.0.1:3000/dashboard":  # (else another program has it)
        assert "server port 3000 is taken" in ours
        assert "server port 3000 is taken" in logs[2]
    assert (project / ".venv" / "bin" / "tf").exists()  # installed by the quickstart itself
    assert "tf (tameflare) 0.1.0" in output
    assert "DeprecationWarning" not in output + ours
    assert (clone / ".tf").is_dir()
    assert (project / ".tf").is_dir()
    assert (second / ".tf").is_dir()


def _run_script(directory: Path, script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", script], cwd=directory, env=env, capture_output=True, text=True,
        timeout=1200, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{output[-6000:]}\n{_read(directory / 'tf-up.log')}"
    return output


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
