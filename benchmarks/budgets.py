"""The CPU a budget check adds per request: the gateway's, and the control plane's.

One real control plane (a subprocess), one gateway (its own thread, measured through
``/proc/self/task/<tid>/stat``), one plain-HTTP upstream (the fake GitHub's HTTP port, a
``generic`` connector), sequential small GETs. Rounds alternate, in the same run: no
budget (the baseline); a ``count`` budget covering every request, spent from the
gateway's leased slices (``agentfirewall_proxy/budgetlease.py``, the design); and the same
budget reserved before forwarding and settled after (two control-plane calls per request:
the previous design, still the path of LLM budgets), forced here by patching the
gateway's local measure away. Medians of the rounds.

    python benchmarks/budgets.py [--requests 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agentfirewall_proxy.budgets as gateway_budgets
from agentfirewall_proxy.control import HttpControl
from tests.fakes import start_fakes
from tests.livesrv import LiveServer
from tests.proxy.support import RunningGateway, gateway_options

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(path: str) -> float:
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _round(http: httpx.Client, url: str, count: int, tid: int, pid: int) -> tuple[float, float]:
    """(gateway, control plane) CPU microseconds per request."""
    gateway, server = f"/proc/self/task/{tid}/stat", f"/proc/{pid}/stat"
    g0, s0 = _cpu(gateway), _cpu(server)
    for _ in range(count):
        answer = http.get(url)
        assert answer.status_code == 200, answer.text
    time.sleep(1.0)  # let the settlements (background) and traffic shipping finish
    return (_cpu(gateway) - g0) * 1e6 / count, (_cpu(server) - s0) * 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 requests, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 2
    fakes = start_fakes(["github"])
    tmp = Path(tempfile.mkdtemp(prefix="tf-bench-budgets-"))
    server = LiveServer.start(tmp / "tf")
    running: RunningGateway | None = None
    try:
        key = server.create_agent("Bench")
        base = fakes["github"].http_url
        connector = {"type": "generic", "name": "bench", "token": "upstream-secret",
                     "domains": ["127.0.0.1"], "base_url": base}  # fmt: skip
        answer = server.admin("POST", "/v1/connectors", json=connector)
        assert answer.status_code == 201, answer.text
        rule = {"agent": "Bench", "connector": "generic", "action_pattern": "generic.*",
                "decision": "allow"}  # fmt: skip
        assert server.admin("POST", "/v1/permissions", json=rule).status_code in (200, 201)
        running = RunningGateway(
            gateway_options(tmp / "gw", None), HttpControl(server.url, server.gateway_token)
        ).start()
        assert running._thread is not None
        assert running._thread.native_id is not None
        tid, pid = running._thread.native_id, server.process.pid if server.process else 0
        http = httpx.Client(proxy=running.proxy_url(key, "Bench"), trust_env=False, timeout=30)
        url = f"{base}/user"
        budget = {"connector": "generic", "measure": "count", "window": "day", "limit": 1e12}
        _round(http, url, 200, tid, pid)  # warm up
        rows: dict[str, list[tuple[float, float]]] = {"none": [], "budget": [], "reserve": []}
        local = gateway_budgets._local_amounts
        for _ in range(args.rounds):
            for case in ("none", "budget", "reserve"):
                if case == "none":
                    server.admin("DELETE", "/v1/budgets/bench")
                else:
                    server.admin("PUT", "/v1/budgets/bench", json=budget)
                # the previous design: no local measure, so every request reserves and settles
                gateway_budgets._local_amounts = (lambda *_: None) if case == "reserve" else local  # type: ignore[assignment]
                _wait(running, case != "none")
                rows[case].append(_round(http, url, args.requests, tid, pid))
        gateway_budgets._local_amounts = local
        http.close()
        _report(rows, args)
    finally:
        if running is not None:
            running.stop()
        server.stop()
        fakes.stop()


def _wait(running: RunningGateway, present: bool) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config = running.gateway.config if running.gateway else None
        if config is not None and bool(config.budgets) == present:
            return
        time.sleep(0.05)
    raise RuntimeError("the gateway never saw the budget change")


def _report(rows: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    gw = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
    cp = {k: statistics.median(r[1] for r in v) for k, v in rows.items()}
    print(f"{args.requests} sequential small GETs x {args.rounds} rounds, medians "
          f"(threads: {threading.active_count()})")  # fmt: skip
    print("| case | gateway CPU µs/request | control plane CPU µs/request |")
    print("|---|---|---|")
    labels = (("none", "no budget (baseline)"), ("budget", "count budget, leased slices"),
              ("reserve", "count budget, reserve + settle per request"))  # fmt: skip
    for case, label in labels:
        print(f"| {label} | {gw[case]:,.0f} | {cp[case]:,.0f} |")
    for case, label in labels[1:]:
        added = gw[case] - gw["none"]
        print(f"{label}: gateway +{added:,.0f} µs/request, {added / gw['none']:+.1%} of the "
              f"baseline; control plane +{cp[case] - cp['none']:,.0f} µs/request")  # fmt: skip


if __name__ == "__main__":
    main()
