"""Gateway overhead: a local upstream reached directly, through this gateway, through mitmdump.

    python benchmarks/proxy.py [--duration 3] [--rounds 1] [--mitmdump /tmp/mitm-venv/bin/mitmdump]

One closed-loop load generator (asyncio + uvloop, in this process) drives every case: plain
HTTP (absolute-form through a proxy) and HTTPS (CONNECT, then TLS inside the tunnel, which
both proxies intercept), at 1 and 32 keep-alive connections, plus a new connection per
request at 1 client. The upstream is a raw asyncio server answering a fixed 50-byte JSON on
127.0.0.1 (HTTP and HTTPS, a trustme certificate). The gateway runs as a subprocess from a
config file (agent `Bench`, generic connector for 127.0.0.1 declared plain-HTTP by its
``base_url``, rule `generic.get` allow), so
every request is authenticated, routed, parsed, decided and recorded. Proxy CPU per request
is the proxy process's utime+stime from /proc divided by the requests it served.

One more case sends a 4 MiB JSON chat request (``model`` last, after the messages) over
intercepted HTTPS to an openai connector (upstream on 127.0.0.2) with a policy on
``parameters.model``: the gateway reads the whole body and scans it before forwarding. It
reports MiB/s, CPU per request and the proxy's peak RSS (``VmHWM``) after the case.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trustme

KEY = "aaf_live_" + "b" * 32
BODY = b'{"ok":true,"data":"0123456789abcdefghijklmnopq"}\n'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


#: The large-body case: a chat request of about 4 MiB with `model` after the messages.
BIG = json.dumps(
    {"messages": [{"role": "user", "content": "x" * 1000}] * 4150, "model": "gpt-4o"}
).encode()
BIG_HOST = "127.0.0.2"


class Upstream(asyncio.Protocol):
    """Answers every request head with RESPONSE (keep-alive, no body expected)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


@dataclass
class Target:
    name: str
    proxy: tuple[str, int] | None
    auth: bytes = b""
    pid: int | None = None


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def open_client(
    target: Target, scheme: str, port: int, tls: ssl.SSLContext, host: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if target.proxy is None:
        ssl_ctx = tls if scheme == "https" else None
        return await asyncio.open_connection(host, port, ssl=ssl_ctx)
    reader, writer = await asyncio.open_connection(*target.proxy)
    if scheme == "https":
        writer.write(b"CONNECT %b:%d HTTP/1.1\r\nHost: %b:%d\r\n%s\r\n"
                     % (host.encode(), port, host.encode(), port, target.auth))  # fmt: skip
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"{target.name}: CONNECT refused: {head[:80]!r}")
        await writer.start_tls(tls, server_hostname="127.0.0.1")
    return reader, writer


def request_bytes(target: Target, scheme: str, port: int, query: bytes = b"") -> bytes:
    if target.proxy is not None and scheme == "http":
        return (b"GET http://127.0.0.1:%d/bench%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
                % (port, query, port, target.auth))  # fmt: skip
    return b"GET /bench%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (query, port)


async def read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:120]!r} {await reader.read(400)!r}")
    await reader.readexactly(length)


async def run_case(
    target: Target,
    scheme: str,
    port: int,
    clients: int,
    seconds: float,
    new_conn: bool,
    unique: bool = False,
) -> dict[str, float]:
    """Closed-loop load; `unique`: every request names another target (``/bench?n=<i>``),
    so nothing the gateway remembers of one request serves the next."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # client-side verification cost is not the proxy's
    raw = request_bytes(target, scheme, port)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    sent = itertools.count()

    async def worker() -> None:
        conn = None if new_conn else await open_client(target, scheme, port, tls)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            reader, writer = conn or await open_client(target, scheme, port, tls)
            if unique:
                writer.write(request_bytes(target, scheme, port, b"?n=%d" % next(sent)))
            else:
                writer.write(raw)
            await read_response(reader)
            latencies.append(time.perf_counter() - start)
            if new_conn:
                writer.transport.abort()
        if conn:
            conn[1].transport.abort()

    cpu0 = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(target.pid) - cpu0
    latencies.sort()
    count = len(latencies)
    return {
        "rps": count / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(count * 0.99) - 1] * 1000,
        "cpu_ms": cpu * 1000 / count if target.pid else float("nan"),
    }


async def run_big_body(target: Target, port: int, seconds: float) -> dict[str, float]:
    """One keep-alive client posting BIG over intercepted HTTPS, closed loop."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    reader, writer = await open_client(target, "https", port, tls, BIG_HOST)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: %b:%d\r\n" % (BIG_HOST.encode(), port)
    raw = head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BIG) + BIG
    rss0, cpu0, count = peak_rss_mib(target.pid), cpu_seconds(target.pid), 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        writer.write(raw)
        await writer.drain()
        await read_response(reader)
        count += 1
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(target.pid) - cpu0
    writer.transport.abort()
    return {
        "mib_s": count * len(BIG) / elapsed / 2**20,
        "ms": elapsed * 1000 / count,
        "cpu_ms": cpu * 1000 / count if target.pid else float("nan"),
        "rss0": rss0,
        "rss": peak_rss_mib(target.pid),
    }


