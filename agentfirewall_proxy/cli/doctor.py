"""`tf doctor`: is the state sound, the server up, the gateway listening, and do the clients
your agents use really go through it?

The client probes run in the interpreters and tools your project will run — `--python PATH`,
the python3/python on PATH, node, curl, wget — not in `tf`'s own environment, with exactly the
environment `tf run` gives an agent, as the agent ``tf-doctor`` (which has no permissions).
Python: requests, httpx, urllib, urllib3's PoolManager, aiohttp and stripe; Node: whether it is
recent enough and loads `tf run`'s preload, then fetch, the https module and the node-fetch,
got, axios and undici packages the project has. A client passes when it gets the gateway's own
403 answer over TLS for a connector's domain: that proves it used the proxy *and* trusted the
gateway's CA. Every client that would bypass the gateway is named with its fix. A client that
goes through never reaches the real API (the gateway denies first); one that bypasses sends a
GET with a placeholder key.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.doctor_probes import (
    NODE_CHECK,
    NODE_PROBES,
    PYTHON_PROBES,
    TOOL_PROBES,
    Probe,
    judge,
    judge_node,
)
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


@dataclass
class Check:
    name: str
    ok: bool | None  # None: nothing to check (a library that is not installed)
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
        from cryptography import x509  # only when the CA is checked

        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("gateway CA", False, f"{path}: {exc} (`tf up` creates it)")
    until = cert.not_valid_after_utc.date().isoformat()
    return Check("gateway CA", True, f"{path} ({cert.subject.rfc4514_string()}, until {until})")


def interpreters(ctx: Context) -> list[tuple[str, str]]:
    """(label, path) of each Python the project will run: --python, then `python3`/`python`
    on the user's PATH, the same interpreter named once."""
    path = ctx.env.get("PATH", os.defpath)
    named = [(p, p) for p in ctx.args.python or []]
    found = [(n, shutil.which(n, path=path)) for n in ("python3", "python")]
    out: dict[str, tuple[str, str]] = {}
    for label, exe in [*named, *((n, e) for n, e in found if e)]:
        assert exe is not None
        key = os.path.realpath(exe)
        out.setdefault(key, (label, exe))
    return list(out.values())


def _runs(command: list[str], env: dict[str, str], timeout: float) -> tuple[str, str] | None:
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    except OSError as exc:
        return "", f"error: cannot run {command[0]}: {exc}"
    return done.stdout, done.stderr


def _probe(name: str, probe: Probe, command: list[str], env: dict[str, str]) -> Check:
    ran = _runs(command, env, 40)
    if ran is None:
        return Check(name, False, f"timed out; fix: {probe.fix}")
    ok, detail = judge(probe, *ran)
    return Check(name, ok, detail)


def _client_checks(ctx: Context, env: dict[str, str], url: str) -> list[Check]:
    checks = []
    pythons = interpreters(ctx)
    if not pythons:
        checks.append(Check("python", False, "no python3/python on PATH (use --python PATH)"))
    seen: set[str] = set()
    for label, exe in pythons:
        code = "import os, sys; print(sys.version.split()[0], os.path.realpath(sys.executable))"
        ran = _runs([exe, "-c", code], env, 20)
        version, _, real = (ran[0].strip() if ran else "").partition(" ")
        if not real:
            checks.append(Check(label, False, f"{exe} does not run"))
            continue
        if label in ("python3", "python"):  # often one interpreter under two names
            if real in seen:
                continue
            seen.add(real)
        checks.append(Check(label, True, f"{exe} (Python {version})"))
        for probe in PYTHON_PROBES:
            checks.append(_probe(f"{label} {probe.name}", probe, [exe, "-c", probe.code, url], env))
    node = shutil.which("node", path=env.get("PATH", os.defpath))
    if node:
        checks.append(_node_check(node, env))
        for probe in NODE_PROBES:
            checks.append(_probe(probe.name, probe, [node, "-e", probe.code, url], env))
    for probe in TOOL_PROBES:
        tool = shutil.which(probe.argv[0], path=env.get("PATH", os.defpath))
        if tool:
            checks.append(_probe(probe.name, probe, [tool, *probe.argv[1:], url], env))
    return checks


def _node_check(node: str, env: dict[str, str]) -> Check:
    """Is this Node recent enough, and does it load the preload that routes its clients?"""
    ran = _runs([node, "-e", NODE_CHECK], env, 20)
    if ran is None:
        return Check("node", False, f"{node} timed out")
    ok, detail = judge_node(*ran)
    return Check("node", ok, f"{node}: {detail}")


def _isolate_check() -> Check:
    from agentfirewall_proxy.isolate.run import check_available

    found = check_available()
    detail = found.detail + (f"; to fix: {found.hint}" if found.hint else "")
    return Check("isolation (--isolate)", found.ok, detail)


def doctor(ctx: Context) -> int:
    if ctx.args.isolate:
        return _report(ctx, [_isolate_check()])
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
        preload = NODE_PRELOAD.read_text(encoding="utf-8")
        files = write_support_files(run_dir, bundle, preload, ctx.env)
        spec = RunSpec(target.proxy_url, DOCTOR_AGENT, str(ensured["api_key"]), files)
        env = build_child_env(dict(ctx.env), spec)
        with ctx.out.progress("running each HTTP client through the gateway"):
            checks += _client_checks(ctx, env, f"https://{domains[0]}/tameflare-doctor-probe")
    elif listening:
        checks.append(Check("clients", False, "not probed: add a connector first"))
    return _report(ctx, checks)


def _report(ctx: Context, checks: list[Check]) -> int:
    marks = {True: "✓", False: "✗", None: "-"}

    def render() -> None:
        ctx.out.table(("check", "ok", "detail"), ((c.name, marks[c.ok], c.detail) for c in checks))
        bypass = [c.name for c in checks if c.ok is False and "; fix: " in c.detail]
        if bypass:
            ctx.out.warn("these clients will bypass the gateway: " + ", ".join(bypass))

    ctx.out.result([c.__dict__ for c in checks], render)
    return EXIT_ERROR if any(c.ok is False for c in checks) else EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "doctor",
        help="check the state, the CA, the server, the gateway and every local HTTP client",
        description=(__doc__ or "").split("\n\n", 1)[-1].strip(),
        examples="  tf doctor\n  tf doctor --python .venv/bin/python\n  tf doctor --json\n"
        "  tf doctor --isolate",
        common=common,
        handler=doctor,
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="only check whether `tf run --isolate` works on this machine, and why not",
    )
    parser.add_argument(
        "--python",
        action="append",
        metavar="PATH",
        help="an interpreter your agents run (repeatable; python3/python on PATH are checked too)",
    )
