"""Noise-free layers per request: Python calls, coroutine resumptions and C calls in the gateway.

    python benchmarks/proxy_calls.py [--baseline-tree DIR] [--requests 1000] [--top 25]

The gateway of ``proxy.py`` (same config, default non-inspecting rules) runs as a subprocess
through this file (``--child``), which counts, between two signals, every Python function
entry (``sys.setprofile``), every resumption of a suspended coroutine (an ``await`` that
really waited: one task step) and every call of a C function from Python. Between the
signals this process sends exactly ``--requests`` keep-alive requests from one client,
after a warm-up, so the counts per request do not depend on the machine's load.
With ``--baseline-tree`` the same is measured on that tree too, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import inspect
import json
import os
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_COROUTINE = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _child(out: str, argv: list[str]) -> None:
    """In the gateway process: count between SIGUSR1 and SIGUSR2, write `out` at SIGUSR2."""
    calls: collections.Counter[str] = collections.Counter()
    totals = {"python_calls": 0, "resumptions": 0, "c_calls": 0}

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            code = frame.f_code
            if code.co_flags & _COROUTINE and frame.f_lasti > 8:
                totals["resumptions"] += 1
            else:
                totals["python_calls"] += 1
            calls[f"{code.co_name} ({Path(code.co_filename).name}:{code.co_firstlineno})"] += 1
        elif event == "c_call":
            totals["c_calls"] += 1
            calls[f"{getattr(arg, '__qualname__', arg)} (C)"] += 1

    def start(*_: object) -> None:
        sys.setprofile(profile)

    def stop(*_: object) -> None:
        sys.setprofile(None)
        Path(out).write_text(json.dumps({"totals": totals, "calls": calls.most_common(400)}))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from agentfirewall_proxy.main import main as gateway_main

    raise SystemExit(gateway_main(argv))


async def _measure(tree: Path, scheme: str, requests: int, workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from proxy import (
        KEY,
        Target,
        Upstream,
        open_client,
        read_response,
        request_bytes,
        start_process,
        upstream_tls,
        write_config,
    )

    loop = asyncio.get_running_loop()
    server_tls, ca_file = upstream_tls(workdir)
    server = await loop.create_server(
        Upstream, "127.0.0.1", 0, ssl=server_tls if scheme == "https" else None
    )
    port = server.sockets[0].getsockname()[1]
    out = workdir / f"calls-{os.getpid()}-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process, gw_port = start_process(
        [sys.executable, __file__, "--child", str(out), "--config-file",
         str(write_config(workdir, port)), "--listen", "127.0.0.1:0",
         "--ca-dir", str(workdir / f"ca-{tree.name}"), "--upstream-ca", str(ca_file)],
        "listening on ", env=env,
    )  # fmt: skip
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"Bench:" + KEY.encode()) + b"\r\n"
    target = Target(tree.name, ("127.0.0.1", gw_port), auth, process.pid)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await open_client(target, scheme, port, tls)
        raw = request_bytes(target, scheme, port)
        for _ in range(200):  # warm-up: pools, caches
            writer.write(raw)
            await read_response(reader)
        process.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.3)
        for _ in range(requests):
            writer.write(raw)
            await read_response(reader)
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGUSR2)
        for _ in range(100):
            if out.exists():
                break
            await asyncio.sleep(0.1)
        writer.transport.abort()
        return dict(json.loads(out.read_text()))
    finally:
        process.terminate()
        server.close()


async def main(args: argparse.Namespace) -> None:
    trees = [("this tree", ROOT)]
    if args.baseline_tree:
        trees.insert(0, ("baseline", Path(args.baseline_tree).resolve()))
    workdir = Path(tempfile.mkdtemp(prefix="tf-bench-calls-"))
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for scheme in ("http", "https"):
        for name, tree in trees:
            results[(name, scheme)] = await _measure(tree, scheme, args.requests, workdir)
    print("| case | tree | Python calls/req | coroutine resumptions/req | C calls/req |")
    print("|---|---|---|---|---|")
    for (name, scheme), found in results.items():
        t = found["totals"]
        n = args.requests
        print(f"| {scheme} c=1 | {name} | {t['python_calls'] / n:.1f} | "
              f"{t['resumptions'] / n:.2f} | {t['c_calls'] / n:.1f} |")  # fmt: skip
    if args.top:
        for (name, scheme), found in results.items():
            print(f"\n{scheme}, {name}: most called per request")
            for label, count in found["calls"][: args.top]:
                print(f"  {count / args.requests:6.2f}  {label}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-tree", metavar="DIR")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--top", type=int, default=0, help="also list the N most called")
    arguments = parser.parse_args()
    import uvloop

    uvloop.run(main(arguments))
