"""`tf run --isolate` and `tf doctor --isolate`: the glue between the CLI and the sandbox."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from subprocess import Popen
from urllib.parse import urlsplit

from agentfirewall_proxy.cli.output import CliError
from agentfirewall_proxy.isolate.bridge import Bridge, IsolationError, start_sandbox
from agentfirewall_proxy.isolate.report import BlockedLog

__all__ = ["Availability", "bridges_for", "check_available", "refusal", "run_isolated"]


def refusal(exc: IsolationError) -> CliError:
    """The clear refusal: what the kernel refused, and the ways out."""
    return CliError(f"--isolate is unavailable here: cannot {exc}", hint=exc.advice(os.geteuid()))


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _this_machine(host: str) -> bool:
    """`host` is this machine: ``localhost``, a loopback or unspecified address, or the
    address of one of its devices (one a socket can bind to)."""
    address = _address(host)
    if address is None:
        return host == "localhost"  # another name: DNS could answer anything
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            return False
    return True


def _endpoint(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def bridges_for(proxy_url: str, server_url: str) -> list[Bridge]:
    """The gateway's port, and the control plane's when it is on this machine (SDK calls go
    there directly through NO_PROXY), each at the same port on the namespace's loopback and
    at its own address (:meth:`Bridge.inside`)."""
    host, port = _endpoint(proxy_url, 80)
    bridges = [Bridge(port, host, port)]
    server_host, server_port = _endpoint(server_url, 80)
    if _this_machine(server_host) and server_port != port:
        bridges.append(Bridge(server_port, server_host, server_port))
    return bridges


def _inside(env: Mapping[str, str], proxy_url: str) -> dict[str, str]:
    """The agent's environment with a gateway named by a host name (no DNS answers inside)
    renamed 127.0.0.1, where its bridge listens; an address, or ``localhost``, works as it
    is (the bridge listens there too)."""
    host = urlsplit(proxy_url).hostname or ""
    if host == "localhost" or _address(host) is not None:
        return dict(env)
    out = dict(env)
    for name, value in env.items():
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy") and f"@{host}" in value:
            out[name] = value.replace(f"@{host}", "@127.0.0.1", 1)
    return out


def run_isolated(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    agent: str,
    proxy_url: str,
    server_url: str,
    gateway_token: str | None,
    supervise: Callable[[Popen[bytes]], int],
    say: Callable[[str], None],
) -> int:
    """Run `command` in the sandbox; its exit code."""
    if not sys.platform.startswith("linux"):
        raise CliError("--isolate needs Linux (network namespaces)", hint="run without --isolate")
    log = BlockedLog(agent, server_url=server_url, gateway_token=gateway_token, say=say)
    try:
        sandbox = start_sandbox(
            command, _inside(env, proxy_url), bridges_for(proxy_url, server_url), on_blocked=log.add
        )
    except IsolationError as exc:
        raise refusal(exc) from None
    log.start()
    try:
        return supervise(sandbox.process)
    finally:
        sandbox.close()
        if sandbox.accept_failures:
            say(
                "tf: the gateway bridge ran out of file descriptors "
                f"({sandbox.accept_failures} times): the agent's connections to it waited"
            )
        log.close(sandbox.missed, complete=sandbox.complete)


@dataclass(frozen=True)
class Availability:
    ok: bool
    detail: str
    hint: str | None = None


def check_available() -> Availability:
    """Set up a sandbox (no agent) and take it down: what `tf doctor --isolate` reports."""
    mode = "as root: plain namespaces" if os.geteuid() == 0 else "unprivileged user namespace"
    if not sys.platform.startswith("linux"):
        return Availability(False, "needs Linux (network namespaces)")
    try:
        sandbox = start_sandbox(["true"], {}, [], on_blocked=lambda _b: None, probe=True)
    except IsolationError as exc:
        error = refusal(exc)
        return Availability(False, f"{mode}: {error.message}", error.hint)
    code = sandbox.process.wait()
    sandbox.close()
    if code != 0:
        return Availability(False, f"{mode}: the sandbox exited with status {code}")
    return Availability(True, f"{mode}: network, mount and PID namespaces")
