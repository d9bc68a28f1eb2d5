"""The Linux calls `tf run --isolate` needs, through ctypes and netlink (no external tools).

Each function does one thing and raises ``OSError`` (with the errno the kernel gave) when the
kernel refuses; the sandbox turns that into a message naming the step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct

from agentfirewall_proxy.isolate.packets import IPV6_OPTION_HEADERS, MAX_OPTION_HEADERS

__all__ = [
    "ALLOWED_FAMILIES",
    "ALLOWED_PROTOCOLS",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "ESCAPE_CAPABILITIES",
    "attach_socket_filter",
    "drop_capabilities",
    "filter_socket_families",
    "local_default_route",
    "loopback_up",
    "map_current_user",
    "mount_private_proc",
    "packet_drops",
    "refusal_frames_filter",
    "refuse_multicast",
    "seal_kernel_files",
    "set_parent_death_signal",
    "set_undumpable",
    "socket_family_filter",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

# Capabilities a root agent could leave its namespaces with (setns, netlink on other
# namespaces, kernel modules, raw devices, ptrace, BPF), or send what the namespace neither
# refuses nor reports with (CAP_NET_RAW: IPv4 source routes, IPv6 option headers whose
# options say "discard silently"): dropped from the bounding set.
ESCAPE_CAPABILITIES = {
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
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
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), what)


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


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    name, where, kind = (
        None if part is None else part.encode() for part in (source, target, fstype)
    )
    _check(_libc.mount(name, where, kind, ctypes.c_ulong(flags), None), f"mount {target}")


_SAFE = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC


def mount_private_proc() -> None:
    """Stop mount propagation to the host, then a /proc of this PID namespace only: the host's
    processes (and their /proc/PID/mem, fds, namespaces) are out of sight."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("proc", "/proc", "proc", _SAFE)


# What runc (Docker) makes read-only in a container's /proc, and what it hides: the kernel's
# settings are the host's whatever the namespaces (a root agent that writes
# kernel/core_pattern has the kernel run its program as root outside them), and writing them
# needs only uid 0, no capability.
_PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")
_PROC_HIDDEN = ("kcore", "keys", "timer_list", "sched_debug", "acpi", "scsi")


def _read_only(source: str, target: str) -> None:
    """Bind `source` on `target`, read-only. A remount must keep the flags the kernel locked
    on the mount it copies (in a user namespace), so it adds to those it finds."""
    _mount(source, target, None, _MS_BIND)
    kept = os.statvfs(target).f_flag & _SAFE  # the ST_ flags of these have the MS_ values
    _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NOEXEC | kept)


def seal_kernel_files() -> None:
    """After :func:`mount_private_proc`: the kernel's settings in /proc and /sys read-only, its
    memory and keys hidden. Without CAP_SYS_ADMIN nobody can undo it, and in a user namespace
    of its own the agent finds these mounts locked (read-only, and covering what is below)."""
    for name in _PROC_READ_ONLY:
        if os.path.lexists(f"/proc/{name}"):
            _read_only(f"/proc/{name}", f"/proc/{name}")
    for name in _PROC_HIDDEN:
        path = f"/proc/{name}"
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", _MS_RDONLY | _SAFE)
        elif os.path.lexists(path):
            _read_only("/dev/null", path)
    if os.path.isdir("/sys"):
        try:  # this namespace's own view (its network devices), read-only
            _mount("sysfs", "/sys", "sysfs", _MS_RDONLY | _SAFE)
        except OSError:  # refused in a user namespace where the host's /sys is masked
            _mount("tmpfs", "/sys", "tmpfs", _MS_RDONLY | _SAFE)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


_RTM_NEWROUTE, _NLMSG_ERROR = 24, 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_REPLACE, _NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
_RT_TABLE_LOCAL, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RT_SCOPE_HOST = 255, 3, 0, 254
_RTN_LOCAL, _RTN_PROHIBIT = 2, 8
_RTA_DST, _RTA_OIF = 1, 4
# What no address of the local default route covers: a datagram to these is delivered to
# nobody and the kernel answers no refusal (it never does for multicast or broadcast);
# 127.255.255.255: lo's own broadcast route (made when lo came up), replaced.
_MULTICAST: dict[int, tuple[tuple[str, int], ...]] = {
    socket.AF_INET: (("224.0.0.0", 4), ("255.255.255.255", 32), ("127.255.255.255", 32)),
    socket.AF_INET6: (("ff00::", 8),),
}


