# ruff: noqa: E501  (the agent's script is embedded verbatim)
"""What the isolated agent cannot reach of the kernel, as root (plain namespaces) and as an
ordinary user (a user namespace):

- the kernel's settings: ``/proc/sys`` (``kernel/core_pattern``: a program the kernel runs as
  root outside every namespace), ``/proc/sysrq-trigger``, ``/sys`` are read-only, and the
  agent cannot make them writable again (no CAP_SYS_ADMIN in any set; in a user namespace of
  its own the mounts are locked); ``/proc/keys`` and the like are hidden;
- sockets that no network namespace confines: AF_VSOCK (the hypervisor), AF_BLUETOOTH,
  AF_ALG... fail with EAFNOSUPPORT, also when the family's upper 32 bits are set; io_uring
  (which makes sockets without socket()) is not there; a call by x86_64's x32 numbers kills
  the caller. AF_INET, AF_INET6, AF_UNIX and AF_NETLINK work as before.

Every write here writes back what it read (or opens without writing): without the sandbox it
would change nothing on the host either.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentfirewall_proxy.isolate import kernel
from tests.isolate.conftest import AGENT_USERS, needs_isolation, run_agent_as

pytestmark = needs_isolation

AGENT = r"""
import ctypes, errno, json, os, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def attempt(name, call, into=out):
    try:
        result = call()
        into[name] = "done" if result is None else result
    except OSError as exc:
        into[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def check(result):
    if result < 0:
        raise OSError(ctypes.get_errno(), "")

def rewrite(path):  # the same value back: a no-op, were it allowed
    with open(path, "r+") as handle:
        handle.write(handle.read())

attempt("core_pattern", lambda: rewrite("/proc/sys/kernel/core_pattern"))
attempt("hostname", lambda: rewrite("/proc/sys/kernel/hostname"))
attempt("sysrq-trigger", lambda: os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY)))
attempt("irq", lambda: rewrite("/proc/irq/default_smp_affinity"))
attempt("sys writable", lambda: not os.statvfs("/sys").f_flag & os.ST_RDONLY)
attempt("keys", lambda: len(open("/proc/keys", "rb").read()))
attempt("timer_list", lambda: len(open("/proc/timer_list", "rb").read()))
attempt("umount", lambda: check(libc.umount2(b"/proc/sys", 2)))
attempt("remount rw", lambda: check(libc.mount(None, b"/proc/sys", None, 0x1020, None)))
status = dict(line.split(":\t") for line in open("/proc/self/status") if line.startswith("Cap"))
out["cap_sys_admin"] = sorted(k for k, v in status.items() if int(v, 16) & (1 << 21))

# In a user namespace of its own the agent has every capability, over copies of the mounts
read, write = os.pipe()
if os.fork() == 0:
    nested = {}
    step = lambda name, call: attempt(name, call, into=nested)
    step("unshare", lambda: check(libc.unshare(0x10000000 | 0x00020000)))
    def maps():
        uid, gid = os.getuid(), os.getgid()
        open("/proc/self/setgroups", "w").write("deny")
        open("/proc/self/uid_map", "w").write(f"0 {uid} 1")
        open("/proc/self/gid_map", "w").write(f"0 {gid} 1")
    step("map", maps)
    step("remount rw", lambda: check(libc.mount(None, b"/proc/sys", None, 0x1020, None)))
    step("umount", lambda: check(libc.umount2(b"/proc/sys", 2)))
    step("umount /proc", lambda: check(libc.umount2(b"/proc", 2)))
    step("core_pattern", lambda: rewrite("/proc/sys/kernel/core_pattern"))
    os.write(write, json.dumps(nested).encode())
    os._exit(0)
os.close(write)
out["nested"] = json.loads(os.read(read, 65536))
os.wait()

families = {"AF_VSOCK": 40, "AF_BLUETOOTH": 31, "AF_ALG": 38, "AF_PACKET": 17, "AF_CAN": 29, "AF_TIPC": 30, "AF_XDP": 44, "AF_KEY": 15,
            "AF_INET": 2, "AF_INET6": 10, "AF_UNIX": 1, "AF_NETLINK": 16}
for name, family in families.items():
    kind = socket.SOCK_RAW if family in (16, 15, 17) else socket.SOCK_DGRAM if family == 29 else socket.SOCK_STREAM
    attempt(f"socket {name}", lambda: socket.socket(family, kind).close())
