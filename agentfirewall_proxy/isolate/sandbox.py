"""The helper of `tf run --isolate`: ``python -P -m agentfirewall_proxy.isolate.sandbox FD PID``.

Three processes, each dying with its parent (``PR_SET_PDEATHSIG``), so a SIGKILL of `tf run`
takes all of them and the kernel frees the namespaces — nothing is named, mounted or
created outside them, so nothing can leak::

    tf run (host network)            holds the gateway bridges and the packet counter
    └─ sandbox                       unshares user (unless root), network, mount, PID
       └─ init (PID 1 inside)        /proc of its own (the kernel's settings read-only, as
          │                          /sys), lo up, every address local (but multicast),
          │                          sockets, the socket filter (seccomp)
          └─ the agent (exec)        sees loopback only; the gateway at 127.0.0.1:PORT

The helper starts in ``/`` with ``python -P`` (nothing the agent can write is on its
``sys.path``), and the agent in a session of its own: it keeps the terminal as stdin, stdout
and stderr but has no controlling terminal, so it cannot push input into the user's shell
(``TIOCSTI``, CVE-2017-5226 in bubblewrap) or take the terminal over; init stands in for the
terminal's signals (Ctrl-C, Ctrl-\\, Ctrl-Z, ``fg``/``bg``, a resize), which no longer
reach the agent's session.

`tf run` sends one JSON line on FD: ``{"command", "env", "cwd", "listen": [[address, port]],
"probe"}``. Init answers with one JSON line carrying the sockets (SCM_RIGHTS): a listener per
address and port, and a packet socket on ``lo`` — or ``{"ok": false, "step", "error"}``.
Exit status: the agent's, 128 + N when signal N ended it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from types import FrameType
from typing import Any

from agentfirewall_proxy.isolate import kernel

__all__ = ["main"]

_FORWARDED = (
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGINT,
)
# Signals only a terminal sends, and what init sends the agent's process group instead.
# Ctrl-Z stops it with SIGSTOP: SIGTSTP is ignored by default in a process group with no
# parent in its session (an orphaned one), which the agent's is.
_TERMINAL_ONLY: dict[int, int] = {
    signal.SIGTSTP: signal.SIGSTOP,
    signal.SIGCONT: signal.SIGCONT,
    signal.SIGWINCH: signal.SIGWINCH,
}
_INIT_HANDLES = (*_FORWARDED, *_TERMINAL_ONLY)
_ETH_P_ALL = 0x0003


class SetupError(Exception):
    def __init__(self, step: str, error: OSError) -> None:
        super().__init__(step)
        self.step = step
        self.error = error


def _step(step: str, action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except OSError as exc:
        raise SetupError(step, exc) from None


def _terminal_sent_it() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _forward_to(pid: int) -> None:
    """In the sandbox: pass `tf run`'s signals on to init."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sent_it():
            return  # init, in our process group, got it from the terminal too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)


