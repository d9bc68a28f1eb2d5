"""Connector parsing throughput: requests parsed per second over a mixed table.

Run: ``python benchmarks/connectors.py [--seconds 3] [--quick]``. Target: at least 100,000/s.
Every request is parsed by its connector exactly as the proxy would (normalise the path,
match the route, read the body when the route needs it, build the action spec). Rates are
per CPU-second of this process (``time.process_time``), so other load on a shared machine
slows them less than wall-clock rates; two references run interleaved in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from agentfirewall.actions import ActionSpec
from agentfirewall.connectors import HttpRequest, get_connector

JSON = (("Content-Type", "application/json"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)


def req(
    method: str, host: str, path: str, query: str = "", body: bytes = b"", form: bool = False
) -> HttpRequest:
    headers = FORM if form else JSON if body else ()
    return HttpRequest(method, "https", host, None, path, query, headers, body)


CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi" * 200}]}
TOOL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "create_issue", "arguments": {"title": "t"}},
}
GH = "api.github.com"

MIX: list[tuple[str, HttpRequest]] = [
    ("github", req("PUT", GH, "/repos/acme/api/pulls/42/merge")),
    ("github", req("GET", GH, "/repos/acme/api/pulls", "state=open")),
    ("github", req("PATCH", GH, "/repos/acme/api/issues/7", "", b'{"state": "closed"}')),
    ("github", req("GET", GH, "/repos/acme/api/contents/src/app/main.py", "ref=dev")),
    ("github", req("DELETE", GH, "/repos/acme/api/git/refs/heads/f")),
    ("github", req("GET", GH, "/gists/1")),
    ("github", req("POST", "github.com", "/acme/api.git/git-upload-pack")),
    ("openai", req("POST", "api.openai.com", "/v1/chat/completions", "", json.dumps(CHAT).encode())),  # noqa: E501
    ("openai", req("GET", "api.openai.com", "/v1/models")),
    ("anthropic", req("POST", "api.anthropic.com", "/v1/messages", "",
                      b'{"model": "claude-sonnet-4", "max_tokens": 100, "messages": []}')),
    ("stripe", req("POST", "api.stripe.com", "/v1/transfers", "",
                   b"amount=25000&currency=usd&destination=acct_xyz", form=True)),
    ("stripe", req("GET", "api.stripe.com", "/v1/charges/ch_123")),
    ("slack", req("POST", "slack.com", "/api/chat.postMessage", "", b'{"channel": "C1", "text": "x"}')),  # noqa: E501
    ("slack", req("GET", "slack.com", "/api/conversations.history", "channel=C1")),
    ("mcp", req("POST", "mcp.example.com", "/mcp", "", json.dumps(TOOL).encode())),
    ("generic", req("GET", "api.example.com", "/v1/items/9")),
]  # fmt: skip


#: AWS requests by protocol (``--aws``): REST ones are matched against their service's routes
#: (generated from botocore: Lambda 80, IoT 270), the JSON and query ones read a header or
#: a form field; the JSON-protocol parse is the reference for the REST one.
AWS = {
    "rest: lambda invoke": req("POST", "lambda.us-east-1.amazonaws.com",
                               "/2015-03-31/functions/fn/invocations", "", b"{}"),
    "rest: eks delete_cluster": req("DELETE", "eks.us-east-1.amazonaws.com", "/clusters/prod"),
    "rest: bedrock converse (ARN)": req(
        "POST", "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse", "",
        b"{}"),
    "rest: iot describe_thing": req("GET", "iot.us-east-1.amazonaws.com", "/things/t1"),
    "json: dynamodb put_item": HttpRequest(
        "POST", "https", "dynamodb.us-east-1.amazonaws.com", None, "/", "",
        (("X-Amz-Target", "DynamoDB_20120810.PutItem"),
         ("Content-Type", "application/x-amz-json-1.0")), b'{"TableName": "t"}'),
    "query: sns publish": req("POST", "sns.us-east-1.amazonaws.com", "/", "",
                              b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Ax", form=True),
}  # fmt: skip


def run_aws(seconds: float) -> dict[str, float]:
    """CPU-µs per parse of each AWS request, interleaved rounds, medians."""
    aws = get_connector("aws")
    rounds: dict[str, list[float]] = {name: [] for name in AWS}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, request in AWS.items():
            rounds[name].append(1e6 * _timed(lambda r=request: aws.parse(r), 200) / 200)
    return {name: statistics.median(values) for name, values in rounds.items()}


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """CPU seconds this process spent: steadier than wall time on a shared machine."""
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return time.process_time() - start


def run(seconds: float) -> dict[str, float]:
    """Interleave rounds of parsing and of the two references, so load hits all alike."""
    work = [(get_connector(name).parse, request) for name, request in MIX]
    specs = [parse(request).spec.to_dict() for parse, request in work]
    urls = [request.url for _, request in MIX]
    ladder = _regex_ladder()

    def parse_all() -> None:
        for parse, request in work:
            parse(request)

    def validate_all() -> None:  # pydantic validation of the same action specs
        for spec in specs:
            ActionSpec.model_validate(spec)

    def ladder_all() -> None:  # a regex per route, tried in order (no bodies, no specs)
        for url in urls:
            path = urlsplit(url).path
            for pattern, _action in ladder:
                if pattern.fullmatch(path):
                    break

    rounds: dict[str, list[float]] = {"parse": [], "validate": [], "ladder": []}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, fn in (("parse", parse_all), ("validate", validate_all), ("ladder", ladder_all)):
            rounds[name].append(100 * len(MIX) / _timed(fn, 100))
    ratios = [p / v for p, v in zip(rounds["parse"], rounds["validate"], strict=True)]
    ladder_ratios = [p / v for p, v in zip(rounds["parse"], rounds["ladder"], strict=True)]
    return {
        "rounds": len(ratios),
        "parse": statistics.median(rounds["parse"]),
        "parse_best": max(rounds["parse"]),
        "validate": statistics.median(rounds["validate"]),
        "ladder": statistics.median(rounds["ladder"]),
        "ratio_validate": statistics.median(ratios),
        "ratio_ladder": statistics.median(ladder_ratios),
    }


def _regex_ladder() -> list[tuple[re.Pattern[str], str]]:
    """Every route of every table connector as one regex, in table order."""
    ladder = []
    for name in ("github", "openai", "anthropic", "stripe", "slack"):
        for info in get_connector(name).actions():
            parts = [
                (".+" if p.endswith("+}") else "[^/]+") if p.startswith("{") else re.escape(p)
                for p in info.path.split("/")
            ]
            ladder.append((re.compile("/".join(parts), re.IGNORECASE), info.type))
    return ladder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="one short run (0.5 s)")
    parser.add_argument("--aws", action="store_true", help="AWS requests by protocol instead")
    args = parser.parse_args()
    if args.aws:
        figures = run_aws(0.5 if args.quick else args.seconds)
        reference = figures["json: dynamodb put_item"]
        print("aws connector: CPU-µs per parse (median of interleaved rounds)")
        for name, micros in figures.items():
            print(f"  {name:<30} {micros:6.1f} µs  ({micros / reference:.2f}x the JSON parse)")
        return
    r = run(0.5 if args.quick else args.seconds)
    print(f"connector parsing: mixed table of {len(MIX)} requests, {r['rounds']:.0f} rounds;")
    print("rates per CPU-second of this process (time.process_time)")
    print(
        f"  parse            median {r['parse']:>10,.0f} req/s (best {r['parse_best']:,.0f})"
        f"  = {1e6 / r['parse']:.2f} CPU-µs/request; target >= 100,000 req/s"
    )
    print(
        f"  pydantic validate median {r['validate']:>9,.0f} specs/s "
        f"(parse is {r['ratio_validate']:.2f}x the rate of validating its own output)"
    )
    print(
        f"  regex ladder      median {r['ladder']:>9,.0f} paths/s "
        f"(parse is {r['ratio_ladder']:.2f}x a path-only regex loop over every route)"
    )


if __name__ == "__main__":
    main()
