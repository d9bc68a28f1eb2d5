"""CPU added per request by SigV4 re-signing at the gateway.

Run: ``python benchmarks/sigv4.py [--seconds 2]``. Each case runs the gateway's per-request
injection step (``AwsInjector.inject`` on a boto3-shaped S3 ``PutObject``: the same headers
the gateway forwards) for a fixed CPU time (``time.process_time``), interleaved in rounds so
load on a shared machine hits all cases alike; the median round is reported:

- ``static header``: the baseline, a static credential's headers (what injection cost
  before computed credentials: a prebuilt tuple, added per request);
- ``sigv4, unsigned payload``: re-signing an S3 request whose payload is
  ``UNSIGNED-PAYLOAD`` / the aws-chunked trailer form (no body hashing);
- ``sigv4, 1 KiB body`` and ``sigv4, 1 MiB body``: the body's SHA-256 included;
- ``botocore SigV4Auth, 1 KiB``: botocore's own signer on the same request, to decide
  whether to use it (it is not a core dependency; the core's signer must be pure).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from agentfirewall.credentials import AwsCredential, AwsInjector, Outgoing

CRED = AwsCredential(
    kind="aws_sigv4",
    access_key_id="AKIAREALKEY000000000",
    secret_access_key="realSecretKey/0123456789abcdefghijklmn",
)
HOST = "demo-bucket.s3.us-west-2.amazonaws.com"
HEADERS = (
    ("Host", HOST),
    ("User-Agent", "Boto3/1.43 md/Botocore#1.43 ua/2.1 os/linux lang/python#3.11"),
    ("Content-Type", "application/octet-stream"),
    ("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww=="),
    ("x-amz-checksum-crc32", "DUoRhQ=="),
    ("x-amz-sdk-checksum-algorithm", "CRC32"),
    ("amz-sdk-invocation-id", "8d1c8e2a-2a8e-4c55-9a5e-5d4a4c1e9f11"),
    ("amz-sdk-request", "attempt=1"),
    ("Accept-Encoding", "identity"),
    ("X-TameFlare-Agent", "Bot"),
    ("X-TameFlare-Request-Id", "req_0001"),
)


def outgoing(body: bytes | None, agent_payload: str | None = None) -> Outgoing:
    agent = (("x-amz-content-sha256", agent_payload),) if agent_payload else ()
    return Outgoing("PUT", HOST, "/notes/a.txt", "x-id=PutObject", HEADERS, body, agent)


def cases() -> dict[str, Callable[[], object]]:
    injector = AwsInjector(CRED, "bench")
    static = (("Authorization", "Bearer sk-live-000000000000"),)
    small, big = b"x" * 1024, b"x" * (1024 * 1024)
    unsigned = outgoing(small, "UNSIGNED-PAYLOAD")
    with_small, with_big = outgoing(small), outgoing(big)
    now = time.time()
    found: dict[str, Callable[[], object]] = {
        "static header (baseline)": lambda: list(static),
        "sigv4, unsigned payload": lambda: injector.inject(unsigned, None, now),
        "sigv4, 1 KiB body hashed": lambda: injector.inject(with_small, None, now),
        "sigv4, 1 MiB body hashed": lambda: injector.inject(with_big, None, now),
    }
    try:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        return found
    signer = S3SigV4Auth(Credentials(CRED.access_key_id, CRED.secret_access_key), "s3", "us-west-2")

    def botocore_sign() -> object:
        request = AWSRequest(
            method="PUT",
            url=f"https://{HOST}/notes/a.txt?x-id=PutObject",
            headers=dict(HEADERS[:8]),
            data=small,
        )
        signer.add_auth(request)
        return request.headers["Authorization"]

    found["botocore S3SigV4Auth, 1 KiB body"] = botocore_sign
    return found


def measure(fn: Callable[[], object], seconds: float) -> float:
    """CPU microseconds per call over `seconds` of CPU time."""
    calls, start = 0, time.process_time()
    while True:
        for _ in range(20):
            fn()
        calls += 20
        spent = time.process_time() - start
        if spent >= seconds:
            return spent / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per case")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    chosen = cases()
    rounds: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.rounds):
        for name, fn in chosen.items():
            rounds[name].append(measure(fn, args.seconds / args.rounds))
    base = statistics.median(rounds["static header (baseline)"])
    print(f"{'case':36} {'CPU us/request':>15} {'added vs baseline':>18}")
    for name, values in rounds.items():
        value = statistics.median(values)
        print(f"{name:36} {value:15.2f} {value - base:15.2f} us")


if __name__ == "__main__":
    main()
