"""Soak: mixed proxy + SDK traffic with holds, approvals and kill switches, sampled over time.

A real control plane (subprocess) and a real gateway (subprocess, following it) in front of
a local upstream (in this process). For the whole run this process keeps up, at once:

* proxy traffic: `--proxy-clients` keep-alive clients sending allowed GETs through the gateway;
* SDK traffic: `--sdk-clients` clients calling ``POST /api/v1/actions``;
* holds: one client at a time sending a POST the rules hold, approved by the admin API as
  soon as it is listed (the request then completes through the gateway);
* kill switches: every 5 s an agent's kill switch is set, then cleared 2 s later (the SDK
  agent's: its calls are denied meanwhile, as they must be).

Every `--interval` seconds it samples each process's RSS (VmRSS) and open files (/proc/pid/fd)
and each traffic kind's count, p50 and p99 for that interval. The end prints the samples
and the drift between the first sample after warm-up and the last.

    python benchmarks/soak.py                    # 30 minutes, a sample a minute
    python benchmarks/soak.py --short            # 2 minutes, a sample every 15 s
    nox -s soak -- --short
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.livesrv import LiveServer

GATEWAY = textwrap.dedent(
    """
    import asyncio, sys, tempfile, uvloop
    from pathlib import Path
    from agentfirewall_proxy.control import HttpControl
    from agentfirewall_proxy.gateway import Gateway
    from agentfirewall_proxy.options import Options

    async def main():
        options = Options(listen_port=0, ca_dir=Path(tempfile.mkdtemp()), traffic_interval=1.0)
        gateway = Gateway(options, HttpControl(sys.argv[1], sys.argv[2]))
        asyncio.ensure_future(gateway.run())
        await gateway.ready.wait()
        print("port", gateway.port, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())
    """
)
SPEC = {"type": "github.pr.get", "resource": {"environment": "production"}, "parameters": {}}


def proc_sample(pid: int) -> tuple[float, int]:
    """(RSS MiB, open files) of a process."""
    rss = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def upstream() -> tuple[asyncio.AbstractServer, int]:
    body = b'{"ok":true}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                for line in request.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                writer.write(head + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class Soak:
    def __init__(self, args: argparse.Namespace, server: LiveServer, key: str, sdk_key: str):
        self.args = args
        self.server = server
        self.key = key
        self.sdk_key = sdk_key
        self.latency: dict[str, list[float]] = {"proxy": [], "sdk": [], "hold": []}
        self.counts: dict[str, int] = {"errors": 0, "killed": 0}
        self.stop_at = 0.0

    def auth(self) -> bytes:
        return b"Basic " + base64.b64encode(b"Soak:" + self.key.encode())

    async def proxy_client(self, gw: int, up: int, method: str = "GET") -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw)
        request = (
            (
                f"{method} http://127.0.0.1:{up}/item HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n"
                f"Content-Length: 0\r\n"
            ).encode()
            + b"Proxy-Authorization: "
            + self.auth()
            + b"\r\n\r\n"
        )
        try:
            while time.monotonic() < self.stop_at:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.counts["errors"] += 1
                    self.counts[f"{method} {head[9:12].decode()}"] = (
                        self.counts.get(f"{method} {head[9:12].decode()}", 0) + 1
                    )
                self.latency["proxy" if method == "GET" else "hold"].append(
                    time.perf_counter() - started
                )
                if method != "GET":
                    return
        finally:
            writer.close()

    async def sdk_client(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.api_url, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {self.sdk_key}"}
            while time.monotonic() < self.stop_at:
                started = time.perf_counter()
                r = await client.post("/v1/actions", json={"action_spec": SPEC}, headers=headers)
                self.latency["sdk"].append(time.perf_counter() - started)
                if r.status_code != 200:
                    self.counts["errors"] += 1
                    self.counts[f"sdk {r.status_code}"] = (
                        self.counts.get(f"sdk {r.status_code}", 0) + 1
                    )
                elif r.json()["status"] == "denied":
                    self.counts["killed"] += 1

    async def holds(self, gw: int, up: int) -> None:
        async with httpx.AsyncClient(base_url=self.server.api_url, trust_env=False) as admin:
            headers = {"Authorization": f"Bearer {self.server.admin_token}"}
            while time.monotonic() < self.stop_at - 5:
                held = asyncio.ensure_future(self.proxy_client(gw, up, "POST"))
                while not held.done():
                    listed = await admin.get("/v1/approvals", headers=headers)
                    for approval in listed.json()["approvals"]:
                        await admin.post(f"/v1/approvals/{approval['id']}/approve", headers=headers)
                    await asyncio.sleep(0.2)
                await held

    async def kill_switches(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.api_url, trust_env=False) as admin:
            headers = {"Authorization": f"Bearer {self.server.admin_token}"}
            while time.monotonic() < self.stop_at - 3:
                for active in (True, False):
                    body = {"active": active, "scope": "agent:SoakSDK", "reason": "soak"}
                    r = await admin.post("/v1/kill-switch", json=body, headers=headers)
                    if r.status_code >= 400:
                        self.counts["errors"] += 1
                    await asyncio.sleep(2.0 if active else 3.0)


async def run(args: argparse.Namespace, server: LiveServer, key: str, sdk_key: str) -> None:
    up_server, up = await upstream()
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GATEWAY,
        server.url,
        server.gateway_token,
        stdout=asyncio.subprocess.PIPE,
    )
    assert gateway.stdout is not None
    gw = int((await gateway.stdout.readline()).split()[1])
    assert server.process is not None
    pids = {"server": server.process.pid, "gateway": gateway.pid}
    soak = Soak(args, server, key, sdk_key)
    soak.stop_at = time.monotonic() + args.minutes * 60
    tasks = [asyncio.ensure_future(soak.proxy_client(gw, up)) for _ in range(args.proxy_clients)]
    tasks += [asyncio.ensure_future(soak.sdk_client()) for _ in range(args.sdk_clients)]
    tasks += [
        asyncio.ensure_future(soak.holds(gw, up)),
        asyncio.ensure_future(soak.kill_switches()),
    ]
    samples: list[dict[str, Any]] = []
    print(
        "| t s | server RSS MiB | server files | gateway RSS MiB | gateway files | proxy n / p50 "
        "/ p99 ms | SDK n / p50 / p99 ms | holds n / p50 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    began = time.monotonic()
    while time.monotonic() < soak.stop_at:
        await asyncio.sleep(min(args.interval, max(0.1, soak.stop_at - time.monotonic())))
        cut = {k: sorted(v) for k, v in soak.latency.items()}
        for values in soak.latency.values():
            values.clear()
        sample: dict[str, Any] = {"t": time.monotonic() - began}
        for name, pid in pids.items():
            sample[name] = proc_sample(pid)
        sample["lat"] = cut
        samples.append(sample)

        def q(v: list[float], p: float) -> str:
            return f"{v[min(len(v) - 1, int(len(v) * p))] * 1000:.1f}" if v else "-"

        print(
            f"| {sample['t']:.0f} | {sample['server'][0]:.1f} | {sample['server'][1]} | "
            f"{sample['gateway'][0]:.1f} | {sample['gateway'][1]} | "
            f"{len(cut['proxy'])} / {q(cut['proxy'], 0.5)} / {q(cut['proxy'], 0.99)} | "
            f"{len(cut['sdk'])} / {q(cut['sdk'], 0.5)} / {q(cut['sdk'], 0.99)} | "
            f"{len(cut['hold'])} / {q(cut['hold'], 0.5)} | {soak.counts['errors']} |",
            flush=True,
        )
    await asyncio.gather(*tasks, return_exceptions=True)
    gateway.terminate()
    await gateway.wait()
    up_server.close()
    if len(samples) >= 3:
        first, last = samples[1], samples[-1]  # the first interval is the warm-up
        print(
            f"\ndrift from t={first['t']:.0f} s to t={last['t']:.0f} s: server RSS "
            f"{last['server'][0] - first['server'][0]:+.1f} MiB, files "
            f"{last['server'][1] - first['server'][1]:+d}; gateway RSS "
            f"{last['gateway'][0] - first['gateway'][0]:+.1f} MiB, files "
            f"{last['gateway'][1] - first['gateway'][1]:+d}; proxy p50 "
            + " -> ".join(
                f"{statistics.median(s['lat']['proxy']) * 1000:.1f}"
                for s in (first, last)
                if s["lat"]["proxy"]
            )
            + f" ms; SDK calls denied by the kill switch {soak.counts['killed']}; "
            f"errors {soak.counts['errors']}"
        )
        print(f"counts: {soak.counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--short", action="store_true", help="2 minutes, a sample every 15 s")
    parser.add_argument("--proxy-clients", type=int, default=4)
    parser.add_argument("--sdk-clients", type=int, default=4)
    args = parser.parse_args()
    if args.short:
        args.minutes, args.interval = 2.0, 15.0
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer.start(Path(tmp) / "tf")
        try:
            key = server.create_agent("Soak")
            sdk_key = server.create_agent("SoakSDK", rate_limit_per_minute=1_000_000)
            server.admin(
                "POST", "/v1/connectors", json={"type": "generic", "domains": ["127.0.0.1"]}
            )
            for pattern, decision in (
                ("generic.get", "allow"),
                ("generic.post", "require_approval"),
            ):
                rule = {"agent": "Soak", "connector": "generic", "action_pattern": pattern,
                        "decision": decision}  # fmt: skip
                r = server.admin("POST", "/v1/permissions", json=rule)
                assert r.status_code in (200, 201), r.text
            import uvloop

            uvloop.run(run(args, server, key, sdk_key))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
