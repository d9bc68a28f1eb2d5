"""`tf run --name NAME [--enforcement LEVEL] [--] COMMAND...`: an agent behind the gateway.

Gets the agent's proxy credential (``POST /api/v1/agents/ensure``), writes the CA bundle and
the client shims into the state directory, builds the child environment
(:mod:`agentfirewall_proxy.runenv`), runs COMMAND with signals forwarded and returns its exit
code (128 + N when a signal N ended it). The credential is this run's only: it holds a lease
(:class:`RunLease`) renewed while COMMAND runs and is revoked when it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentfirewall.decisions import ENFORCEMENT_LEVELS, normalize_level
from agentfirewall_proxy.cli.agent_cmd import check_new_agent
from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_USAGE, CliError
from agentfirewall_proxy.cli.state import on_this_machine
from agentfirewall_proxy.runenv import (
    RunSpec,
    build_ca_bundle,
    build_child_env,
    control_plane_hosts,
    read_system_ca,
    write_support_files,
)

__all__ = [
    "NODE_PRELOAD",
    "RUN_LEASE_SECONDS",
    "RunLease",
    "Supervisor",
    "dedicated_port",
    "is_listening",
    "register",
    "run",
    "spawn",
]

_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
NODE_PRELOAD = Path(__file__).with_name("node_preload.js")
#: How long `tf run` waits for a gateway to give a new agent its dedicated port.
_PORT_WAIT_SECONDS = 3.0
#: The lease of a run's proxy key: a `tf run` killed outright (SIGKILL) leaves a key that
#: stops working this long after its last renewal. Renewed every fifth of it, so four
#: renewals may fail (a control plane restarting) before the key lapses.
RUN_LEASE_SECONDS = 300
#: How long a renewal or the end of a lease waits for the control plane (seconds).
_LEASE_CALL_SECONDS = 10.0


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{host}:{port}", "", "", ""))


def is_listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 2.0):
            return True
    except OSError:
        return False


def _gateway_ca(ctx: Context) -> Path:
    explicit = ctx.flag("ca_cert") or ctx.env.get("TF_CA_CERT")
    if explicit:
        return Path(str(explicit))
    project = ctx.project
    if project is None:
        raise CliError(
            "no gateway CA: `tf run` outside a project needs --ca-cert FILE or TF_CA_CERT",
            hint="copy the gateway's ca.crt from its `.tf/` directory",
        )
    return project.state_dir / "ca.crt"


def _run_dir(ctx: Context) -> Path:
    project = ctx.project
    if project is not None:
        return project.state_dir / "run"
    cache = ctx.env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tameflare" / "run"


def _running(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateways heard from lately: a stopped one's ports may now be anyone's."""
    proxies = (status.get("gateway") or {}).get("proxies") or []
    return [p for p in proxies if p.get("online", True)]  # (a server before 0.2: no flag)


def dedicated_port(name: str, agent: dict[str, Any], status: dict[str, Any]) -> int | None:
    """The agent's own proxy port: the running gateways' heartbeats, else the agent's record."""
    for proxy in _running(status):
        port = (proxy.get("agent_ports") or {}).get(name)
        if isinstance(port, int) and port > 0:
            return port
    port = agent.get("proxy_port")
    return port if isinstance(port, int) and port > 0 else None


def ports_in_use(status: dict[str, Any]) -> bool:
    """Whether a gateway gives agents dedicated ports (`--agent-ports`) and reports them."""
    return any(p.get("agent_port_range") or p.get("agent_ports") for p in _running(status))


def _await_port(client: AdminClient, name: str, agent: dict[str, Any]) -> int | None:
    """The agent's dedicated port; for an agent the gateway has not seen yet (just created by
    `ensure`), wait a moment while a gateway allocates and announces it."""
    status = client.get("/v1/status")
    port = dedicated_port(name, agent, status)
    if port is not None or not ports_in_use(status):
        return port
    deadline = time.monotonic() + _PORT_WAIT_SECONDS
    while port is None and time.monotonic() < deadline:
        time.sleep(0.1)
        port = _await_port(client, name, agent)
    return port


