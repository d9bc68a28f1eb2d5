"""A bare JSON-RPC stdio server (no SDK) whose tools do what the wrap's guarantees are about:
``env`` answers its environment, ``read`` a file's text (a secret found on disk; also on
stderr), ``stderr`` writes one line of `size` bytes (then a file's text) to stderr, then
``after``, ``slow`` answers after `seconds`, any other tool answers its arguments. Every
line it reads is appended to the file ``RECEIVED`` names (what reached the server)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def send(message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer(name: str, arguments: dict[str, object]) -> str:
    if name == "env":
        return json.dumps(dict(os.environ))
    if name == "read":
        text = Path(str(arguments["path"])).read_text()
        sys.stderr.write(f"read {text}\n")
        sys.stderr.flush()
        return text
    if name == "stderr":
        found = Path(str(arguments["path"])).read_text() if "path" in arguments else ""
        sys.stderr.write("x" * int(str(arguments["size"])) + found + "\nafter\n")
        sys.stderr.flush()
        return "written"
    if name == "slow":
        time.sleep(float(str(arguments["seconds"])))
        return "slow call finished"
    return json.dumps(arguments)


def main() -> None:
    received = os.environ.get("RECEIVED")
    for line in sys.stdin:
        if received:
            with open(received, "a", encoding="utf-8") as log:
                log.write(line)
        message = json.loads(line)
        for member in message if isinstance(message, list) else [message]:
            if "id" not in member or "method" not in member:
                continue
            result: object = {}
            if member["method"] == "tools/call":
                params = member.get("params") or {}
                text = answer(params.get("name", ""), params.get("arguments") or {})
                result = {"content": [{"type": "text", "text": text}]}
            send({"jsonrpc": "2.0", "id": member["id"], "result": result})


if __name__ == "__main__":
    main()
