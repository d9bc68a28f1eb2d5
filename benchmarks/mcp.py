"""`tf mcp wrap`: latency added per `tools/call`, beside the unwrapped server in the same run.

    python benchmarks/mcp.py [--calls 2000] [--rounds 3]

One minimal stdio MCP server (newline-delimited JSON-RPC: answers `tools/call` with a text
result) runs twice: directly, and under ``tf mcp wrap --config SNAPSHOT`` (a snapshot file
as the control plane: rules for connector ``mcp``, traffic recorded in the wrapper). This
process sends sequential ``tools/call`` requests (one in flight, like a model calling tools)
and times each round trip. Rounds alternate direct / wrapped so that load on the machine
hits both alike. Printed: p50 and p99 of each, and what the wrapper adds (target: < 1 ms at
p50), and the CPU time the wrapper process adds per call, startup excluded (a run with no
timed calls is subtracted; load-independent, unlike latency on a shared machine, where each
hop waits for a free core). Each call is named, decided by the engine, recorded,
re-serialised and relayed both ways; the server's answers are parsed (tools/list
filtering, id tracking) and relayed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SERVER = textwrap.dedent(
    """
    import json, sys
    for line in sys.stdin:
        m = json.loads(line)
        if "id" in m:
            text = json.dumps(m.get("params", {}).get("arguments", {}))
            result = {"content": [{"type": "text", "text": text}], "isError": False}
            answer = {"jsonrpc": "2.0", "id": m["id"], "result": result}
            sys.stdout.write(json.dumps(answer) + "\\n")
            sys.stdout.flush()
    """
)

SNAPSHOT = {
    "agents": [{"name": "Bench", "api_keys": ["unused"]}],
    "permissions": [
        {"agent": "Bench", "connector": "mcp", "action_pattern": p, "decision": "allow"}
        for p in ("mcp.rpc.*", "mcp.tools.list", "mcp.tools.search_issues")
    ],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _calls(command: list[str], count: int, cpu: list[float]) -> list[float]:
    before = _children_cpu()
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdin is not None
    assert process.stdout is not None
    times: list[float] = []
    try:
        for i in range(count + 50):  # the first 50 warm up
            params = {"name": "search_issues", "arguments": {"query": "is:open label:bug", "n": i}}
            line = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
            started = time.perf_counter()
            process.stdin.write(line.encode() + b"\n")
            await process.stdin.drain()
            answer = json.loads(await process.stdout.readline())
            elapsed = time.perf_counter() - started
            if "result" not in answer:
                raise SystemExit(f"the call was not answered with a result: {answer}")
            if i >= 50:
                times.append(elapsed * 1000)
    finally:
        process.stdin.close()
        await process.wait()
    cpu.append(_children_cpu() - before)  # the processes' CPU (startup included)
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Path(tmp) / "server.py"
        server.write_text(SERVER, encoding="utf-8")
        snapshot = Path(tmp) / "snapshot.json"
        snapshot.write_text(json.dumps(SNAPSHOT), encoding="utf-8")
        direct = [sys.executable, str(server)]
        wrap = [sys.executable, "-m", "agentfirewall_proxy.cli", "mcp", "wrap", "--name",
                "Bench", "--config", str(snapshot), "--", *direct]  # fmt: skip
        results: dict[str, list[float]] = {"direct": [], "wrapped": []}
        cpu: dict[str, list[float]] = {"direct": [], "wrapped": []}
        startup: dict[str, list[float]] = {"direct": [], "wrapped": []}
        await _calls(direct, 0, startup["direct"])
        await _calls(wrap, 0, startup["wrapped"])
        for _ in range(args.rounds):
            results["direct"] += await _calls(direct, args.calls, cpu["direct"])
            results["wrapped"] += await _calls(wrap, args.calls, cpu["wrapped"])
    d, w = results["direct"], results["wrapped"]
    print(f"tools/call round trips: {len(d)} per side, sequential, {args.rounds} rounds")
    print(f"  unwrapped  p50 {_pct(d, 0.5):.3f} ms  p99 {_pct(d, 0.99):.3f} ms"
          f"  mean {statistics.fmean(d):.3f} ms")  # fmt: skip
    print(f"  wrapped    p50 {_pct(w, 0.5):.3f} ms  p99 {_pct(w, 0.99):.3f} ms"
          f"  mean {statistics.fmean(w):.3f} ms")  # fmt: skip
    added50, added99 = _pct(w, 0.5) - _pct(d, 0.5), _pct(w, 0.99) - _pct(d, 0.99)
    verdict = "met" if added50 < 1.0 else "MISSED"
    print(f"  added      p50 {added50:+.3f} ms  p99 {added99:+.3f} ms"
          f"  (target < 1 ms p50: {verdict})")  # fmt: skip
    per_call = {
        side: (statistics.fmean(cpu[side]) - startup[side][0]) / args.calls * 1e6 for side in cpu
    }
    print(
        f"  CPU per call, startup excluded: unwrapped {per_call['direct']:.0f} us, wrapped "
        f"{per_call['wrapped']:.0f} us (wrapper + server)"
    )


if __name__ == "__main__":
    asyncio.run(main())
