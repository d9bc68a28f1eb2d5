"""The gateway's cost of tracing: CPU per request with tracing off, on, and without it at all.

    python benchmarks/tracing.py [--duration 3] [--rounds 3] [--baseline-tree DIR] [--quick]

Gateways run side by side as subprocesses from the config file ``benchmarks/proxy.py``
uses (agent `Bench`, generic connector for 127.0.0.1, `generic.get` allowed), against its
raw asyncio upstream, driven by its closed-loop load generator; cases and targets are
interleaved round by round, and each figure is the median over rounds:

- ``baseline``: a tree from before tracing existed (``--baseline-tree``, e.g.
  ``git worktree add /tmp/tf-pre-otel ec7d462``), run with ``PYTHONPATH`` on it;
- ``off``: this tree, no OTLP endpoint (the default: ``flow.trace`` stays None);
- ``on``: this tree, ``--otlp-endpoint`` to a receiver in this process that decodes each
  export (so the spans counted are the spans that arrived), batches every 200 ms;
- ``on 10%``: the same, sampling one trace in ten (``OTEL_TRACES_SAMPLER=traceidratio``,
  ``OTEL_TRACES_SAMPLER_ARG=0.1``): a span not sampled is a non-recording one.

Gateway CPU per request is its utime+stime (/proc) over the requests it served; the
exporter's thread runs in the gateway, so its work is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy import KEY, Target, Upstream, run_case, start_process, tree_env, write_config

ROOT = Path(__file__).resolve().parents[1]


class Sink:
    """An OTLP/HTTP receiver counting the spans it decodes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(raw)
                sink.spans += sum(
                    len(s.spans) for r in request.resource_spans for s in r.scope_spans
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _gateway(
    config: Path, workdir: Path, tree: Path, extra: list[str], more: dict[str, str]
) -> Any:
    env = tree_env(tree, OTEL_BSP_SCHEDULE_DELAY="200", **more)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    command = [sys.executable, "-P", "-m", "agentfirewall_proxy", "--config-file", str(config),
               "--listen", "127.0.0.1:0", "--ca-dir", str(workdir / "ca"), *extra]  # fmt: skip
    return start_process(command, "listening on ", env=env)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    workdir = Path(tempfile.mkdtemp(prefix="tf-bench-tracing-"))
    upstream = await loop.create_server(Upstream, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    config = write_config(workdir, port)
    sink = Sink()
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"Bench:" + KEY.encode()) + b"\r\n"
    otlp = ["--otlp-endpoint", sink.url]
    tenth = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    runs: list[tuple[str, Path, list[str], dict[str, str]]] = [
        ("off", ROOT, [], {}),
        ("on", ROOT, otlp, {}),
        ("on 10%", ROOT, otlp, tenth),
    ]
    if args.baseline_tree:
        runs.insert(0, ("baseline", Path(args.baseline_tree).resolve(), [], {}))
    processes, targets = [], []
    for name, tree, extra, more in runs:
        process, gw_port = _gateway(config, workdir, tree, extra, more)
        processes.append(process)
        targets.append(Target(name, ("127.0.0.1", gw_port), auth, process.pid))
    cases = [("http", 1), ("http", 32)]
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    served = {t.name: 0.0 for t in targets}
    try:
        for target in targets:  # warm-up: pools, imports, the exporter's connection
            await run_case(target, "http", port, 4, 0.5, False)
        for _ in range(args.rounds):
            for scheme, clients in cases:
                for target in targets:
                    result = await run_case(target, scheme, port, clients, args.duration, False)
                    results.setdefault((target.name, scheme, clients), []).append(result)
                    served[target.name] += result["rps"] * args.duration
        await asyncio.sleep(1.0)  # the last batch
    finally:
        for process in processes:
            process.terminate()
    traced = served.get("on", 0.0) + served.get("on 10%", 0.0) / 10
    report(results, [t.name for t in targets], cases, sink.spans, traced)


def report(
    results: dict[tuple[str, str, int], list[dict[str, float]]],
    names: list[str],
    cases: list[tuple[str, int]],
    spans: int,
    traced: float,
) -> None:
    reference = "baseline" if "baseline" in names else "off"
    print(f"| case | gateway | req/s | p50 ms | CPU ms/req | CPU / {reference} |")
    print("|---|---|---|---|---|---|")
    for scheme, clients in cases:
        ref = statistics.median(r["cpu_ms"] for r in results[(reference, scheme, clients)])
        for name in names:
            rows = results[(name, scheme, clients)]
            cpu = statistics.median(r["cpu_ms"] for r in rows)
            rps = statistics.median(r["rps"] for r in rows)
            p50 = statistics.median(r["p50"] for r in rows)
            print(f"| {scheme} c={clients} | {name} | {rps:,.0f} | {p50:.3f} | {cpu:.3f} "
                  f"| {cpu / ref:.2f} |")  # fmt: skip
    print(f"\nspans received: {spans:,}; expected ≈ {traced:,.0f} (every `on` request and a "
          "tenth of `on 10%`'s, warm-up aside)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", metavar="DIR", help="a tree from before tracing")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.duration, arguments.rounds = 1.0, 1
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
