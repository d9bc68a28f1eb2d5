"""A bare JSON-RPC stdio server whose tool `deploy` does work with a side effect: it writes
its pid to the file ``STARTED`` names, waits until the file ``RELEASE`` names exists (the
work in flight), then appends to the file ``EFFECT`` names and answers."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message or "method" not in message:
            continue
        if message["method"] == "tools/call":
            Path(os.environ["STARTED"]).write_text(str(os.getpid()))
            for _ in range(6000):  # (at most a minute)
                if Path(os.environ["RELEASE"]).exists():
                    break
                time.sleep(0.01)
            with open(os.environ["EFFECT"], "a", encoding="utf-8") as effect:
                effect.write("deployed\n")
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {}}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
