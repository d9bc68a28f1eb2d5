"""`tf doctor`: is the state sound, the server up, the gateway listening, and do the clients
on this machine really go through it?

The client probes run each client (Python requests, httpx and urllib, curl, Node's fetch) in
exactly the environment `tf run` gives an agent, as the agent ``tf-doctor`` (which has no
permissions). A client passes when it gets the gateway's own 403 answer over TLS for a
connector's domain: that proves it used the proxy *and* trusted the gateway's CA. Nothing
reaches the real API: the gateway denies before connecting upstream.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_OK, CliError
from agentfirewall_proxy.cli.run_cmd import NODE_PRELOAD, is_listening
from agentfirewall_proxy.runenv import (
    RunSpec,
    build_ca_bundle,
    build_child_env,
    read_system_ca,
    write_support_files,
)

__all__ = ["register"]

DOCTOR_AGENT = "tf-doctor"
_PY = {
    "python requests": "import requests,sys; r=requests.get(sys.argv[1],timeout=15); "
    "print(r.status_code); print(r.text)",
    "python httpx": "import httpx,sys; r=httpx.get(sys.argv[1],timeout=15); "
    "print(r.status_code); print(r.text)",
    "python urllib": "import urllib.request as u,urllib.error as e,sys\n"
    "try:\n r=u.urlopen(sys.argv[1],timeout=15); print(r.status); print(r.read().decode())\n"
    "except e.HTTPError as x:\n print(x.code); print(x.read().decode())",
}
_NODE = (
    "fetch(process.argv[1]).then(async r=>{console.log(r.status);console.log(await r.text())})"
    ".catch(e=>{console.log('error');console.log(String(e&&e.cause||e))})"
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _state_checks(ctx: Context) -> list[Check]:
    project = ctx.project
    if project is None:
        return [Check("state", False, "no .tf/ here or above: run `tf init`")]
    checks = [Check("state", True, str(project.state_dir))]
    loose = [
        p.name
        for p in project.state_dir.iterdir()
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    checks.append(
        Check(
            "file modes",
            not loose,
            "all 0600"
            if not loose
            else "readable by others: " + ", ".join(loose) + " (chmod 600 them)",
        )
    )
    checks.append(_ca_check(project.state_dir / "ca.crt"))
    return checks


def _ca_check(path: Path) -> Check:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("gateway CA", False, f"{path}: {exc} (`tf up` creates it)")
    until = cert.not_valid_after_utc.date().isoformat()
    return Check("gateway CA", True, f"{path} ({cert.subject.rfc4514_string()}, until {until})")


def _probe_commands() -> dict[str, list[str]]:
    commands = {name: [sys.executable, "-c", code] for name, code in _PY.items()}
    if shutil.which("curl"):
        commands["curl"] = ["curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}", "-o", "-"]
    if shutil.which("node"):
        commands["node fetch"] = ["node", "-e", _NODE]
    return commands


def _judge(name: str, output: str) -> tuple[bool, str]:
    lines = output.strip().splitlines()
    if not lines:
        return False, "no output"
    if name == "curl":  # body first, status last
        status, body = lines[-1], "\n".join(lines[:-1])
    else:
        status, body = lines[0], "\n".join(lines[1:])
    try:
        answer: Any = json.loads(body)
    except ValueError:
        answer = None
    if status == "403" and isinstance(answer, dict) and "request_id" in answer:
        return True, "through the gateway, CA trusted"
    return False, f"{status}: {body.strip()[:160]}"


def _client_checks(ctx: Context, env: dict[str, str], url: str) -> list[Check]:
    checks = []
    for name, command in _probe_commands().items():
        try:
            done = subprocess.run(
                [*command, url],
                env=env,
                capture_output=True,
                text=True,
                timeout=40,
                check=False,
            )
            ok, detail = _judge(name, done.stdout + ("" if done.stdout else done.stderr))
        except subprocess.TimeoutExpired:
            ok, detail = False, "timed out"
        checks.append(Check(name, ok, detail))
    return checks


def doctor(ctx: Context) -> int:
    checks = _state_checks(ctx)
    target = ctx.target()
    try:
        with ctx.client() as client:
            status = client.get("/v1/status")
            domains = [
                d
                for c in client.get("/v1/connectors").get("connectors", [])
                for d in c.get("domains", [])
                if "*" not in d
            ]
            ensured = client.post("/v1/agents/ensure", {"name": DOCTOR_AGENT})
        checks.append(Check("server", True, f"{target.server_url} (admin token accepted)"))
        online = bool((status.get("gateway") or {}).get("online"))
        checks.append(Check("gateway heartbeat", online, "online" if online else "none yet"))
    except CliError as exc:
        checks.append(Check("server", False, f"{exc.message}: {exc.hint or ''}"))
        return _report(ctx, checks)
    listening = is_listening(target.proxy_url)
    checks.append(Check("gateway proxy", listening, target.proxy_url))
    project = ctx.project
    if listening and project is not None and domains:
        run_dir = project.state_dir / "run"
        ca = (project.state_dir / "ca.crt").read_text(encoding="ascii")
        bundle = build_ca_bundle(read_system_ca(ctx.env, run_dir / "ca-bundle.pem"), ca)
        files = write_support_files(run_dir, bundle, NODE_PRELOAD.read_text(encoding="utf-8"))
        spec = RunSpec(target.proxy_url, DOCTOR_AGENT, str(ensured["api_key"]), files)
        env = build_child_env(dict(os.environ), spec)
        with ctx.out.progress("running each HTTP client through the gateway"):
            checks += _client_checks(ctx, env, f"https://{domains[0]}/tameflare-doctor-probe")
    elif listening:
        checks.append(Check("clients", False, "not probed: add a connector first"))
    return _report(ctx, checks)


def _report(ctx: Context, checks: list[Check]) -> int:
    def render() -> None:
        ctx.out.table(
            ("check", "ok", "detail"), ((c.name, "✓" if c.ok else "✗", c.detail) for c in checks)
        )

    ctx.out.result([c.__dict__ for c in checks], render)
    return EXIT_OK if all(c.ok for c in checks) else EXIT_ERROR


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add_command(
        sub,
        "doctor",
        help="check the state, the CA, the server, the gateway and every local HTTP client",
        description=(__doc__ or "").split("\n\n", 1)[-1].strip(),
        examples="  tf doctor\n  tf doctor --json",
        common=common,
        handler=doctor,
    )