def _check_gateway(ctx: Context) -> None:
    """A cloned repository's `.tf/config.yaml` is anyone's: it must not choose another
    machine's gateway for the agent's traffic and its proxy key (`TF_PROXY` names one)."""
    target = ctx.target()
    url = target.proxy_url
    if not target.proxy_named and not on_this_machine(url):
        raise CliError(
            f"this project's files name the gateway {url}, which is not on this machine: "
            "tf sends an agent's traffic to another machine's gateway only when you name it",
            hint=f"if it is your gateway: `TF_PROXY={url} tf run ...`",
        )


def _proxy_for(ctx: Context, port: int | None) -> str:
    url = ctx.target().proxy_url
    if port is not None:
        dedicated = _with_port(url, port)
        if is_listening(dedicated):
            return dedicated
    if not is_listening(url):
        raise CliError(
            f"no TameFlare gateway listening at {url}",
            hint="start one with `tf up` in another terminal (in this project's directory)",
        )
    return url


def _command(ctx: Context) -> list[str]:
    command = list(ctx.args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not ctx.args.name:  # not argparse's `required`: it cannot say where the flag went
        late = any(arg == "--name" or arg.startswith("--name=") for arg in command)
        raise CliError(
            "`--name` comes after the command, so it is the agent's own argument: `tf run`'s "
            "options go before COMMAND"
            if late
            else "`tf run` needs --name NAME: the agent the traffic is decided for",
            hint='e.g. tf run --name "Bot" python my_agent.py',
            code=EXIT_USAGE,
        )
    if not command:
        raise CliError(
            "nothing to run", hint='e.g. tf run --name "Bot" python my_agent.py', code=EXIT_USAGE
        )
    return command


class RunLease:
    """The lease of this run's proxy key: renewed from a daemon thread while the agent runs,
    revoked by :meth:`end` (``with``: when the agent has exited, whatever ended it).

    A renewal that fails is tried again at the next turn, never stopping the agent; once the
    lease has passed with none succeeding, one warning says the agent's traffic is refused
    (407) until one does (an expired key is renewed: the run is alive).
    """

    def __init__(
        self,
        client: AdminClient,
        path: str,
        say: Callable[[str], None],
        warn: Callable[[str], None],
        *,
        lease: float = RUN_LEASE_SECONDS,
        every: float = RUN_LEASE_SECONDS / 5,
    ) -> None:
        self._client, self._path, self._say, self._warn = client, path, say, warn
        self._lease, self._every = lease, every
        self._held_until = time.monotonic() + lease  # (at the latest: issued before this)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="tf-run-lease", daemon=True)

    def __enter__(self) -> RunLease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.end()

    def _renew(self) -> None:
        lapsed = False
        body = {"lease_seconds": int(self._lease)}
        while not self._stop.wait(self._every):
            asked = time.monotonic()
            try:
                self._client.request(
                    "POST", self._path + "/renew", json=body, timeout=_LEASE_CALL_SECONDS
                )
            except Exception as exc:  # whatever failed: tried again, the agent runs on
                if not lapsed and not self._stop.is_set() and time.monotonic() >= self._held_until:
                    lapsed = True
                    why = exc.message if isinstance(exc, CliError) else type(exc).__name__
                    self._warn(
                        f"this run's proxy key has expired, not renewed for {self._lease:.0f}"
                        f" s ({why}): the gateway refuses the agent's traffic (407) until a"
                        " renewal succeeds; tf keeps trying"
                    )
                continue
            self._held_until = asked + self._lease
            if lapsed:
                lapsed = False
                self._say("tf: this run's proxy key is renewed: the agent's traffic passes again")

    def end(self) -> None:
        """Stop renewing and revoke the key (a failure says so: it expires by itself)."""
        self._stop.set()
        try:
            self._client.request("DELETE", self._path, timeout=_LEASE_CALL_SECONDS)
        except CliError as exc:
            self._warn(
                f"could not revoke this run's proxy key ({exc.message}): it stops working by"
                f" itself within {self._lease:.0f} s"
            )


@contextlib.contextmanager
def _leased(ctx: Context, client: AdminClient, ensured: dict[str, Any]) -> Iterator[None]:
    """This run's key renewed while the block runs, revoked after it; a server of an earlier
    version gives the key no lease: nothing to renew or end."""
    run, agent = ensured.get("run") or {}, ensured.get("agent") or {}
    if run.get("key_id") is None:
        yield
        return
    path = f"/v1/agents/{path_id(str(agent['id']))}/run-keys/{run['key_id']}"
    with RunLease(client, path, ctx.out.note, ctx.out.warn):
        yield


def run(ctx: Context) -> int:
    command = _command(ctx)
    _check_gateway(ctx)
    name = str(ctx.args.name)
    body: dict[str, Any] = {"name": name, "lease_seconds": RUN_LEASE_SECONDS}
    if ctx.args.enforcement:  # this run's traffic only: the gateway knows it by its key
        try:
            body["run_enforcement_level"] = normalize_level(str(ctx.args.enforcement))
        except ValueError as exc:
            raise CliError(str(exc), code=EXIT_USAGE) from None
    with ctx.client() as client:
        if not ctx.args.create:
            check_new_agent(client, name, flag="--create")
        ensured = client.post("/v1/agents/ensure", body)
        with _leased(ctx, client, ensured):  # revoked when the agent ends, however it does
            return _run_agent(ctx, client, command, ensured)


def _run_agent(
    ctx: Context, client: AdminClient, command: list[str], ensured: dict[str, Any]
) -> int:
    name = str(ctx.args.name)
    agent = ensured.get("agent") or {}
    port = _await_port(client, name, agent)
    proxy = _proxy_for(ctx, port)
    ca_path = _gateway_ca(ctx)
    try:
        ca_pem = ca_path.read_text(encoding="ascii")
    except OSError as exc:
        raise CliError(
            f"cannot read the gateway CA `{ca_path}`: {exc.strerror}",
            hint="`tf up` creates it on its first start",
        ) from None
    run_dir = _run_dir(ctx)
    bundle = build_ca_bundle(read_system_ca(ctx.env, run_dir / "ca-bundle.pem"), ca_pem)
    files = write_support_files(run_dir, bundle, NODE_PRELOAD.read_text(encoding="utf-8"))
    node_modules = run_dir.parent / "node" / "node_modules"
    project = ctx.project
    spec = RunSpec(
        proxy_url=proxy,
        agent_name=name,
        agent_key=str(ensured["api_key"]),
        files=files,
        secret_env=project.config.secret_env if project else (),
        node_modules=node_modules if node_modules.is_dir() else None,
        no_proxy=control_plane_hosts(ctx.target().server_url),
    )
    env = build_child_env(ctx.env, spec)
    isolate = _isolate(ctx, name)
    hide_own_environment()  # either way: `tf run` waits on the agent with its secrets
    if not ctx.out.json_mode:
        how = " isolated: its only way out is the gateway" if isolate else ""
        ctx.out.note(f"tf: {name} ({_level_text(ensured, agent)}) via {proxy}{how}")
    if isolate:
        from agentfirewall_proxy.isolate.run import run_isolated  # namespaces: only here

        target = ctx.target()
        gateway_token = ctx.gateway_token(target)
        with Supervisor() as supervisor:  # (from before the sandbox starts the agent)
            return run_isolated(
                command,
                env,
                agent=name,
                proxy_url=proxy,
                server_url=target.server_url,
                gateway_token=gateway_token,
                supervise=supervisor.wait,
                say=ctx.out.note,
            )
    return spawn(command, env)


def _isolate(ctx: Context, name: str) -> bool:
    """`--isolate` / `--no-isolate`, else the project's default for this agent."""
    if ctx.args.isolate is not None:
        return bool(ctx.args.isolate)
    project = ctx.project
    return project is not None and project.config.isolates(name)


def _level_text(ensured: dict[str, Any], agent: dict[str, Any]) -> str:
    """The level this run's traffic is decided at, and whether it is the run's own."""
    agent_level = agent.get("enforcement_level") or "default"
    run = ensured.get("run") or {}
    if run.get("scope") == "run" and run.get("enforcement_level") != agent_level:
        return f"{run.get('enforcement_level')} for this run only; the agent is {agent_level}"
    return f"{agent_level}; change it with `tf enforcement set`"


def _terminal_sent_it() -> bool:
    """True when our process group owns the terminal: the child got the same signal."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def spawn(command: list[str], env: dict[str, str]) -> int:
    hide_own_environment()  # also when spawn() is called alone
    with Supervisor() as supervisor:
        try:
            child = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            raise CliError(f"command not found: `{command[0]}`", code=127) from None
        except PermissionError:
            raise CliError(f"permission denied: `{command[0]}`", code=126) from None
        return supervisor.wait(child)


def hide_own_environment() -> None:
    """Keep same-user processes (the agent) out of this one's `/proc/PID/environ` and memory.

    `tf run` removes the `--token-env` variables and the admin token from the agent's
    environment, but its own still holds them; made undumpable (Linux), only a process with
    CAP_SYS_PTRACE can read it. The agent's exec makes the agent dumpable again, as usual."""
    if sys.platform == "linux":
        from agentfirewall_proxy.isolate.kernel import set_undumpable

        set_undumpable()


class Supervisor:
    """`tf run`'s signals passed on to its agent, caught from before the agent is started: one
    that comes while it is being started is passed on as soon as it is (`tf run` never dies
    of it, leaving the agent running unsupervised). The previous handlers come back when the
    context ends."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[Any] | None = None
        self._early: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Supervisor:
        self._previous = {sig: signal.signal(sig, self._forward)
                          for sig in (*_FORWARDED, signal.SIGINT)}  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sent_it():
            return  # the agent, in our process group, got it from the terminal too
        if self._child is None:
            self._early.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            self._child.send_signal(signum)

    def wait(self, child: subprocess.Popen[Any]) -> int:
        """Wait for `child`, forwarding signals (those that came before it first); its exit
        code (128 + N for signal N)."""
        self._child = child
        for signum in self._early:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
        self._early.clear()
        code = child.wait()
        return 128 - code if code < 0 else code


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "run",
        help="run an agent with all its HTTP(S) traffic going through the gateway",
        description="Creates the agent if new, gets its proxy credential and runs COMMAND with "
        "HTTP_PROXY/HTTPS_PROXY (both cases), the gateway's CA in every common CA variable, "
        "Node's http/https agents and fetch routed through the proxy, NO_PROXY set to the "
        "control plane's host only (SDK calls reach the server directly), --token-env secrets "
        "removed and placeholder API keys the gateway replaces. Returns COMMAND's exit code.",
        examples='  tf run --name "Bot" python my_agent.py\n'
        '  tf run --name "Bot" node my_agent.js\n'
        '  tf run --name "Bot" --enforcement monitor -- ./my_agent --verbose\n'
        '  tf run --name "Bot" --isolate python my_agent.py',
        common=common,
        handler=run,
    )
    parser.add_argument("--name", help="the agent (gateway) name (required, before COMMAND)")
    parser.add_argument(
        "--enforcement",
        metavar="LEVEL",
        help=", ".join(ENFORCEMENT_LEVELS) + " (or L0-L2) for this run only; the agent's own "
        "level is `tf enforcement set`",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="a new agent even when its name is close to an existing agent's",
    )
    parser.add_argument("--ca-cert", metavar="FILE", help="gateway CA (default .tf/ca.crt)")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Linux: run COMMAND in network namespaces of its own whose only way out is the "
        "gateway; clients that ignore the proxy variables fail and are reported (default: "
        "`isolate` in .tf/config.yaml, or `tf agent add --isolate`)",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND...",
        help="the agent's command line, run with its traffic through the gateway",
    )
