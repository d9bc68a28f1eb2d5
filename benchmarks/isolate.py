"""`tf run --isolate`: what the sandbox costs, against a baseline measured in the same run.

1. Start-up: starting the sandbox around `true` and waiting for it, vs `subprocess.run(true)`.
2. Round trips: an agent doing N request/response exchanges (1 KiB each way) with a server
   on the host's 127.0.0.1, through the bridge (`tf run`'s relay), vs the same client outside
   the sandbox talking to the server directly.
3. Bulk: 64 MiB streamed through the bridge vs directly.

Run as root or where unprivileged user namespaces are allowed: ``python benchmarks/isolate.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agentfirewall_proxy.isolate.bridge import Bridge, start_sandbox

ROUNDS = 2000
BULK = 64 * 1024 * 1024

CLIENT = """
import socket, sys, time
port, rounds, bulk = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
payload = b"x" * 1024
start = time.perf_counter()
for _ in range(rounds):
    s.sendall(payload)
    got = 0
    while got < 1024:
        got += len(s.recv(1024 - got))
rt = time.perf_counter() - start
s.sendall(b"B")
start = time.perf_counter()
got = 0
while got < bulk:
    got += len(s.recv(1 << 20))
with open(sys.argv[4], "w") as out:
    out.write(f"{rt} {time.perf_counter() - start}")
"""


def _server() -> int:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                data = conn.recv(1024)
                if not data or data == b"B":
                    break
                while len(data) < 1024:
                    data += conn.recv(1024 - len(data))
                conn.sendall(data)
            chunk = b"y" * (1 << 20)
            for _ in range(BULK // len(chunk)):
                conn.sendall(chunk)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def _client(port: int, isolated: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result"
        argv = [sys.executable, "-c", CLIENT, str(port), str(ROUNDS), str(BULK), str(result)]
        if not isolated:
            subprocess.run(argv, check=True)
        else:
            bridge = Bridge(port, "127.0.0.1", port)
            env = {"PATH": os.environ.get("PATH", "")}
            box = start_sandbox(argv, env, [bridge], on_blocked=lambda _b: None)
            box.process.wait()
            box.close()
        rt, bulk = (float(v) for v in result.read_text().split())
    return rt, bulk


def main() -> None:
    started = time.perf_counter()
    for _ in range(5):
        subprocess.run(["true"], check=True)
    plain = (time.perf_counter() - started) / 5
    started = time.perf_counter()
    for _ in range(5):
        box = start_sandbox(["true"], {"PATH": os.environ.get("PATH", "")}, [],
                            on_blocked=lambda _b: None)  # fmt: skip
        box.process.wait()
        box.close()
    isolated = (time.perf_counter() - started) / 5
    print(f"start-up: sandbox {isolated * 1000:.0f} ms vs plain {plain * 1000:.1f} ms "
          f"(+{(isolated - plain) * 1000:.0f} ms per `tf run`)")  # fmt: skip
    port = _server()
    direct_rt, direct_bulk = _client(port, isolated=False)
    bridged_rt, bridged_bulk = _client(port, isolated=True)
    print(f"round trips ({ROUNDS} x 1 KiB): bridged {bridged_rt / ROUNDS * 1e6:.0f} µs vs "
          f"direct {direct_rt / ROUNDS * 1e6:.0f} µs ({bridged_rt / direct_rt:.1f}x)")  # fmt: skip
    mib = BULK / (1 << 20)
    ratio = direct_bulk / bridged_bulk
    print(f"bulk ({mib:.0f} MiB): bridged {mib / bridged_bulk:.0f} MiB/s vs direct "
          f"{mib / direct_bulk:.0f} MiB/s ({ratio:.2f}x of direct)")  # fmt: skip


if __name__ == "__main__":
    main()
