"""Large JSON bodies through a connector: this tree beside a baseline tree, CPU ms per body.

    python benchmarks/bodies.py [--baseline-tree DIR] [--passes 3]

The gateway reads a body whole (up to 16 MiB) before deciding, and the connector parses it
on the event loop: every millisecond here is a millisecond no other request moves. Each
body is a chat request with ``model`` last: an ordinary one (4.1 MiB of messages), a
multimodal one (content parts), and three an agent could send to stall the gateway (a
million tiny containers, small flat objects, nested arrays). Timed per tree in a fresh
``python -P`` process (``PYTHONPATH`` on the tree; e.g. ``git -C /work/main archive
<commit> | tar -x -C /tmp/base``): ``scan`` is the JSON scanner alone (``scan_json_object``
keeping ``model``), ``override check`` the quick test for a ``_method`` field, ``parse``
the whole OpenAI connector parse. Best of `--passes`, CPU time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy import tree_env

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from agentfirewall.connectors import HttpRequest, get_connector
from agentfirewall.connectors.base import _may_name_a_method
from agentfirewall.connectors.scan import scan_json_object

def best(fn, passes):
    times = []
    for _ in range(passes):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times) * 1000

chat = [{"role": "user", "content": "x" * 1000}] * 4150
parts = [{"role": "user", "content": [{"type": "text", "text": "x" * 900}]}] * 4000
bodies = {
    "chat, 4.1 MiB": json.dumps({"messages": chat, "model": "gpt-4o"}).encode(),
    "multimodal chat, 3.7 MiB": json.dumps({"messages": parts, "model": "gpt-4o"}).encode(),
    "1M `{}`, 3 MiB": b'{"messages":[' + b",".join([b"{}"] * (1 << 20)) + b'],"model":"x"}',
    '600k `{"a":1}`, 4.6 MiB': b'{"messages":[' + b",".join([b'{"a":1}'] * 600_000)
    + b'],"model":"x"}',
    "600k `[[1]]`, 3.4 MiB": b'{"messages":[' + b",".join([b"[[1]]"] * 600_000)
    + b'],"model":"x"}',
}
openai = get_connector("openai")
headers = (("content-type", "application/json"),)
out = {}
passes = int(sys.argv[1])
for name, body in bodies.items():
    request = HttpRequest("POST", "https", "api.openai.com", 443, "/v1/chat/completions", "",
                          headers, body)
    assert openai.parse(request).spec.parameters["model"] in ("gpt-4o", "x")
    out[name] = [best(lambda: scan_json_object(body, keep={"model"}), passes),
                 best(lambda: _may_name_a_method(body), passes),
                 best(lambda: openai.parse(request), passes)]
print(json.dumps(out))
"""


def measure(tree: Path, passes: int) -> dict[str, list[float]]:
    env = tree_env(tree)  # (checked: the child imports `tree`, not the working directory's)
    done = subprocess.run(
        [sys.executable, "-P", "-c", CHILD, str(passes)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    trees = [("this tree", ROOT)]
    if args.baseline_tree is not None:
        trees.insert(0, ("baseline", args.baseline_tree.resolve()))
    results = {name: measure(tree, args.passes) for name, tree in trees}
    print("| body | tree | scan ms | override check ms | connector parse ms |")
    print("|---|---|---|---|---|")
    for body in results["this tree"]:
        for name, _ in trees:
            scan, check, parse = results[name][body]
            print(f"| {body} | {name} | {scan:.1f} | {check:.1f} | {parse:.1f} |")


if __name__ == "__main__":
    main()
