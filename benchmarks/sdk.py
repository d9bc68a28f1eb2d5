"""Added latency of the SDK: ``request_action`` round trips beside bare httpx POSTs.

Starts a real server on 127.0.0.1 (fresh data dir, ephemeral port), registers an agent
with a high rate limit, then in each round times N ``AgentFirewall.request_action`` calls
and N bare ``httpx.Client.post`` calls of the identical request (same JSON body, headers,
a fresh ``Idempotency-Key`` each) to the same endpoint, alternating which goes first.
Both use one keep-alive connection. Reports p50/p99 of each and the difference, which is
what the SDK adds: building and validating the spec, retry machinery, parsing the answer
into typed results. Run from the repository root::

    python benchmarks/sdk.py --requests 300 --rounds 3

Bounded: at most rounds x 2 x requests (+ warm-up) requests, all to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentfirewall import AgentFirewall
from tests.livesrv import LiveServer

SPEC = {
    "type": "github.pr.merge",
    "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production",
    },
    "parameters": {"pull_number": 42},
}
MAX_REQUESTS = 5_000


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], object], count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def sdk_call(tf: AgentFirewall) -> Callable[[], object]:
    def call() -> object:
        result = tf.request_action(
            action_type="github.pr.merge",
            provider="github",
            account="acme",
            target="acme/api",
            environment="production",
            parameters={"pull_number": 42},
        )
        assert result.status == "allowed"
        return result

    return call


def bare_call(client: httpx.Client) -> Callable[[], object]:
    body = json.dumps({"action_spec": SPEC})

    def call() -> object:
        response = client.post(
            "/v1/actions", content=body, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        assert response.status_code == 200
        return response.json()

    return call


def measure(server: LiveServer, requests: int, rounds: int) -> dict[str, list[float]]:
    key = server.create_agent("bench-" + uuid.uuid4().hex[:8], rate_limit_per_minute=1_000_000)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    samples: dict[str, list[float]] = {"sdk": [], "bare": []}
    with (
        AgentFirewall(api_key=key, base_url=server.api_url) as tf,
        httpx.Client(base_url=server.api_url, headers=headers) as client,
    ):
        calls = {"sdk": sdk_call(tf), "bare": bare_call(client)}
        for name in calls:
            timed(calls[name], min(50, requests))  # warm-up: connections, caches
        for round_number in range(rounds):
            order = ("sdk", "bare") if round_number % 2 == 0 else ("bare", "sdk")
            for name in order:
                samples[name].extend(timed(calls[name], requests))
    return samples


def measure_offline(requests: int, rounds: int) -> dict[str, list[float]]:
    """The same two clients over an in-memory transport answering a canned allow: the
    client-side cost alone, without the server or the network."""
    answer = {
        "action_request_id": "act_bench",
        "status": "allowed",
        "decision": {
            "outcome": "allow",
            "reason": "No deny rules matched",
            "risk_score": 0,
            "matched_policies": [],
        },
        "decision_token": "eyJ.bench.token",
        "approval": None,
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    samples: dict[str, list[float]] = {"sdk": [], "bare": []}
    base = "http://bench.invalid/api"
    with (
        AgentFirewall(api_key="aaf_test_bench", base_url=base, transport=transport) as tf,
        httpx.Client(
            base_url=base, transport=transport, headers={"Authorization": "Bearer aaf_test_bench"}
        ) as client,
    ):
        calls = {"sdk": sdk_call(tf), "bare": bare_call(client)}
        for round_number in range(rounds):
            order = ("sdk", "bare") if round_number % 2 == 0 else ("bare", "sdk")
            for name in order:
                samples[name].extend(timed(calls[name], requests))
    return samples


def report(samples: dict[str, list[float]]) -> str:
    rows = ["| client | n | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
    for name in ("bare", "sdk"):
        data = samples[name]
        rows.append(
            f"| {name} | {len(data)} | {percentile(data, 50):.3f} | "
            f"{percentile(data, 99):.3f} | {statistics.fmean(data):.3f} |"
        )
    sdk, bare = samples["sdk"], samples["bare"]
    added50 = percentile(sdk, 50) - percentile(bare, 50)
    added99 = percentile(sdk, 99) - percentile(bare, 99)
    rows.append("")
    ratio50 = percentile(sdk, 50) / percentile(bare, 50)
    ratio99 = percentile(sdk, 99) / percentile(bare, 99)
    rows.append(
        f"added by the SDK: p50 {added50:+.3f} ms ({ratio50:.2f}x), "
        f"p99 {added99:+.3f} ms ({ratio99:.2f}x)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.requests * args.rounds * 2 > MAX_REQUESTS:
        parser.error(f"at most {MAX_REQUESTS} requests in one run")
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        server = LiveServer.start(Path(tmp) / "tf")
        try:
            samples = measure(server, args.requests, args.rounds)
        finally:
            server.stop()
    print("## request_action round trip to a live server on 127.0.0.1\n")
    print(report(samples))
    print("\n## client side only (in-memory transport, canned answer)\n")
    print(report(measure_offline(args.requests * 3, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
