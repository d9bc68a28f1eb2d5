"""A bare JSON-RPC stdio server (no SDK): answers tools/call `ask` by first asking the
client a question of its own (a server-initiated request, like sampling), and writes a
line of noise that is not JSON before its first answer."""

from __future__ import annotations

import json
import sys


def send(message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    pending: dict[str, object] = {}
    sys.stdout.write("this line is not JSON-RPC\n")
    for line in sys.stdin:
        message = json.loads(line)
        if isinstance(message, list):
            send(
                [
                    {"jsonrpc": "2.0", "id": m["id"], "result": {"method": m["method"]}}
                    for m in message
                    if "id" in m
                ]
            )
            continue
        method = message.get("method")
        if method is None:  # the client's answer to our request
            asked = pending.pop(str(message["id"]))
            send({"jsonrpc": "2.0", "id": asked, "result": {"answer": message.get("result")}})
        elif method == "tools/call" and message["params"]["name"] == "ask":
            pending["s1"] = message["id"]
            send(
                {
                    "jsonrpc": "2.0",
                    "id": "s1",
                    "method": "sampling/createMessage",
                    "params": {"messages": [], "maxTokens": 5},
                }
            )
        elif "id" in message:
            send({"jsonrpc": "2.0", "id": message["id"], "result": {"method": method}})


if __name__ == "__main__":
    main()
