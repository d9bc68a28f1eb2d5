# ruff: noqa: E501  (the harness is embedded verbatim)
"""The unprivileged path: the sandbox as an ordinary user (uid 65534) in a user namespace,
when the kernel allows it; and the clear refusal, with the fix, when it does not (a user
namespace whose ``user.max_user_namespaces`` is 0, made for the test and gone after it).

The harness runs under the system interpreter (the tests' own may live where uid 65534
cannot read) and needs only the standard library and this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.isolate.conftest import NOBODY, SYSTEM_PYTHON, echo_server, needs_root

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    needs_root,  # to become uid 65534 (CI runs as root)
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--isolate needs Linux"),
    pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"no {SYSTEM_PYTHON}"),
]

HARNESS = """
import json, os, sys
from agentfirewall_proxy.isolate.bridge import Bridge, IsolationError, start_sandbox
port = int(sys.argv[1])
agent = '''
import os, socket
s = socket.create_connection(("127.0.0.1", %d)); s.sendall(b"ping"); print(s.recv(64).decode())
try:
    socket.create_connection(("198.51.100.7", 443), timeout=5); print("reached")
except OSError as e:
    print(type(e).__name__)
print(os.getuid(), open("/proc/self/status").read().split("CapEff:")[1].split()[0])
try:
    open("/proc/1/environ", "rb").read(); print("readable")
except OSError as e:
    print(type(e).__name__)
''' % port
blocked = []
try:
    box = start_sandbox([sys.executable, "-c", agent], dict(os.environ), [Bridge(port, "127.0.0.1", port)],
                        on_blocked=blocked.append)
except IsolationError as exc:
    print(json.dumps({"refused": str(exc), "advice": exc.advice(os.geteuid())}))
    sys.exit(0)
code = box.process.wait()
box.close()
print(json.dumps({"code": code, "blocked": [b.describe() for b in blocked]}))
"""

NESTED_REFUSING = """
import os, sys
sys.path.insert(0, sys.argv[1])
from agentfirewall_proxy.isolate import kernel
go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    kernel.unshare(kernel.CLONE_NEWUSER)
    os.write(ready_w, b"x")
    os.read(go_r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as limit:
        limit.write("0")  # this namespace's limit only: the host's is untouched
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    os.execv(sys.argv[2], sys.argv[2:])
os.read(ready_r, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as mapping:
        mapping.write("0 0 65536")
os.write(go_w, b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.fixture
def echo_port() -> Iterator[int]:
    with echo_server("127.0.0.1") as port:
        yield port


def _harness(port: int, *, nested: bool = False) -> dict[str, Any]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": "/"}
    argv = [SYSTEM_PYTHON, "-c", HARNESS, str(port)]
    run: dict[str, Any] = {"env": env, "capture_output": True, "text": True, "timeout": 60}
    if nested:
        argv = [sys.executable, "-c", NESTED_REFUSING, str(REPO), *argv]
        done = subprocess.run(argv, cwd="/", check=False, **run)
    else:
        done = subprocess.run(argv, cwd="/", check=False, user=NOBODY, group=NOBODY,
                              extra_groups=[], **run)  # fmt: skip
    if "ModuleNotFoundError" in done.stderr or "PermissionError" in done.stderr:
        pytest.skip(f"uid {NOBODY} cannot run this checkout: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    result["agent"] = lines[:-1]
    return result


def test_an_ordinary_user_is_isolated_in_a_user_namespace(echo_port: int) -> None:
    result = _harness(echo_port)
    if "refused" in result:
        pytest.skip(f"this kernel refuses unprivileged user namespaces: {result['refused']}")
    assert result["code"] == 0
    assert result["agent"] == [
        "pong:ping",  # through the bridge to the host's server
        "ConnectionRefusedError",  # the direct connection
        f"{NOBODY} 0000000000000000",  # its own uid, no capabilities at all
        "PermissionError",  # the sandbox's PID 1 cannot be looked into (not dumpable)
    ]
    # the bridge reaches the host's server; the direct connection is refused and counted
    assert result["blocked"] == ["TCP connection to 198.51.100.7:443"]


def test_the_refusal_names_the_sysctl_that_blocks(echo_port: int) -> None:
    result = _harness(echo_port, nested=True)
    assert result["refused"] == "create a user namespace: No space left on device"
    assert "`sudo sysctl -w user.max_user_namespaces=15000`" in result["advice"]
    assert "or run `tf run --isolate` as root" in result["advice"]