def local_default_route(family: int) -> None:
    """``ip route add local default dev lo table local``: every address of `family` is this
    namespace's own, so a connection to anywhere is refused at once (and seen on ``lo``)
    instead of failing with "network unreachable", which leaves no packet to count."""
    oif = struct.pack("HHI", 8, _RTA_OIF, socket.if_nametoindex("lo"))
    _add_route(family, _RTN_LOCAL, _RT_SCOPE_HOST, 0, oif)


def refuse_multicast(family: int) -> None:
    """``ip route replace prohibit 224.0.0.0/4 table local`` (and the broadcast addresses,
    and ``ff00::/8``): sending to a group fails at once (*permission denied*) instead of
    succeeding with nothing to count, since the kernel answers no refusal for them."""
    for address, length in _MULTICAST[family]:
        packed = socket.inet_pton(family, address)
        dst = struct.pack("HH", 4 + len(packed), _RTA_DST) + packed
        _add_route(family, _RTN_PROHIBIT, _RT_SCOPE_UNIVERSE, length, dst)


def _add_route(family: int, kind: int, scope: int, length: int, attributes: bytes) -> None:
    """RTM_NEWROUTE in the local table (looked up first, the longest prefix winning)."""
    rtmsg = struct.pack(
        "BBBBBBBBI", family, length, 0, 0, _RT_TABLE_LOCAL, _RTPROT_BOOT, scope, kind, 0
    )
    body = rtmsg + attributes
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_REPLACE | _NLM_F_CREATE
    message = struct.pack("IHHII", 16 + len(body), _RTM_NEWROUTE, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(message)
        reply = sock.recv(4096)
    kind = struct.unpack_from("IH", reply)[1]
    if kind == _NLMSG_ERROR:
        error = -struct.unpack_from("i", reply, 16)[0]
        if error:
            raise OSError(error, os.strerror(error), "route add")


# ---- classic BPF: the agent's socket families (seccomp), the packet counter's frames ----

_LD_W, _LD_H, _LD_B = 0x20, 0x28, 0x30  # BPF_LD | size | BPF_ABS
_LD_W_IND, _LD_H_IND, _LD_B_IND = 0x40, 0x48, 0x50  # ... | BPF_IND: at X + k
_LDX_MSH, _AND, _JEQ, _JGE, _RET = 0xB1, 0x54, 0x15, 0x35, 0x06
_LDX_IMM, _LDX_MEM, _ST, _ADD, _ADD_X, _LSH = 0x01, 0x61, 0x02, 0x04, 0x0C, 0x64

# One instruction: (code, k) or, for a jump, (code, k, label if true, label if false), where
# None is the next instruction; a label is a str naming the instruction after it.
_Line = tuple[int, int] | tuple[int, int, str | None, str | None] | str


def _assemble(lines: list[_Line]) -> bytes:
    """The ``struct sock_filter`` array of `lines` (jumps go forward only, as BPF's must)."""
    labels: dict[str, int] = {}
    code: list[tuple[int, int, list[str | None]]] = []
    for line in lines:
        if isinstance(line, str):
            labels[line] = len(code)
        else:
            op, k, *jumps = line
            code.append((op, k, [*jumps, None, None][:2]))
    out = b""
    for at, (op, k, jumps) in enumerate(code):
        true, false = (0 if to is None else labels[to] - at - 1 for to in jumps)
        out += struct.pack("HBBI", op, true, false, k)
    return out


class _Program(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
# An IP socket's protocols: those the namespace refuses and `tf run` reports (0: the type's
# own, TCP or UDP). Not ICMP: an echo to any address is answered by the namespace itself,
# and nothing reports it. Nor raw sockets (SOCK_RAW, the obsolete SOCK_PACKET).
_MPTCP = 262
ALLOWED_PROTOCOLS = (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, _MPTCP)
_SOCK_TYPE_MASK = 0xF  # the rest of socket()'s type are flags (SOCK_NONBLOCK, SOCK_CLOEXEC)
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_NO_NEW_PRIVS = 22, 2, 38
_SECCOMP_KILL, _SECCOMP_ERRNO, _SECCOMP_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_X32_BIT = 0x40000000
# uname's machine: (AUDIT_ARCH_*, socket, socketpair, setsockopt, io_uring_setup)
_SYSCALLS = {
    "x86_64": (0xC000003E, 41, 53, 54, 425),
    "aarch64": (0xC00000B7, 198, 199, 208, 425),
}
# IPV6_RTHDR and IPV6_2292RTHDR: a routing header any user may put on a socket's packets,
# whose datagrams the namespace drops without an answer (a segment-routing header), so a
# client waits for a timeout and nothing is counted. The other option headers, and IPv4's
# source routes, need CAP_NET_RAW, which the agent has not.
_ROUTING_HEADER_OPTIONS = (57, 5)


def socket_family_filter(machine: str) -> bytes:
    """The seccomp program: socket() and socketpair() of a family but ALLOWED_FAMILIES fail
    with EAFNOSUPPORT (AF_VSOCK, AF_BLUETOOTH, AF_ALG... reach past the network namespace;
    AF_PACKET is not needed either); of AF_INET and AF_INET6, a type but SOCK_STREAM and
    SOCK_DGRAM fails with ESOCKTNOSUPPORT and a protocol but ALLOWED_PROTOCOLS with
    EPROTONOSUPPORT (UDP-Lite, SCTP, ICMP: what the namespace would not refuse, or refuse
    unseen); setsockopt() of an IPv6 routing header fails with EPERM; io_uring (which makes
    sockets without socket()) fails with ENOSYS; a call of another architecture's (or
    x86_64's x32) numbers kills the process. OSError for a machine it has no numbers for."""
    if machine not in _SYSCALLS:
        raise OSError(errno.ENOTSUP, f"no socket filter for this machine (`{machine}`)")
    arch, sock, pair, setsockopt, io_uring = _SYSCALLS[machine]
    ip = (socket.AF_INET, socket.AF_INET6)
    families: list[_Line] = [
        (_JEQ, family, "ip" if family in ip else "allow", None) for family in ALLOWED_FAMILIES
    ]
    protocols: list[_Line] = [(_JEQ, protocol, "allow", None) for protocol in ALLOWED_PROTOCOLS]
    options: list[_Line] = [(_JEQ, name, "eperm", None) for name in _ROUTING_HEADER_OPTIONS]
    # args[N] is at 16 + 8 N; its low half (little-endian) is all the kernel reads of an int
    return _assemble([
        (_LD_W, 4), (_JEQ, arch, None, "kill"),  # seccomp_data.arch
        (_LD_W, 0), (_JGE, _X32_BIT, "kill", None),  # .nr
        (_JEQ, io_uring, "enosys", None), (_JEQ, setsockopt, "option", None),
        (_JEQ, sock, "family", None), (_JEQ, pair, "family", "allow"),
        "family", (_LD_W, 16),  # args[0]: the family
        *families, (_RET, _SECCOMP_ERRNO | errno.EAFNOSUPPORT),
        "ip", (_LD_W, 24), (_AND, _SOCK_TYPE_MASK),  # args[1]: the type
        (_JEQ, socket.SOCK_STREAM, "protocol", None), (_JEQ, socket.SOCK_DGRAM, "protocol", None),
        (_RET, _SECCOMP_ERRNO | errno.ESOCKTNOSUPPORT),
        "protocol", (_LD_W, 32),  # args[2]: the protocol
        *protocols, (_RET, _SECCOMP_ERRNO | errno.EPROTONOSUPPORT),
        "option", (_LD_W, 24), (_JEQ, socket.IPPROTO_IPV6, None, "allow"),  # args[1]: level
        (_LD_W, 32), *options,  # args[2]: the option
        "allow", (_RET, _SECCOMP_ALLOW),
        "eperm", (_RET, _SECCOMP_ERRNO | errno.EPERM),
        "enosys", (_RET, _SECCOMP_ERRNO | errno.ENOSYS),
        "kill", (_RET, _SECCOMP_KILL),
    ])  # fmt: skip


def filter_socket_families() -> None:
    """Install :func:`socket_family_filter` on this process, for it and every process it
    starts (no_new_privs first: the kernel requires it of a process without CAP_SYS_ADMIN)."""
    code = ctypes.create_string_buffer(socket_family_filter(os.uname().machine))
    program = _Program(len(code.raw) // 8, ctypes.cast(code, ctypes.c_void_p))
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0), "prctl")
    _check(
        _libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(program)),
        "seccomp",
    )


