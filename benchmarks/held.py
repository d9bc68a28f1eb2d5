"""Held approvals: N requests parked in one gateway process, and its resident memory.

    python benchmarks/held.py [--count 10000] [--in-memory]

The gateway runs in a child process (uvloop, a config snapshot in memory whose only rule
is `generic.get` -> require_approval, approval timeout one hour). This process opens N
keep-alive connections and sends one proxied request on each; every request is
authenticated, parsed, decided, gets an approval created, and is then held by the gateway.
When the gateway itself reports N held requests, its VmRSS is read from /proc. Target:
10,000 held under 100 MB. (The sandbox allows about 20,000 open files per process.)

By default the approvals are created in a real server process (started here, not
measured) and the gateway follows it through the Gateway API, as deployed. With
``--in-memory`` the gateway's in-memory control plane holds them, in the measured process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

KEY = "aaf_live_" + "h" * 32

CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, resource, sys, tempfile, uvloop
    from pathlib import Path
    from agentfirewall_proxy.control import HttpControl, StaticControl
    from agentfirewall_proxy.gateway import Gateway
    from agentfirewall_proxy.options import Options

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    key = sys.argv[1]
    control = HttpControl(sys.argv[2], sys.argv[3]) if len(sys.argv) > 2 else None
    snapshot = {
        "version": 1, "settings": {"approval_timeout_seconds": 3600},
        "agents": [{"id": "a", "name": "Held", "status": "active",
                    "key_hashes": [hashlib.sha256(key.encode()).hexdigest()]}],
        "connectors": [{"id": "c", "type": "generic", "domains": ["127.0.0.1"]}],
        "permissions": [{"agent": "Held", "connector": "generic",
                         "action_pattern": "generic.get", "decision": "require_approval"}],
    }

    async def main():
        options = Options(listen_port=0, ca_dir=Path(tempfile.mkdtemp()), traffic_interval=5.0,
                          idle_timeout=3600, io_timeout=3600)
        gateway = Gateway(options, control or StaticControl(snapshot))
        task = asyncio.ensure_future(gateway.run())
        await gateway.ready.wait()
        print("port", gateway.port, flush=True)
        while True:
            await asyncio.sleep(0.5)
            print("held", len(gateway.holds), flush=True)

    uvloop.run(main())
    """
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_control_plane(tmp: Path) -> tuple[Any, str, str]:
    """A real server with the same agent, connector and rule; (server, url, gateway token)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.livesrv import LiveServer

    server = LiveServer.start(tmp / "tf")
    key = server.create_agent("Held")
    server.admin("PATCH", "/v1/settings", json={"approval_timeout_seconds": 3600})
    server.admin("POST", "/v1/connectors",
                 json={"type": "generic", "domains": ["127.0.0.1"]})  # fmt: skip
    rule = {"agent": "Held", "connector": "generic", "action_pattern": "generic.get",
            "decision": "require_approval"}  # fmt: skip
    assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
    global KEY
    KEY = key
    return server, server.url, server.gateway_token


async def hold(count: int, control: tuple[str, str] | None) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, KEY, *(control or ()), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    port = int((await proc.stdout.readline()).split()[1])
    await asyncio.sleep(1.0)
    idle = rss_mib(proc.pid)
    token = base64.b64encode(b"Held:" + KEY.encode())
    request = (b"GET http://127.0.0.1:9/item HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
               b"Proxy-Authorization: Basic " + token + b"\r\n\r\n")  # fmt: skip
    writers = []
    started = time.monotonic()
    for index in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        writers.append(writer)
        if index % 500 == 499:
            await asyncio.sleep(0)  # let the gateway keep up
    held = 0
    deadline = time.monotonic() + 300
    while held < count and time.monotonic() < deadline:
        held = int((await proc.stdout.readline()).split()[1])
    elapsed = time.monotonic() - started
    rss = rss_mib(proc.pid)
    per_held = (rss - idle) * 1024 / max(held, 1)
    print("| held (confirmed by the gateway) | gateway RSS MiB | idle RSS MiB | KiB per held | s |")
    print("|---|---|---|---|---|")
    print(f"| {held:,} / {count:,} | {rss:.1f} | {idle:.1f} | {per_held:.2f} | {elapsed:.1f} |")
    for writer in writers:
        writer.transport.abort()
    proc.terminate()
    await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--in-memory", action="store_true",
                        help="approvals in the gateway's in-memory control plane")  # fmt: skip
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server, control = None, None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.in_memory:
            server, url, token = start_control_plane(Path(tmp))
            control = (url, token)
        try:
            import uvloop

            uvloop.run(hold(args.count, control))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