def _signal_group(pid: int, signum: int) -> None:
    """What the terminal would have done: signal the agent's whole process group (the agent
    and the children it did not move), or the agent alone before its ``setsid``."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _forward_to_agent(pid: int) -> None:
    """In init: pass signals on to the agent, and stand in for the terminal, whose signals
    reach init (in the user's foreground process group) but not the agent's session."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum in _TERMINAL_ONLY:
            _signal_group(pid, _TERMINAL_ONLY[signum])
        elif signum in (signal.SIGINT, signal.SIGQUIT) and _terminal_sent_it():
            _signal_group(pid, signum)  # Ctrl-C, Ctrl-\
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in _INIT_HANDLES:
        signal.signal(sig, forward)


def _code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _wait(pid: int) -> int:
    """Reap every child (init adopts orphans) until `pid` ends; its exit code."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            return _code(status)


_Listeners = list[tuple[socket.socket, list[Any]]]
# IPV6_FREEBIND: an IPv6 address no device holds (the namespace's routes make it local)
_IPV6_FREEBIND = 78
# The packet counter's queue: the attempts an agent makes faster than `tf run` reads them
_COUNTER_BUFFER = 8 << 20


def _listeners(places: list[list[Any]]) -> _Listeners:
    """A listener at each [address, port]; ``::1`` only where this machine has IPv6."""
    made: _Listeners = []
    for host, port in places:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            if host == "::1":
                continue  # no IPv6 on this machine: 127.0.0.1 is enough
            raise
        made.append((sock, [host, port]))
    return made


def _network(places: list[list[Any]]) -> tuple[_Listeners, socket.socket]:
    _step("bring up loopback", kernel.loopback_up)
    _step("route every IPv4 address to loopback", kernel.local_default_route, socket.AF_INET)
    _step("refuse IPv4 multicast and broadcast", kernel.refuse_multicast, socket.AF_INET)
    with contextlib.suppress(OSError):  # IPv6 disabled: nothing to route
        kernel.local_default_route(socket.AF_INET6)
        kernel.refuse_multicast(socket.AF_INET6)
    sniffer = _step(
        "open the packet counter",
        socket.socket,
        socket.AF_PACKET,
        socket.SOCK_RAW,
        socket.htons(_ETH_P_ALL),
    )
    _step(
        "filter the packet counter",
        kernel.attach_socket_filter,
        sniffer,
        kernel.refusal_frames_filter(),
        _COUNTER_BUFFER,
    )
    _step("bind the packet counter", sniffer.bind, ("lo", _ETH_P_ALL))
    return _step("listen for the gateway bridge", _listeners, places), sniffer


def _send(ctl: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:  # type: ignore[assignment]
    data = (json.dumps(message) + "\n").encode()
    socket.send_fds(ctl, [data], list(fds))


_FILTER_STEP = "filter the agent's socket families"
# What to do when a step fails that no namespace setting allows (None: `tf run` advises)
_HINTS = {
    _FILTER_STEP: "`--isolate` needs seccomp filters, on x86-64 or arm64: run the agent in a "
    "container instead",
}


def _fail(ctl: socket.socket, exc: SetupError) -> int:
    _send(
        ctl,
        {
            "ok": False,
            "step": exc.step,
            "errno": exc.error.errno,
            "error": exc.error.strerror or str(exc.error),
            "hint": _HINTS.get(exc.step),
        },
    )
    return 125


def _exec_agent(spec: dict[str, Any]) -> None:
    """In the agent's process: never returns."""
    for sig in _INIT_HANDLES:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INIT_HANDLES)
    command = [str(part) for part in spec["command"]]
    try:
        # A session of its own: no controlling terminal, so no TIOCSTI into the user's shell,
        # no /dev/tty, and no TIOCSCTTY to take the terminal back (it is another session's).
        os.setsid()
        os.chdir(str(spec["cwd"]))
        if os.geteuid() == 0:
            kernel.drop_capabilities(list(kernel.ESCAPE_CAPABILITIES.values()))
    except OSError as exc:
        sys.stderr.write(f"tf: cannot start the agent: {exc}\n")
        os._exit(126)
    try:
        env = {str(k): str(v) for k, v in spec["env"].items()}
        os.execvpe(command[0], command, env)  # noqa: S606 (the agent's own command line)
    except FileNotFoundError:
        sys.stderr.write(f"tf: command not found: `{command[0]}`\n")
        os._exit(127)
    except PermissionError:
        sys.stderr.write(f"tf: permission denied: `{command[0]}`\n")
        os._exit(126)
    except OSError as exc:
        sys.stderr.write(f"tf: cannot run `{command[0]}`: {exc.strerror}\n")
        os._exit(126)


def _init(ctl: socket.socket, spec: dict[str, Any], parent_gone: int) -> int:
    """PID 1 of the new PID namespace: set up, hand the sockets over, run the agent."""
    kernel.set_parent_death_signal(signal.SIGKILL)
    if select.select([parent_gone], [], [], 0)[0]:
        return 1  # the sandbox died before we could arrange to die with it
    try:
        _step("mount a private /proc", kernel.mount_private_proc)
        _step("make the kernel's settings read-only", kernel.seal_kernel_files)
        listeners, sniffer = _network([[str(h), int(p)] for h, p in spec["listen"]])
        # inherited by the agent; init itself makes no socket after this
        _step(_FILTER_STEP, kernel.filter_socket_families)
    except SetupError as exc:
        return _fail(ctl, exc)
    fds = [sock.fileno() for sock, _ in listeners] + [sniffer.fileno()]
    _send(ctl, {"ok": True, "listeners": [where for _, where in listeners]}, fds)
    for sock, _ in listeners:
        sock.close()
    sniffer.close()
    ctl.close()
    if spec.get("probe"):
        return 0
    # held until init forwards them to the agent: a Ctrl-C right after the fork is not lost
    signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_HANDLES)
    agent = os.fork()
    if agent == 0:
        os.close(parent_gone)
        _exec_agent(spec)
    _forward_to_agent(agent)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INIT_HANDLES)
    return _wait(agent)


def _isolate(ctl: socket.socket, spec: dict[str, Any]) -> int:
    uid, gid = os.geteuid(), os.getegid()
    flags = kernel.CLONE_NEWNET | kernel.CLONE_NEWNS | kernel.CLONE_NEWPID
    try:
        if uid != 0:
            _step("create a user namespace", kernel.unshare, flags | kernel.CLONE_NEWUSER)
            _step("map the user", kernel.map_current_user, uid, gid)
        else:
            _step("create the namespaces", kernel.unshare, flags)
    except SetupError as exc:
        return _fail(ctl, exc)
    kernel.set_undumpable()  # after the maps (it makes /proc/self root's); init inherits it
    gone_r, gone_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(gone_w)
        os._exit(_init(ctl, spec, gone_r))
    os.close(gone_r)
    ctl.close()
    _forward_to(child)
    return _wait(child)


def _read_spec(ctl: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = ctl.recv(65536)
        if not chunk:
            raise SystemExit(125)
        data += chunk
    spec = json.loads(data)
    if not isinstance(spec, dict):
        raise SystemExit(125)
    return spec


def main(argv: list[str]) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    kernel.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        return 125  # `tf run` is already gone
    ctl = socket.socket(fileno=fd)
    ctl.set_inheritable(False)
    return _isolate(ctl, _read_spec(ctl))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
