"""Where the gateway's CPU goes per request: cProfile of the gateway process under load.

The gateway of `proxy.py` (same config: agent `Bench`, generic connector, `generic.get`
allowed, no inspecting rule) runs under cProfile while this process sends plain-HTTP
keep-alive requests through it (or intercepted HTTPS, ``--scheme https``, to an upstream
with its own certificate); then it prints the functions with the most own time, per
request served.

    python benchmarks/proxy_profile.py [--scheme http|https] [--clients 32] [--duration 10]
                                       [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy as bench


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server_tls, ca_file = bench.upstream_tls(workdir)
        upstream = await loop.create_server(
            bench.Upstream, "127.0.0.1", 0, ssl=server_tls if args.scheme == "https" else None
        )
        port = upstream.sockets[0].getsockname()[1]
        profile = workdir / "gateway.prof"
        gateway, gw_port = bench.start_process(
            [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "agentfirewall_proxy",
             "--config-file", str(bench.write_config(workdir, port)), "--listen", "127.0.0.1:0",
             "--ca-dir", str(workdir / "ca"), "--upstream-ca", str(ca_file)],
            "listening on ",
        )  # fmt: skip
        auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"Bench:" + bench.KEY.encode())
        target = bench.Target("tameflare", ("127.0.0.1", gw_port), auth + b"\r\n", gateway.pid)
        await bench.run_case(target, args.scheme, port, 4, 1.0, False)  # warm-up
        result = await bench.run_case(target, args.scheme, port, args.clients, args.duration, False)
        gateway.send_signal(signal.SIGINT)
        gateway.wait(60)
        upstream.close()
        served = result["rps"] * args.duration
        print(
            f"{result['rps']:,.0f} req/s at {args.clients} clients, gateway CPU "
            f"{result['cpu_ms']:.3f} ms/request (under cProfile: slower than without)"
        )
        deadline = time.monotonic() + 30
        while not profile.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stats = pstats.Stats(str(profile))
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
        total = sum(v[2] for _, v in rows)
        print("\n| own µs/request | share | calls/request | function |\n|---|---|---|---|")
        for (file, line, name), (_cc, calls, own, _cum, _callers) in rows[: args.top]:
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
            print(
                f"| {own / served * 1e6:.1f} | {own / total:.1%} | {calls / served:.1f} | "
                f"{name} ({where}) |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    import uvloop

    uvloop.run(main(parser.parse_args()))