attempt("socketpair AF_VSOCK", lambda: socket.socketpair(40, socket.SOCK_STREAM))
attempt("socketpair AF_UNIX", lambda: [s.close() for s in socket.socketpair(socket.AF_UNIX)] and None)
numbers = {"x86_64": (41, 425), "aarch64": (198, 425)}.get(os.uname().machine)
if numbers:
    high = ctypes.c_long((1 << 32) | 40)  # the kernel reads an int: AF_VSOCK
    attempt("socket AF_VSOCK, upper bits set", lambda: check(libc.syscall(numbers[0], high, 1, 0)))
    params = ctypes.create_string_buffer(120)
    attempt("io_uring_setup", lambda: check(libc.syscall(numbers[1], 8, params)))
if os.uname().machine == "x86_64":
    child = os.fork()
    if child == 0:
        libc.syscall(0x40000000 | 39)  # x32's getpid
        os._exit(0)
    out["x32 call"] = os.waitpid(child, 0)[1]
print("agent-result", json.dumps(out), flush=True)
"""


@pytest.mark.parametrize("who", AGENT_USERS)
def test_the_agent_cannot_rewrite_the_kernels_settings(who: str) -> None:
    agent = run_agent_as(who, AGENT)
    root = who == "as-the-user-running-the-tests" and os.geteuid() == 0
    # as root only the read-only mount stands in the way (writing them needs uid 0 alone)
    refused = {"EROFS"} if root else {"EROFS", "EACCES"}
    assert agent["core_pattern"] in refused, agent
    assert agent["hostname"] in refused, agent
    for name, path in (("sysrq-trigger", "sysrq-trigger"), ("irq", "irq/default_smp_affinity")):
        assert agent[name] in (refused if Path(f"/proc/{path}").exists() else {"ENOENT"}), name
    assert agent["sys writable"] is False
    for hidden in ("keys", "timer_list"):  # a read-only /dev/null where the host has them
        assert agent[hidden] in ((0, "EACCES") if Path(f"/proc/{hidden}").exists() else ("ENOENT",))
    # and it cannot undo it: no CAP_SYS_ADMIN in any set, the bounding set included...
    assert agent["cap_sys_admin"] == ([] if root else ["CapBnd"])  # (a user's: no effect)
    assert agent["umount"] == "EPERM"
    assert agent["remount rw"] == "EPERM"
    # ...nor with every capability in a user namespace of its own: the mounts are locked
    nested = agent["nested"]
    assert (nested["unshare"], nested["map"]) == ("done", "done"), nested
    assert nested["remount rw"] == "EPERM"
    assert nested["umount"] in ("EINVAL", "EPERM")
    assert nested["umount /proc"] in ("EINVAL", "EPERM", "EBUSY")
    assert nested["core_pattern"] in ("EROFS", "EACCES")


def test_the_agent_opens_no_socket_past_the_network_namespace() -> None:
    agent = run_agent_as("as-the-user-running-the-tests", AGENT)
    for family in ("AF_VSOCK", "AF_BLUETOOTH", "AF_ALG", "AF_PACKET", "AF_CAN", "AF_TIPC", "AF_XDP", "AF_KEY"):  # fmt: skip
        assert agent[f"socket {family}"] == "EAFNOSUPPORT", family
    assert agent["socketpair AF_VSOCK"] == "EAFNOSUPPORT"
    for family in ("AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"):
        assert agent[f"socket {family}"] == "done", family
    assert agent["socketpair AF_UNIX"] == "done"
    if os.uname().machine in ("x86_64", "aarch64"):
        assert agent["socket AF_VSOCK, upper bits set"] == "EAFNOSUPPORT"
        assert agent["io_uring_setup"] == "ENOSYS"
    if os.uname().machine == "x86_64":
        assert os.WIFSIGNALED(agent["x32 call"]), agent["x32 call"]
        assert os.WTERMSIG(agent["x32 call"]) == 31  # SIGSYS: seccomp killed it


def test_a_machine_without_syscall_numbers_is_refused() -> None:
    with pytest.raises(OSError, match=r"no socket filter for this machine \(`riscv64`\)"):
        kernel.socket_family_filter("riscv64")