_PACKET_OUTGOING, _SKF_AD_PKTTYPE = 4, 0xFFFFF000 + 4
_SNAP = 14 + 1280  # the longest ICMP error there is (ICMPv6's: IPv6's minimum MTU)
_QUOTED_V6 = 54 + 8  # the quoted IPv6 header, after the outer one and the ICMPv6 header


def _ipv6_option_headers() -> list[_Line]:
    """With A the quoted datagram's next header: on to "udp6" with X at its UDP header, past
    at most MAX_OPTION_HEADERS option headers (an unrolled loop: BPF has none)."""
    lines: list[_Line] = [(_LDX_IMM, _QUOTED_V6 + 40)]
    for hop in range(MAX_OPTION_HEADERS):
        lines += [
            (_JEQ, socket.IPPROTO_UDP, "udp6", None),
            *[(_JEQ, header, f"option{hop}", None) for header in IPV6_OPTION_HEADERS],
            (_RET, 0),
            f"option{hop}",
            (_LD_B_IND, 1), (_ADD, 1), (_LSH, 3), (_ADD_X, 0), (_ST, 0),  # M[0] = the next
            (_LD_B_IND, 0), (_LDX_MEM, 0),  # A = its next header, X = where it starts
        ]  # fmt: skip
    return [*lines, (_JEQ, socket.IPPROTO_UDP, "udp6", "drop")]


