"""One governed stdio session: the client on our stdin/stdout, the real server as a child.

The relay composes the session's parts and runs them until it ends:

- :mod:`~agentfirewall_proxy.mcpwrap.from_client`: each client message named, decided,
  recorded, then forwarded, refused or held (budgets count there);
- :mod:`~agentfirewall_proxy.mcpwrap.holding`: held messages, until approved or refused;
- :mod:`~agentfirewall_proxy.mcpwrap.from_server`: the server's messages relayed, scrubbed
  and filtered, and its stderr;
- :mod:`~agentfirewall_proxy.mcpwrap.follower`: the config followed, and the watchdog;
- :mod:`~agentfirewall_proxy.mcpwrap.pending`: the unanswered requests, by id;
- :mod:`~agentfirewall_proxy.mcpwrap.child`: the server's stdin and its end.

The session ends when the client closes stdin (the server gets EOF, then SIGTERM), when the
server exits (every unanswered request gets an error saying so), or when a kill switch
covers it (every unanswered request is refused, the server is stopped at once: SIGTERM).
Each time every process the server started (its process group) ends with it.

As at the gateway, it is cut short but goes on when its agent is suspended or removed (a
new config says so), or when the control plane has not answered for longer than
``--max-config-age`` (its config may miss a kill switch; both followed by
:mod:`~agentfirewall_proxy.mcpwrap.follower`): every unanswered request is refused (held
ones too; forwarded ones are cancelled at the server, whose late answer is dropped), and so
is every later one, until the agent is active again or a config fetch answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from agentfirewall_proxy.approvals import HoldOutcome, Holds
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.control import Control
from agentfirewall_proxy.guard import note_findings
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.child import Child
from agentfirewall_proxy.mcpwrap.follower import Follower
from agentfirewall_proxy.mcpwrap.framing import DEFAULT_LIMIT
from agentfirewall_proxy.mcpwrap.from_client import FromClient
from agentfirewall_proxy.mcpwrap.from_server import FromServer
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.holding import Holding
from agentfirewall_proxy.mcpwrap.pending import Pending
from agentfirewall_proxy.pipeline import Flow, traffic_record
from agentfirewall_proxy.traffic import TrafficShipper

__all__ = ["Relay", "RelayOptions"]


@dataclass(frozen=True)
class RelayOptions:
    show_denied: bool = False
    progress_interval: float = 10.0
    limit: int = DEFAULT_LIMIT
    term_grace: float = 3.0
    config_wait: float = 25.0
    #: Seconds without word from the control plane after which every request is refused
    #: (the gateway's ``--max-config-age``); 0: no bound.
    max_config_age: float = 60.0


class Relay:
    """The session (:class:`~agentfirewall_proxy.mcpwrap.session.Session`) its parts act on."""

    def __init__(
        self,
        gate: Gate,
        control: Control,
        options: RelayOptions,
        child: asyncio.subprocess.Process,
        config_version: int,
    ) -> None:
        self.gate = gate
        self.child = Child(child, options.term_grace)
        self.holds = Holds(control)
        self.budgets = Budgets(control)
        self.shipper = TrafficShipper(control, batch=200, interval=1.0)
        self.pending = Pending()
        self.closing = False
        #: A kill switch cut the session: the server is stopped at once (SIGTERM, no EOF).
        self.killed = False
        #: The config long poll and the watchdog (``--max-config-age``).
        self.follower = Follower(
            self, gate, control, config_version,
            wait=options.config_wait, bound=options.max_config_age,
        )  # fmt: skip
        self.holding = Holding(
            self, gate, self.holds, self.budgets, self.follower, self.pending,
            progress_interval=options.progress_interval,
        )  # fmt: skip
        self.from_client = FromClient(
            self, gate, self.budgets, self.follower.contact, self.pending, self.holding,
            limit=options.limit,
        )  # fmt: skip
        self.from_server = FromServer(
            self, child, gate, self.pending, scrubber=gate.connector.scrubber,
            show_denied=options.show_denied, limit=options.limit, to_server=self.child.send,
        )  # fmt: skip
        self._done: asyncio.Future[int] | None = None
        self._out: asyncio.StreamWriter | None = None

    # -- running -----------------------------------------------------------------------

    async def run(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> int:
        """Relay until the session ends; the exit code (the server's, or 1 when cut)."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._out = client_out
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._finish, 128 + sig)
        tasks = [
            asyncio.ensure_future(self.from_client.pump(client_in)),
            asyncio.ensure_future(self.from_server.pump()),
            asyncio.ensure_future(self.from_server.copy_stderr()),
            asyncio.ensure_future(self.shipper.run()),
            *map(asyncio.ensure_future, self.follower.loops()),
        ]
        try:
            return await self._done
        finally:
            self.closing = True
            holding = list(self.holding.running)
            for task in [*tasks, *holding]:
                task.cancel()
            await asyncio.gather(*tasks, *holding, return_exceptions=True)
            self.holds.release_all()
            await self.child.stop(at_once=self.killed)
            await self.budgets.drain()
            with contextlib.suppress(ConnectionError):
                await client_out.drain()

    def _finish(self, code: int) -> None:
        self.closing = True
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    # -- both ends -----------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        assert self._out is not None
        self._out.write(data)
        try:
            await self._out.drain()
        except ConnectionError:  # the client is gone
            self._finish(0)

    async def forward(self, message: Any, flow: Flow) -> None:
        self.pending.sent(message, flow)
        data = rpc.dumps(message)
        flow.status, flow.bytes_out = 200, len(data)
        self.record(flow)
        try:
            flow.sent = self.child.send(data)  # a budget debit is spent from here
            await self.child.drained()
        finally:
            self.budgets.settle(flow)

    async def refuse(self, message: Any, flow: Flow, code: int, text: str, **extra: object) -> None:
        flow.handed_off = time.monotonic()  # the relay's own part ends (traffic_record)
        data: dict[str, Any] = {
            "action": flow.action,
            "rule": rpc.rule_of(flow.decision),
            "reason": flow.decision.reason if flow.decision else text,
            "request_id": flow.request_id,
            **extra,
        }
        if flow.parsed is None and code == rpc.DENIED:
            code = rpc.INVALID  # not understood (malformed): the client's mistake
        for member in message if isinstance(message, list) else [message]:
            answered, request_id = rpc.refusable(member)
            if answered:
                await self.write(rpc.error(request_id, code, text, data))

    def record(self, flow: Flow) -> None:
        if flow.findings:  # where the content detectors fired, never what they found
            redacted = f" ({flow.redacted} redacted)" if flow.redacted else ""
            note_findings(flow, list(flow.findings), f"content{redacted}")
        self.shipper.record(traffic_record(flow))

    # -- ending --------------------------------------------------------------------------

    async def _fail_all(self, code: int, text: str, data: dict[str, Any]) -> None:
        """Answer every unanswered request (forwarded or held) with one error."""
        for request_id in self.pending.take_all():
            await self.write(rpc.error(request_id, code, text, data))

    async def server_died(self, code: int) -> None:
        name = self.gate.server_name
        text = f"TameFlare: mcp server `{name}` exited with code {code}"
        print(f"tf mcp wrap: {text}", file=sys.stderr)
        await self._fail_all(rpc.UNAVAILABLE, text, {"server": name, "exit_code": code})
        self._finish(code if code > 0 else 1 if code else 0)

    async def cut(self, reason: str) -> None:
        """A kill switch covers the session: refuse everything unanswered, stop the server."""
        if self.closing:
            return
        self.closing = self.killed = True
        text = f"TameFlare: kill switch active: the session is cut ({reason})"
        print(f"tf mcp wrap: {text}", file=sys.stderr)
        data = {"reason": "kill_switch_active", "rule": "kill_switch", "kill_switch": True}
        await self._fail_all(rpc.DENIED, text, data)
        self._finish(1)

    async def client_closed(self) -> None:
        """EOF from the client: the server gets EOF too and the session ends with it."""
        self.child.close_input()
        self.closing = True
        self._finish(max(await self.child.exit_code(), 0))

    async def cut_unanswered(self, reason: str, error: str, outcome: HoldOutcome) -> None:
        """Refuse every unanswered request (as the gateway cuts its exchanges): held ones
        end with `outcome`; forwarded ones are answered now and cancelled at the server
        (its answer, should it come, is dropped)."""
        for flow in self.holds.flows():
            self.holds.kill(flow, outcome)
        if not self.pending.forwarded:
            return
        print(f"tf mcp wrap: {reason}: {len(self.pending.forwarded)} unanswered request(s) "
              "refused", file=sys.stderr)  # fmt: skip
        text = f"TameFlare: {error}: {reason}: the request was cut"
        for key, method in self.pending.cut_forwarded().items():
            request_id = json.loads(key)
            data = {"error": error, "reason": reason}
            await self.write(rpc.error(request_id, rpc.DENIED, text, data))
            if method != "initialize":  # (which a client must never cancel)
                self.child.send(rpc.cancelled(request_id, reason))
        await self.child.drained()
