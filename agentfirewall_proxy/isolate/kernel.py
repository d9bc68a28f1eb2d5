"""The Linux calls `tf run --isolate` needs, through ctypes and netlink (no external tools).

Each function does one thing and raises ``OSError`` (with the errno the kernel gave) when the
kernel refuses; the sandbox turns that into a message naming the step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct

__all__ = [
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "ESCAPE_CAPABILITIES",
    "drop_capabilities",
    "local_default_route",
    "loopback_up",
    "map_current_user",
    "mount_private_proc",
    "set_parent_death_signal",
    "set_undumpable",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

# Capabilities a root agent could leave its namespaces with (setns, netlink on other
# namespaces, kernel modules, raw devices, ptrace, BPF): dropped from the bounding set.
ESCAPE_CAPABILITIES = {
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_MKNOD": 27,
    "CAP_BPF": 39,
}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(result: int, what: str) -> None:
    """Raise the kernel's error for `what` (the caller's step names it to the user)."""
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), what)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies (even by SIGKILL)."""
    _check(_libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0), "prctl")


def set_undumpable() -> None:
    """No ptrace, no /proc/PID/environ or mem for anyone without CAP_SYS_PTRACE where this
    process's memory was made (the host): the agent cannot look inside its supervisors."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0), "prctl")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities(numbers: list[int]) -> None:
    """Remove capabilities for good at the next exec: from the bounding set, and from the
    inheritable, permitted and effective sets. Root's exec gives back every capability in
    the bounding set *or the inheritable set*, so the bounding set alone is not enough when
    `tf run` was started with inheritable (or ambient) capabilities; lowering the
    inheritable set also clears them from the ambient set."""
    for number in numbers:
        result = _libc.prctl(_PR_CAPBSET_DROP, ctypes.c_ulong(number), 0, 0, 0)
        if result != 0 and ctypes.get_errno() != 22:  # EINVAL: this kernel lacks the capability
            _check(result, "prctl(PR_CAPBSET_DROP)")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for number in numbers:
        word, bit = data[number // 32], ~(1 << (number % 32)) & 0xFFFFFFFF
        word.effective &= bit
        word.permitted &= bit
        word.inheritable &= bit
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def map_current_user(uid: int, gid: int) -> None:
    """In a new user namespace: map our own uid and gid to themselves (the only mapping an
    unprivileged process may write); `setgroups` must be denied before the gid map."""
    with open("/proc/self/setgroups", "w", encoding="ascii") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w", encoding="ascii") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w", encoding="ascii") as handle:
        handle.write(f"{gid} {gid} 1")


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int) -> None:
    _check(
        _libc.mount(source, target, fstype, ctypes.c_ulong(flags), None),
        f"mount {target.decode()}",
    )


def mount_private_proc() -> None:
    """Stop mount propagation to the host, then a /proc of this PID namespace only: the host's
    processes (and their /proc/PID/mem, fds, namespaces) are out of sight."""
    _mount(None, b"/", None, _MS_REC | _MS_PRIVATE)
    _mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


_RTM_NEWROUTE, _NLMSG_ERROR = 24, 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_RT_TABLE_LOCAL, _RTPROT_BOOT, _RT_SCOPE_HOST, _RTN_LOCAL = 255, 3, 254, 2
_RTA_OIF = 4


def local_default_route(family: int) -> None:
    """``ip route add local default dev lo table local``: every address of `family` is this
    namespace's own, so a connection to anywhere is refused at once (and seen on ``lo``)
    instead of failing with "network unreachable", which leaves no packet to count."""
    oif = struct.pack("HHI", 8, _RTA_OIF, socket.if_nametoindex("lo"))
    rtmsg = struct.pack(
        "BBBBBBBBI", family, 0, 0, 0, _RT_TABLE_LOCAL, _RTPROT_BOOT, _RT_SCOPE_HOST, _RTN_LOCAL, 0
    )
    body = rtmsg + oif
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_EXCL | _NLM_F_CREATE
    message = struct.pack("IHHII", 16 + len(body), _RTM_NEWROUTE, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(message)
        reply = sock.recv(4096)
    kind = struct.unpack_from("IH", reply)[1]
    if kind == _NLMSG_ERROR:
        error = -struct.unpack_from("i", reply, 16)[0]
        if error:
            raise OSError(error, os.strerror(error), "route add local default")
