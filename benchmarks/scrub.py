"""What scrubbing an upstream's answer costs: this tree against a baseline tree, same bodies.

Run: ``python benchmarks/scrub.py --baseline-tree DIR [--rounds 5]`` (a baseline made with
``git -C /work/main archive <commit> | tar -x -C DIR``). Each tree runs in its own
subprocess (``python -P`` with ``PYTHONPATH`` on the tree), the trees taking turns round by
round; each round times, on the same bodies (about 4.8 MB of chat JSON, seeded):

- ``found``: `Scrubber.found` on the whole body (no secret in it: the common answer);
- ``stream``: `ScrubStream.feed` in 64 KiB reads, as the gateway streams a response;
- ``tiny``: `ScrubStream.feed` in 16-byte pieces over the body's first 64 KiB (what a feed
  costs however little it holds: an upstream answering in tiny chunks, read one at a time);

for seven bodies: plain JSON (`\\"` and `\\\\` everywhere), JSON whose encoder escapes `<`
as Go's does (`\\u003c`), PHP-style JSON with every `/` written `\\/`, the plain JSON
percent-encoded (``quote(safe="")``: about a million `%XX`, the `%2F` of them escapes of a
byte the secret's forms hold, which the percent-encoded search decodes to look for a form),
a hex dump (the first half of the plain JSON hex-encoded: digits only, as the secret's
hex forms are), the first half of the plain JSON in UTF-16 (a wide text: every search made
in it read one byte of each character), and the base64 of the first half wrapped at 76
columns, each line indented (as XML's base64Binary: searched by its tiles).
The fastest round of each is printed per tree, and this tree's ratio to the baseline, and
what building the scrubber cost (``build``). ``--long-secret`` scrubs a 1,500-character JWT
access token (as Azure AD or Okta mint) in place of a short token.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import base64, json, os, random, string, sys, time
from urllib.parse import quote
from agentfirewall.scrubbing import scrubber_for
random.seed(7)
value = b"token ghp_realGithubToken0000000000000000000/+x"
if os.environ.get("SCRUB_BENCH_LONG"):  # a JWT access token of 1,500 characters
    value = b"Bearer eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(random.randbytes(1100))
start = time.perf_counter(); scrubber = scrubber_for([value]); build = time.perf_counter() - start
alphabet = string.ascii_letters + ' "\\/\n<>&'
messages = [{"role": "user", "content": "".join(random.choice(alphabet) for _ in range(200))}
            for _ in range(20000)]
plain = json.dumps({"messages": messages})
bodies = {"json": plain.encode(), "go-escaped": plain.encode().replace(b"<", b"\\u003c"),
          "php": plain.replace("/", "\\/").encode(), "percent": quote(plain, safe="").encode(),
          "hex": plain[: len(plain) // 2].encode().hex().encode(),
          "utf-16": plain[: len(plain) // 2].encode("utf-16-le")}
encoded = base64.b64encode(plain[: len(plain) // 2].encode())
lines = (encoded[at:at + 76] for at in range(0, len(encoded), 76))
bodies["base64-xml"] = b"".join(b"\n    " + line for line in lines)
out = {}
for name, body in bodies.items():
    start = time.perf_counter(); scrubber.found(body); found = time.perf_counter() - start
    stream = scrubber.stream(); start = time.perf_counter()
    for at in range(0, len(body), 65536):
        stream.feed(body[at:at + 65536])
    stream.finish()
    streamed = (time.perf_counter() - start) * 1000
    stream = scrubber.stream(); start = time.perf_counter()
    for at in range(0, 65536, 16):
        stream.feed(body[at:at + 16])
    stream.finish()
    tiny = (time.perf_counter() - start) * 1000
    out[name] = {"found": found * 1000, "stream": streamed, "tiny": tiny}
out["(secret)"] = {"build": build * 1000}
print(json.dumps(out))
"""


def _round(tree: Path, long_secret: bool) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if long_secret:
        env["SCRUB_BENCH_LONG"] = "1"
    done = subprocess.run([sys.executable, "-P", "-c", _CHILD], env=env, capture_output=True,
                          text=True, check=True, timeout=600)  # fmt: skip
    figures: dict[str, dict[str, float]] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--long-secret", action="store_true", help="a 1,500-character JWT")
    args = parser.parse_args()
    trees = {"baseline": args.baseline_tree.resolve(), "this": Path(__file__).parents[1]}
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            for body, figures in _round(tree, args.long_secret).items():
                mine = best.setdefault(name, {}).setdefault(body, dict(figures))
                for key, value in figures.items():
                    mine[key] = min(mine[key], value)
    print(f"{'body':<12} {'measure':<8} {'baseline ms':>12} {'this ms':>10} {'ratio':>7}")
    for body, figures in best["this"].items():
        for key, value in figures.items():
            base = best["baseline"][body][key]
            print(f"{body:<12} {key:<8} {base:>12.1f} {value:>10.1f} {value / base:>7.2f}")


if __name__ == "__main__":
    main()
