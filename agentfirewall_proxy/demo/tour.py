"""The tour `tf demo` runs: a throwaway `tf up` (temporary state, free ports) in a thread,
fake GitHub and Stripe behind it, and a scripted agent calling them through the gateway.

Each step prints what the agent asked and what it got: an allowed read, a denied delete, a
merge held until a person approves it, the kill switch, and the audit log verified. Nothing
leaves 127.0.0.1; everything is deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agentfirewall_proxy.demo.upstreams import Upstreams
from agentfirewall_proxy.up import UpInfo, UpOptions, run_up

__all__ = ["AGENT", "RULES", "Running", "Step", "running"]

AGENT = "Demo Bot"
#: (connector, action pattern, decision) for the demo agent.
RULES = (
    ("github", "github.*", "allow"),
    ("github", "github.repo.delete", "deny"),
    ("github", "github.pr.merge", "require_approval"),
    ("stripe", "stripe.*", "allow"),
)
_WAIT = 30.0  # seconds a step waits for the gateway before it fails


@dataclass
class Step:
    """One line of the tour: what was asked, what came back, whether that was expected."""

    name: str
    request: str
    result: str
    ok: bool
    detail: str = ""


class Running:
    """The throwaway control plane + gateway + fakes, and clients for the admin and agent."""

    def __init__(self, info: UpInfo, upstreams: Upstreams, admin_token: str) -> None:
        self.info = info
        self.upstreams = upstreams
        self.admin = httpx.Client(
            base_url=info.server_url + "/api",
            headers={"Authorization": f"Bearer {admin_token}"},
            trust_env=False,
            timeout=_WAIT,
        )
        self._key = ""

    def api(self, method: str, path: str, body: object = None) -> Any:
        answer = self.admin.request(method, path, json=body)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def configure(self) -> None:
        for api in self.upstreams.apis:
            self.api("POST", "/v1/connectors", {"type": api.name, "token": api.token})
        for connector, pattern, decision in RULES:
            rule = {"agent": AGENT, "connector": connector, "action_pattern": pattern,
                    "decision": decision}  # fmt: skip
            self.api("POST", "/v1/permissions", rule)
        self._key = str(self.api("POST", "/v1/agents/ensure", {"name": AGENT})["api_key"])

    def agent(self) -> httpx.Client:
        """What `tf run` gives the agent: the proxy with its credential, the gateway's CA."""
        host_port = self.info.proxy_url.removeprefix("http://")
        proxy = f"http://{quote(AGENT)}:{quote(self._key)}@{host_port}"
        trust = ssl.create_default_context(cafile=str(self.info.ca_cert))
        return httpx.Client(proxy=proxy, verify=trust, trust_env=False, timeout=_WAIT * 2)

    def wait_for_approval(self) -> dict[str, Any]:
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            pending = self.api("GET", "/v1/approvals")["approvals"]
            if pending:
                return dict(pending[0])
            time.sleep(0.05)
        raise TimeoutError("the held request never showed up as an approval")

    def wait_for_kill_switch(self, active: bool) -> None:
        """Until the gateway enforces the switch's new state: a probe to a host with no
        connector is refused for the kill switch while it is on (and reaches nothing)."""
        wanted = "kill_switch" if active else "no_connector"
        deadline = time.monotonic() + _WAIT
        with self.agent() as probe:
            while time.monotonic() < deadline:
                body = probe.get("http://tf-demo-probe.invalid/").json()
                if body.get("error") == wanted:
                    return
                time.sleep(0.05)
        raise TimeoutError("the gateway never applied the kill switch")


@contextlib.contextmanager
def running(directory: Path) -> Iterator[Running]:
    """Start everything in a background thread; stop it and its loop on exit."""
    state_dir = directory / ".tf"
    upstreams = Upstreams(directory / "upstreams")
    ready = threading.Event()
    found: list[UpInfo] = []
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_ready(info: UpInfo) -> None:
        found.append(info)
        ready.set()

    async def main() -> None:
        await upstreams.start()
        try:
            options = UpOptions(state_dir=state_dir, port=0, proxy_port=0,
                                resolve=upstreams.resolve(), upstream_ca=upstreams.ca_path,
                                log_level="error")  # fmt: skip
            await run_up(options, on_ready, stop)
        finally:
            await upstreams.stop()

    def thread() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            errors.append(exc)
        finally:
            ready.set()
            loop.close()

    worker = threading.Thread(target=thread, name="tf-demo", daemon=True)
    worker.start()
    ready.wait(120)
    try:
        if not found:
            raise RuntimeError(f"the demo gateway did not start: {errors[0] if errors else '?'}")
        token = (state_dir / "admin.token").read_text(encoding="ascii").strip()
        demo = Running(found[0], upstreams, token)
        try:
            yield demo
        finally:
            demo.admin.close()
    finally:
        if worker.is_alive():
            loop.call_soon_threadsafe(stop.set)
            worker.join(30)