def upstream_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """The fake upstreams' TLS (a trustme certificate for 127.0.0.1 and BIG_HOST) and the
    file of its CA, for the gateway's ``--upstream-ca``."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", BIG_HOST).configure_cert(server_tls)
    ca_file = directory / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_tls, ca_file


def write_config(directory: Path, http_port: int) -> Path:
    """The gateway's config: the `bench` connector's plain upstream declared on `http_port`
    (a credential goes in cleartext only to the port its base URL names)."""
    digest = __import__("hashlib").sha256(KEY.encode()).hexdigest()
    snapshot = {
        "version": 1,
        "settings": {"approval_timeout_seconds": 300},
        "agents": [{"id": "agt_b", "name": "Bench", "status": "active",
                    "enforcement_level": "full_enforce", "key_hashes": [digest]}],
        "connectors": [{"id": "conn_generic_1", "type": "generic", "name": "bench",
                        "domains": ["127.0.0.1"], "credential": "upstream-secret",
                        "auth_type": "bearer", "base_url": f"http://127.0.0.1:{http_port}"},
                       {"id": "conn_openai_1", "type": "openai", "name": "big",
                        "domains": [BIG_HOST], "credential": "upstream-secret"}],
        "permissions": [{"agent": "Bench", "connector": "generic",
                         "action_pattern": "generic.get", "decision": "allow"},
                        {"agent": "Bench", "connector": "openai",
                         "action_pattern": "openai.*", "decision": "allow"}],
        "policies": [{"name": "models", "document": {
            "name": "models", "scope": {"action_types": ["openai.*"]},
            "rules": [{"name": "forbidden", "decision": "deny", "conditions": {
                "field": "action_spec.parameters.model", "operator": "equals",
                "value": "gpt-forbidden"}}]}}],
        "kill_switches": [],
    }  # fmt: skip
    path = directory / "bench-config.json"
    path.write_text(json.dumps(snapshot))
    return path


def start_process(
    cmd: list[str], pattern: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if pattern not in line:
        proc.kill()
        raise RuntimeError(f"could not start {cmd[0]}: {line}")
    return proc, int(line.split(pattern, 1)[1].split()[0].rsplit(":", 1)[1])


def tree_env(tree: Path, **more: str) -> dict[str, str]:
    """The environment that runs the gateway from the checkout `tree` (``PYTHONPATH``), for
    ``python -P -m agentfirewall_proxy``: without ``-P`` the working directory comes first
    on ``sys.path``, and run from another checkout's root, that checkout's code runs
    instead (both sides of an A/B were then one tree). Checked: exits when an import
    resolves outside `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), **more}
    probe = "import agentfirewall, agentfirewall_proxy; print(agentfirewall.__file__); "
    probe += "print(agentfirewall_proxy.__file__)"
    found = subprocess.run(
        [sys.executable, "-P", "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in found:
        if not Path(path).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"`{tree}` does not run from there: `{path}` is imported instead")
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    workdir = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    server_tls, ca_file = upstream_tls(workdir)
    http = await loop.create_server(Upstream, "127.0.0.1", 0)
    https = await loop.create_server(Upstream, "127.0.0.1", 0, ssl=server_tls)
    ports = {"http": http.sockets[0].getsockname()[1], "https": https.sockets[0].getsockname()[1]}
    big = await loop.create_server(Upstream, BIG_HOST, 0, ssl=server_tls)
    big_port = big.sockets[0].getsockname()[1]

    gateway, gw_port = start_process(
        [sys.executable, "-m", "agentfirewall_proxy",
         "--config-file", str(write_config(workdir, ports["http"])),
         "--listen", "127.0.0.1:0", "--ca-dir", str(workdir / "ca"),
         "--upstream-ca", str(ca_file)],
        "listening on ",
    )  # fmt: skip
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"Bench:" + KEY.encode()) + b"\r\n"
    targets = [
        Target("direct", None),
        Target("tameflare", ("127.0.0.1", gw_port), auth, gateway.pid),
    ]
    mitm = None
    if args.mitmdump and Path(args.mitmdump).exists():
        mport = free_port()
        mitm = subprocess.Popen(
            [args.mitmdump, "--mode", "regular", "-q", "--ssl-insecure", "--listen-host",
             "127.0.0.1", "--listen-port", str(mport)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(600):  # its start-up takes seconds, more on a busy machine
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", mport)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            probe.close()
            break
        targets.append(Target("mitmdump", ("127.0.0.1", mport), b"", mitm.pid))
    else:
        print(f"# mitmdump not found at `{args.mitmdump}`: skipped", file=sys.stderr)

    cases = [(s, c, False) for c in (1, 32) for s in ("http", "https")]
    cases += [("http", 1, True), ("https", 1, True)]
    rows: list[tuple[str, str, int, bool, dict[str, float]]] = []
    bodies: list[tuple[str, dict[str, float]]] = []
    try:
        for target in targets:  # warm-up: pools, leaf certificates, imports
            for scheme in ("http", "https"):
                await run_case(target, scheme, ports[scheme], 4, 0.5, False)
        for _ in range(args.rounds):
            for scheme, clients, new_conn in cases:
                for target in targets:
                    result = await run_case(target, scheme, ports[scheme], clients,
                                            args.duration, new_conn)  # fmt: skip
                    rows.append((target.name, scheme, clients, new_conn, result))
        for target in targets:
            bodies.append((target.name, await run_big_body(target, big_port, args.duration)))
    finally:
        gateway.terminate()
        if mitm:
            mitm.terminate()
    report(rows)
    report_bodies(bodies)


def report_bodies(bodies: list[tuple[str, dict[str, float]]]) -> None:
    print(
        f"\n| {len(BIG) / 2**20:.1f} MiB JSON, model last, https, c=1 | MiB/s | ms/request "
        "| proxy CPU ms/req | proxy peak RSS MiB, before → after |"
    )
    print("|---|---|---|---|---|")
    for name, r in bodies:
        print(f"| {name} | {r['mib_s']:.1f} | {r['ms']:.1f} | {r['cpu_ms']:.1f} "
              f"| {r['rss0']:.1f} → {r['rss']:.1f} |")  # fmt: skip


Row = tuple[str, str, int, bool, dict[str, float]]
_HEAD = (
    "| case | c | connection | req/s | p50 ms | p99 ms | / direct | / mitmdump req/s "
    "| added p50 ms | proxy CPU ms/req |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _median(rows: list[Row], case: tuple[str, str, int, bool], key: str) -> float:
    found = [r[key] for n, s, c, new, r in rows if (n, s, c, new) == case]
    return statistics.median(found) if found else float("nan")


def report(rows: list[Row]) -> None:
    """One Markdown row per case (median over rounds), with ratios to the same-run peers."""
    print(_HEAD)
    cases = list(dict.fromkeys((n, s, c, new) for n, s, c, new, _ in rows))
    for name, scheme, c, new in cases:
        case = (name, scheme, c, new)
        rps, p50 = _median(rows, case, "rps"), _median(rows, case, "p50")
        direct = ("direct", scheme, c, new)
        mitm = _median(rows, ("mitmdump", scheme, c, new), "rps")
        added = p50 - _median(rows, direct, "p50")
        print(
            f"| {name} {scheme} | {c} | {'new' if new else 'keep-alive'} | {rps:,.0f} | "
            f"{p50:.3f} | {_median(rows, case, 'p99'):.3f} | "
            f"{rps / _median(rows, direct, 'rps'):.2f} | {rps / mitm:.1f} | {added:.3f} | "
            f"{_median(rows, case, 'cpu_ms'):.3f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mitmdump", default="/tmp/mitm-venv/bin/mitmdump")
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
