"""Gateway CPU per request, this tree against a baseline tree, side by side in one run.

    python benchmarks/proxy_cpu.py --baseline-tree DIR [--duration 3] [--rounds 3]
                                   [--cases http:1,https:1,http:32,https:32] [--unique]

Two gateways run as subprocesses from the config ``benchmarks/proxy.py`` writes (agent
`Bench`, generic connector for 127.0.0.1, `generic.get` allowed: the default,
non-inspecting rules), one with ``PYTHONPATH`` on the baseline tree (e.g. ``git -C /work/main
archive <commit> | tar -x -C /tmp/base``), one on this tree. Its closed-loop load generator
drives plain HTTP and intercepted HTTPS at 1 and 32 keep-alive clients; cases and
gateways alternate round by round (the order of the two flips each round), and each
figure is the median over rounds. CPU per request is the gateway's utime+stime from /proc
over the requests it served: the figure least moved by other load on a shared machine.
The load repeats one request, which the gateway decides once and then answers from its
memory of decisions; ``--unique`` sends every request to another target instead (the
price when nothing repeats). Each gateway runs ``python -P`` with the tree checked
(``proxy.tree_env``), wherever this script is started from.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy import (
    KEY,
    Target,
    Upstream,
    run_case,
    start_process,
    tree_env,
    upstream_tls,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
CASES = "http:1,https:1,http:32,https:32"


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    workdir = Path(tempfile.mkdtemp(prefix="tf-bench-cpu-"))
    server_tls, ca_file = upstream_tls(workdir)
    http = await loop.create_server(Upstream, "127.0.0.1", 0)
    https = await loop.create_server(Upstream, "127.0.0.1", 0, ssl=server_tls)
    ports = {"http": http.sockets[0].getsockname()[1], "https": https.sockets[0].getsockname()[1]}
    config = write_config(workdir, ports["http"])
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"Bench:" + KEY.encode()) + b"\r\n"
    trees = [("baseline", Path(args.baseline_tree).resolve()), ("this tree", ROOT)]
    processes, targets = [], []
    for name, tree in trees:
        env = tree_env(tree)
        process, port = start_process(
            [sys.executable, "-P", "-m", "agentfirewall_proxy", "--config-file", str(config),
             "--listen", "127.0.0.1:0", "--ca-dir", str(workdir / f"ca-{len(targets)}"),
             "--upstream-ca", str(ca_file)],
            "listening on ", env=env,
        )  # fmt: skip
        processes.append(process)
        targets.append(Target(name, ("127.0.0.1", port), auth, process.pid))
    cases = [(s, int(c)) for s, c in (case.split(":") for case in args.cases.split(","))]
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        for target in targets:  # warm-up: pools, leaf certificates, imports
            for scheme in ("http", "https"):
                await run_case(target, scheme, ports[scheme], 4, 0.5, False)
        for round_ in range(args.rounds):
            for scheme, clients in cases:
                for target in targets if round_ % 2 == 0 else targets[::-1]:
                    found = await run_case(
                        target, scheme, ports[scheme], clients, args.duration, False, args.unique
                    )
                    results.setdefault((target.name, scheme, clients), []).append(found["cpu_ms"])
    finally:
        for process in processes:
            process.terminate()
    print("| case | baseline CPU ms/req | this tree CPU ms/req | this / baseline |")
    print("|---|---|---|---|")
    for scheme, clients in cases:
        base = statistics.median(results[("baseline", scheme, clients)])
        ours = statistics.median(results[("this tree", scheme, clients)])
        print(f"| {scheme} c={clients} | {base:.3f} | {ours:.3f} | {ours / base:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-tree", metavar="DIR", required=True)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=CASES, help="scheme:clients, comma-separated")
    parser.add_argument(
        "--unique",
        action="store_true",
        help="every request to another target (?n=<i>): no decision remembered is reused",
    )
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