def refusal_frames_filter() -> bytes:
    """The packet counter's socket filter: only the outgoing frames on ``lo`` that
    :func:`agentfirewall_proxy.isolate.packets.parse_frame` counts (a TCP RST+ACK with
    sequence 0; an ICMP / ICMPv6 port unreachable quoting UDP, after IPv6 option headers),
    so the traffic of the bridge and everything else never fills its queue."""
    return _assemble([
        (_LD_W, _SKF_AD_PKTTYPE), (_JEQ, _PACKET_OUTGOING, None, "drop"),
        (_LD_H, 12), (_JEQ, 0x0800, None, "ipv6"),
        (_LDX_MSH, 14),  # X = the IPv4 header's length
        (_LD_B, 23), (_JEQ, socket.IPPROTO_TCP, None, "icmp"),
        (_LD_B_IND, 14 + 13), (_AND, 0x14), (_JEQ, 0x14, None, "drop"),  # RST+ACK
        (_LD_W_IND, 14 + 4), (_JEQ, 0, "keep", "drop"),  # sequence 0
        "icmp", (_JEQ, socket.IPPROTO_ICMP, None, "drop"),
        (_LD_H_IND, 14), (_JEQ, 0x0303, None, "drop"),  # port unreachable
        (_LD_B_IND, 14 + 8 + 9), (_JEQ, socket.IPPROTO_UDP, None, "drop"),
        # the quoted UDP header is whole (a load past the frame's end drops it); then keep
        (_LD_B_IND, 14 + 8 + 20 + 7), (_JEQ, 0, "keep", "keep"),
        "ipv6", (_JEQ, 0x86DD, None, "drop"),
        (_LD_B, 14 + 6), (_JEQ, socket.IPPROTO_TCP, None, "icmp6"),
        (_LD_B, 54 + 13), (_AND, 0x14), (_JEQ, 0x14, None, "drop"),
        (_LD_W, 54 + 4), (_JEQ, 0, "keep", "drop"),
        "icmp6", (_JEQ, socket.IPPROTO_ICMPV6, None, "drop"),
        (_LD_H, 54), (_JEQ, 0x0104, None, "drop"),  # port unreachable
        (_LD_B, _QUOTED_V6 + 6), *_ipv6_option_headers(),
        "udp6", (_LD_B_IND, 7),  # the quoted UDP header is whole
        "keep", (_RET, _SNAP),
        "drop", (_RET, 0),
    ])  # fmt: skip


_SO_ATTACH_FILTER, _SO_RCVBUFFORCE = 26, 33
_SOL_PACKET, _PACKET_STATISTICS = 263, 6


def attach_socket_filter(sock: socket.socket, code: bytes, receive_buffer: int) -> None:
    """Have the kernel queue on `sock` only what `code` keeps, in a buffer of
    `receive_buffer` bytes (beyond ``net.core.rmem_max`` only for root: else at most that)."""
    buffer = ctypes.create_string_buffer(code)
    program = _Program(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, receive_buffer)
    except PermissionError:  # needs CAP_NET_ADMIN in the host's user namespace
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)


def packet_drops(sock: socket.socket) -> int:
    """Frames the filter kept that the kernel dropped (the queue was full) since the last
    call: each one an attempt the counter never saw."""
    return int(struct.unpack("II", sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))[1])
