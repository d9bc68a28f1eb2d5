"""The running gateway: config in memory, listeners, holds, traffic, heartbeats.

:class:`Gateway` ties the pieces together and is what tests start in-process::

    gateway = Gateway(options, StaticControl(snapshot))
    task = asyncio.create_task(gateway.run())
    await gateway.ready.wait()          # first config loaded, listener bound
    gateway.port                        # the bound port (``--listen 127.0.0.1:0`` works)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentfirewall.credentials.model import Rotation
from agentfirewall.policy import KILL_SWITCH_REASON
from agentfirewall.telemetry import json_line, tracer_provider, traces_endpoint
from agentfirewall_proxy import agentports
from agentfirewall_proxy.approvals import HoldOutcome, Holds
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.certs import CertStore, load_or_create_ca
from agentfirewall_proxy.client import ClientConnection
from agentfirewall_proxy.connection import handle_client, resume_parked
from agentfirewall_proxy.contact import ContactWatch
from agentfirewall_proxy.control import Control, ControlError, StaticControl
from agentfirewall_proxy.feedreader import reader_protocol
from agentfirewall_proxy.flow import Abortable, Flow, Refusal
from agentfirewall_proxy.freshlook import FreshLook
from agentfirewall_proxy.hooks import Addons, Counters, DecidedHook, DoneHook, default_addons
from agentfirewall_proxy.http1 import Head
from agentfirewall_proxy.injection import TokenBroker
from agentfirewall_proxy.options import Options
from agentfirewall_proxy.parking import Parked
from agentfirewall_proxy.pipeline import KeyRefused, http_request
from agentfirewall_proxy.refreshlease import ControlLeases, Rotations
from agentfirewall_proxy.snapshot import (
    AgentEntry,
    CompiledConfig,
    compile_snapshot,
    refusing_config,
)
from agentfirewall_proxy.traffic import TrafficShipper
from agentfirewall_proxy.upstream import UpstreamPool

if TYPE_CHECKING:
    from agentfirewall_proxy.tracing import FlowTracer

__all__ = ["Gateway"]

VERSION = "0.1.0"
#: Why an exchange in flight was cut, by how a held one ends: its record, and its answer
#: while none went out yet (``exchange._answer_cut``).
_CUTS: dict[HoldOutcome, Refusal] = {
    "killed": Refusal(403, "kill_switch", "kill_switch_active: the exchange was cut by the "
                      "kill switch"),
    "inactive": Refusal(403, "agent_inactive", "the exchange was cut: its agent was suspended "
                        "or removed"),
    "outage": Refusal(503, "control_plane_unreachable", "the exchange was cut: no word from the "
                      "control plane for longer than --max-config-age (its config may miss a "
                      "kill switch)"),
}  # fmt: skip
#: Connectors whose official clients need ``error`` to be an object in error bodies.
_ERROR_OBJECT = frozenset({"stripe"})
#: Seconds a config long-poll may take beyond its wait before it is given up and asked
#: again (the control plane answers within the wait: a longer one is lost in the network).
_POLL_SLACK = 5.0


class Gateway:
    def __init__(
        self, options: Options, control: Control, extra_addons: Iterable[object] = ()
    ) -> None:
        self.options = options
        self.control = control
        self.config: CompiledConfig | None = None
        self.fresh_look = FreshLook(self._fetch_config_now)
        self.certs = CertStore(load_or_create_ca(options.ca_dir))
        self.pool = UpstreamPool(options)
        self.holds = Holds(control, self.resume)
        self.gateway_id = options.gateway_id or f"gw_{secrets.token_hex(6)}"
        leases = ControlLeases(control, self.gateway_id, self.say)
        self.tokens = TokenBroker(
            options, on_rotated=self.store_rotation, leases=leases, say=self.say
        )
        self.budgets = Budgets(control, self.say)
        self.shipper = TrafficShipper(
            control, batch=options.traffic_batch, interval=options.traffic_interval, say=self.say
        )
        #: The flows in flight (forwarded, tunnelled), on their client connection: a cut
        #: reaches each through its handle (``flow.cutter``: ``flow.Cut``).
        self.active: dict[Flow, ClientConnection] = {}
        self.connections: set[ClientConnection] = set()
        self.ready = asyncio.Event()
        self.port: int | None = None
        self.agent_ports = agentports.AgentPorts(self)
        self.started_at = datetime.now(UTC)
        self.counters = Counters()
        self.stats = self.counters.stats
        self.tracer = _tracer(options)
        self.addons = Addons(
            [*default_addons(self.shipper, self.counters, access_log=options.access_log,
                             json_log=options.log_format == "json"),
             *([self.tracer] if self.tracer is not None else []), *extra_addons]
        )  # fmt: skip
        self._on_done = self.addons.methods(DoneHook)
        self._on_decided = self.addons.methods(DecidedHook)
        self._prefix = f"req_{secrets.token_hex(4)}"
        self._counter = 0
        self._servers: list[asyncio.Server] = []
        self._resumed: set[asyncio.Task[None]] = set()
        self._storing: set[asyncio.Task[None]] = set()
        self.rotations = Rotations(control, self.say, self._storing, lambda: self.contact.heard_at)
        #: Ids of the agents the current config lets in (a flow of any other is stopped).
        self._active_agents: frozenset[str] = frozenset()
        #: The version of the last config refused as older than the one in force (`_older`).
        self._refused_version: int | None = None
        #: Contact with the control plane: lost past ``--max-config-age`` (every request
        #: refused); traffic shipped counts as word from it.
        self.contact = ContactWatch(
            options.max_config_age,
            lose=self._lose_control,
            found=self._found_control,
            probe=self._probe_control,
            answers=lambda: self.shipper.sent,
        )

    # -- identity and decisions -------------------------------------------------------

    def new_request_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter:x}"

    def require_config(self) -> CompiledConfig:
        if self.config is None:
            raise Refusal(503, "not_ready", "the gateway has no configuration yet")
        return self.config

    def check_port_agent(self, conn: ClientConnection, agent: AgentEntry) -> None:
        if conn.port_agent is not None and conn.port_agent != agent.name:
            # the same 407 as an unknown key, looked up again like one (so no faster
            # either): the answer must not confirm a valid key
            raise KeyRefused

    def is_passthrough(self, host: str) -> bool:
        return any(host == d or host.endswith("." + d) for d in self.options.passthrough)

    def check_kill_switch(self, flow: Flow, head: Head | None = None) -> None:
        """Refuse a new request the kill switch stops, and every one while the control
        plane is lost (its config may miss a kill switch)."""
        self._check_contact()
        if flow.agent is None:
            return
        switch = self.require_config().kill_switch_for(flow.agent, flow.connector)
        if switch is not None:
            if head is not None:
                _name_refused_action(flow, head)
            raise Refusal(403, "kill_switch", switch.decision_reason)

    def check_forward(self, flow: Flow) -> None:
        """The last check before a request's first byte goes upstream, after every wait of
        its own (a hold, a token fetch, the upstream connection opening): a kill switch, its
        agent suspended or the control plane lost since it was decided stops it here, and
        so does a cut (``flow.Cut``) whose cause is gone since (an agent active again). Its
        connector was looked up again just before (``pipeline.serving``: the credential it
        carries is the one the config in force gives)."""
        agent = flow.agent
        config = self.require_config()
        switch = config.kill_switch_for(agent, flow.connector) if agent is not None else None
        if flow.killed or switch is not None:
            flow.killed = True
            reason = switch.decision_reason if switch is not None else KILL_SWITCH_REASON
            raise Refusal(403, "kill_switch", reason)
        self._check_contact()
        if agent is not None and agent.id not in self._active_agents:
            raise Refusal(403, "agent_inactive", f"agent `{agent.name}` is no longer active "
                          "(suspended or removed): its request was not forwarded")  # fmt: skip
        if (cut := flow.cut_by) is not None:
            raise Refusal(cut.status, cut.error, cut.message)

    def _check_contact(self) -> None:
        if self.contact.lost:
            raise Refusal(503, "control_plane_unreachable", self.contact.unheard())

    def approval_timeout(self, flow: Flow) -> float:
        """A policy rule's own ``approval.timeout_seconds``, else the settings' timeout."""
        decision = flow.decision
        approval = decision.approval if decision is not None else None
        if approval is not None and approval.explicit:
            return float(approval.timeout_seconds)
        return self.require_config().approval_timeout

    def refusal_body(self, flow: Flow, exc: Refusal) -> dict[str, Any]:
        decision = flow.decision
        rule = None
        if decision is not None:
            names = decision.matched_rules or decision.matched_policies
            rule = names[0] if names else ("default_deny" if decision.default_applied else None)
        if exc.error == "kill_switch":
            rule = rule or "kill_switch"
        body: dict[str, Any] = {
            "error": exc.error,
            "action": flow.action,
            "rule": rule,
            "reason": exc.message,
            "request_id": flow.request_id,
        }
        if flow.connector is not None and flow.connector.type in _ERROR_OBJECT:
            # stripe-python reads `error` as an object and crashes on a string: give it one
            # (same code and reason inside; the other keys stay at the top level).
            body["error"] = {"type": "invalid_request_error", "code": exc.error,
                             "message": f"TameFlare: {exc.message}"}  # fmt: skip
        return body

    # -- flows in progress (for the kill switch) ---------------------------------------

    def park(self, parked: Parked, seconds: float) -> None:
        """Hold `parked` without its connection; :meth:`resume` answers it later."""
        self.active.pop(parked.flow, None)
        flow = parked.flow
        flow.cutter = None  # (its exchange's task ends: `resume_exchange` makes another)
        if flow.parsed is not None and self.config is not None and self.config.budgets:
            flow.parameters = dict(flow.parsed.spec.parameters)  # reserved once approved
        flow.parsed = None  # the approval has the spec; `flow.action` names it
        self.holds.park(parked, seconds)

    def resume(self, parked: Parked, outcome: HoldOutcome) -> None:
        task = asyncio.ensure_future(resume_parked(self, parked, outcome))
        self._resumed.add(task)
        task.add_done_callback(self._resumed.discard)

    def begin(self, flow: Flow, conn: ClientConnection) -> None:
        """`flow` is in flight on `conn`: a cut reaches it (``flow.cutter``) until it ends."""
        flow.written_before = conn.written
        self.active[flow] = conn

    def attach(self, flow: Flow, up: Abortable) -> None:
        """`up` is `flow`'s upstream side now: a cut aborts it at once."""
        if flow.cutter is not None:
            flow.cutter.attach(up)

    def end(self, flow: Flow) -> None:
        self.active.pop(flow, None)
        if flow.cutter is not None:  # over: a cut never reaches its task's next exchange
            flow.cutter.answering()
        self.budgets.settle(flow)
        self.record(flow)

    def record(self, flow: Flow) -> None:
        """The flow is over: the ``done`` hook (traffic record, counters, access log)."""
        for method in self._on_done:
            method(flow)

    def decided(self, flow: Flow) -> None:
        for method in self._on_decided:
            method(flow)

    # -- config --------------------------------------------------------------------------

    def apply(self, snapshot: dict[str, Any]) -> None:
        """Swap in a new config; end the held and cut the in-flight flows it stops: those a
        kill switch now covers, and those of an agent no longer active (suspended, removed).

        A config that does not compile (another version's) leaves the last one refusing
        every request, not enforcing it: it would miss what changed since, a kill switch
        above all. Before any config there is none, and every request gets a 503.
        """
        try:
            config = compile_snapshot(
                snapshot, config_file=self.options.config_file, say=self.say, previous=self.config
            )
        except Exception as exc:
            version = snapshot.get("version")
            self.say(f"agentfirewall_proxy: config {version} rejected: {exc}", "error")
            if self.config is None:
                raise
            config = refusing_config(self.config, int(version or 0), exc)
        self.config = config
        active = frozenset(a.id for a in config.agents.values() if a.status == "active")
        self._active_agents = active

        def stopped(flow: Flow) -> HoldOutcome | None:
            if flow.agent is None:
                return None
            if config.kill_switch_for(flow.agent, flow.connector) is not None:
                return "killed"
            return None if flow.agent.id in active else "inactive"

        self._stop(stopped)

    def _stop(self, stopped: Callable[[Flow], HoldOutcome | None]) -> None:
        """End now every flow in progress that `stopped` names an outcome for: a held one
        is answered by its hold with that outcome, any other in flight is cut
        (``flow.Cut``, whatever it waits on: its upstream connection opening, its budget,
        its request sent, its response), its record and answer saying why."""
        held = set(self.holds.flows())
        for flow in held:
            if (outcome := stopped(flow)) is not None:
                flow.killed = flow.killed or outcome == "killed"
                self.holds.kill(flow, outcome)
        for flow in list(self.active):
            if flow.killed or flow in held or flow.cutter is None:
                continue
            if (outcome := stopped(flow)) is not None:
                flow.killed = outcome == "killed"
                flow.cutter.cut(_CUTS[outcome])

    async def follow_config(self) -> None:
        version: int | None = self.config.version if self.config else None
        wait = self.options.config_wait
        while True:
            try:
                async with asyncio.timeout(wait + _POLL_SLACK):
                    snapshot = await self.control.fetch_config(version, wait)
            except (ControlError, TimeoutError):
                await asyncio.sleep(1.0)
                continue
            if snapshot is None:  # unchanged: the config in force is the current one
                self.contact.heard(config=True)
                continue
            if self._older(snapshot):  # asked again: the replica catches up, or is left
                await asyncio.sleep(1.0)
                continue
            version = int(snapshot.get("version", 0))
            with contextlib.suppress(Exception):  # (said; no config yet: 503s, next one)
                self.apply(snapshot)
            self.contact.heard(config=True)
            await self.agent_ports.sync()

    def _older(self, snapshot: dict[str, Any]) -> bool:
        """Whether `snapshot` is older than the config in force: a replica behind the others
        (cut off from the database, it may miss a kill switch). Never applied, and no word
        from the control plane either (said once per version)."""
        version = int(snapshot.get("version", 0))
        if self.config is None or version >= self.config.version:
            return False
        if self._refused_version != version:
            self._refused_version = version
            self.say(f"agentfirewall_proxy: config {version} refused: older than configuration "
                     f"{self.config.version} in force (a control-plane replica behind the "
                     "others?)", "warning")  # fmt: skip
        return True

    # -- the control plane lost (--max-config-age: ``contact``) ---------------------------

    async def _probe_control(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.contact.probe_timeout):
                await self._fetch_config_now()

    def _found_control(self) -> None:
        version = self.config.version if self.config is not None else None
        self.say(f"agentfirewall_proxy: the control plane answers again: enforcing "
                 f"configuration {version}", "warning")  # fmt: skip

    async def _lose_control(self) -> None:
        """No word for longer than ``--max-config-age``: refuse every request (503), held
        ones included, until the control plane answers."""
        bound = self.options.max_config_age
        self.say(f"agentfirewall_proxy: no word from the control plane for {bound:g} s "
                 "(--max-config-age): every request is refused until it answers",
                 "error")  # fmt: skip
        # every one, sent or not: a tunnel or a stream may outlive any bound, and a request
        # waiting for its upstream connection is answered now, not once it opened
        self._stop(lambda _flow: "outage")

    def store_rotation(self, rotation: Rotation) -> None:
        """Send a rotated refresh token to the vault, in the background (the token that
        carries it serves requests meanwhile: ``agentfirewall.credentials.oauth2``), again
        while the control plane is away, for as long as the gateway runs (``refreshlease``)."""
        self.rotations.put(rotation)

    async def look_again(self) -> CompiledConfig:
        """The configuration after a fetch begun now: for a proxy key not in this one.

        The long poll above brings every change within milliseconds; a key made just
        before its first use can beat it (see ``freshlook``).
        """
        await self.fresh_look()
        return self.require_config()

    async def _fetch_config_now(self) -> None:
        asked = self.config.version if self.config is not None else None
        try:
            snapshot = await self.control.fetch_config(asked, 0)  # 304 when unchanged
        except ControlError:
            return  # the key stays refused (fail closed); the long poll retries on its own
        if snapshot is not None and self._older(snapshot):
            return  # no word from the control plane either
        current = self.config.version if self.config is not None else None
        if snapshot is not None and current == asked:  # changed, not applied meanwhile
            with contextlib.suppress(Exception):  # (said in `apply`)
                self.apply(snapshot)  # the long poll applies it again, with agent ports
        self.contact.heard(config=True)  # changed or not: the config in force is the current one

    async def _first_config(self) -> None:
        while self.config is None:
            try:
                snapshot = await self.control.fetch_config(None, 0)
            except ControlError as exc:
                refused = exc.status in (401, 403)  # a wrong token: say which option it is
                hint = ": is --token its gateway token (tfg_...)?" if refused else ""
                self.say(
                    f"agentfirewall_proxy: waiting for the control plane: {exc}{hint}", "warning"
                )
                await asyncio.sleep(1.0)
                continue
            if snapshot is not None:
                self.apply(snapshot)
                self.contact.heard(config=True)

    # -- running -------------------------------------------------------------------------

    def heartbeat_payload(self) -> dict[str, Any]:
        return {
            "gateway_id": self.gateway_id,
            "version": VERSION,
            "listen": f"{self.options.listen_host}:{self.port}",
            "agent_ports": dict(self.agent_ports.ports),
            "agent_port_range": self.options.agent_ports,
            "started_at": self.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stats": {
                **self.stats,
                "held_now": len(self.holds),
                "in_flight": len(self.active),
                "traffic_dropped": self.shipper.dropped,
                "token_fetches": self.tokens.fetches,
                "config_lookups": self.fresh_look.fetches,  # for keys not in the config
                "pid": os.getpid(),
                "uptime_seconds": int(time.time() - self.started_at.timestamp()),
                # the replica it talks to now, and how often it moved (HttpControl only)
                "control_plane": getattr(self.control, "url", None),
                "control_failovers": getattr(self.control, "failovers", 0),
            },
        }

    async def heartbeats(self) -> None:
        while True:
            try:
                await self.control.heartbeat(self.heartbeat_payload())
            except ControlError:
                pass
            else:
                self.contact.heard()
            await asyncio.sleep(self.options.heartbeat_interval)

    async def listen(
        self,
        host: str,
        port: int,
        port_agent: str | None = None,
        *,
        sock: socket.socket | None = None,
    ) -> asyncio.Server:
        """Serve on `host`:`port`, or on `sock` as it is (already listening: ``tf up``)."""

        def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> Coroutine[Any, Any, None]:
            return handle_client(self, reader, writer, port_agent)  # run as the task itself

        # = asyncio.start_server(handler, ...) with the gateway's FeedReader
        loop = asyncio.get_running_loop()
        if sock is None:
            server = await loop.create_server(
                lambda: reader_protocol(handler), host, port, backlog=1024
            )
        else:
            server = await loop.create_server(
                lambda: reader_protocol(handler), sock=sock, backlog=1024
            )
        self._servers.append(server)
        return server

    async def run(self) -> None:
        """Serve until cancelled."""
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._first_config()
            host, port = self.options.listen_host, self.options.listen_port
            servers = [  # one per socket `tf up` bound (one per address), else on host:port
                await self.listen(host, port, sock=sock)
                for sock in self.options.listen_sockets or (None,)
            ]
            self.port = servers[0].sockets[0].getsockname()[1]
            await self.agent_ports.sync()
            tasks = [
                asyncio.ensure_future(self.follow_config()),
                asyncio.ensure_future(self.shipper.run()),
                asyncio.ensure_future(self.heartbeats()),
            ]
            # a config file has no control plane to lose
            if self.options.max_config_age > 0 and not isinstance(self.control, StaticControl):
                tasks.append(asyncio.ensure_future(self.contact.watch()))
            self.ready.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in self._servers:
                server.close()
            self.holds.release_all()
            for conn in list(self.connections):
                conn.abort()
            for flow in list(self.active):
                up = flow.cutter.upstream if flow.cutter is not None else None
                if up is not None:
                    up.abort()
            self.pool.close()
            # let the aborted transports and held flows finish: they settle their budgets
            await asyncio.sleep(0.01)  # (with what is known: ``metering.py``), drained next
            await self.budgets.drain()
            if self._storing:  # rotated refresh tokens on their way to the vault: the next
                await asyncio.wait(list(self._storing), timeout=5.0)  # start needs them
            self.certs.close()
            await self.tokens.aclose()
            await self.control.aclose()
            if self.tracer is not None:  # export the spans still queued
                await asyncio.to_thread(self.tracer.shutdown)

    def say(self, message: str, level: str = "info") -> None:
        """A message on stderr (a JSON line with ``--log-format json``)."""
        if self.options.log_format == "json":
            message = json_line(level, "agentfirewall_proxy", message)
        print(message, file=sys.stderr, flush=True)


def _tracer(options: Options) -> FlowTracer | None:
    """The gateway's tracer when an OTLP endpoint is configured, else None."""
    endpoint = traces_endpoint(options.otlp_endpoint)
    if endpoint is None:
        return None
    from agentfirewall_proxy.tracing import FlowTracer

    return FlowTracer(tracer_provider("tameflare-gateway", endpoint))


def _name_refused_action(flow: Flow, head: Head) -> None:
    """Name the action of a request the kill switch refuses before its body is read (for the
    traffic log and the 403 body); an action that needs the body stays unnamed."""
    if flow.connector is None:
        return
    try:
        parsed = flow.connector.impl.parse(
            http_request(flow, head, b"", False), base_url=flow.connector.base_url
        )
    except Exception:  # naming is best effort here: the request is refused either way
        return
    flow.action = parsed.spec.type
