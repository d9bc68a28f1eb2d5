"""One governed stdio session: the client on our stdin/stdout, the real server as a child.

Client to server, every message (a batch is one message) is named and decided by the
:class:`~agentfirewall_proxy.mcpwrap.gate.Gate`, recorded as traffic, then:

- allowed: forwarded as the relay re-serialised it (the server reads exactly what was
  decided: no duplicate keys, no alternative encodings);
- denied: answered with a JSON-RPC error naming the action, the rule and the reason (a
  denied notification is dropped);
- held: an approval is recorded through the control plane (the gateway's ``Holds``); the
  client gets ``notifications/progress`` while it waits (when it sent a progress token),
  then the message is forwarded or answered with the decision. ``notifications/cancelled``
  for a held request ends the hold.

Budgets (connector ``mcp``) count here as over HTTP, with the gateway's ``Budgets``: an
allowed message a budget covers is debited before it is forwarded (spent once forwarded:
a tool call that was sent counts, whatever the server answers), refused past a ``deny``
budget or held past a ``require_approval`` one, and refused when the budget cannot be
checked (the control plane unreachable: fail closed). A held message (by a rule or a
budget) is reserved as if approved before it is held, in the gateway's order: past a
``deny`` budget it is refused before an approval is recorded or a grant's use is spent;
its reservation is settled once forwarded and released when the hold ends otherwise
(denied, timed out, cancelled, the session cut). Policy conditions on ``budget.<name>.*``
read the same state.

Server to client, everything is relayed (responses, notifications, server requests such as
sampling or elicitation) after the injected credentials are scrubbed out; answers to
``tools/list`` lose the tools the agent may not call (unless ``show_denied``).

The session ends when the client closes stdin (the server gets EOF, then SIGTERM), when the
server exits (every unanswered request gets an error saying so), or when a kill switch
covers it (every unanswered request is refused, the server is stopped).

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
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from agentfirewall.connectors.bodies import parse_json
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError
from agentfirewall_proxy.approvals import HoldOutcome, Holds
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.control import Control
from agentfirewall_proxy.flow import Refusal
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.binding import bind
from agentfirewall_proxy.mcpwrap.follower import Follower
from agentfirewall_proxy.mcpwrap.framing import DEFAULT_LIMIT, TooLarge, read_message
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.pipeline import Flow, traffic_record
from agentfirewall_proxy.traffic import TrafficShipper

__all__ = ["Relay", "RelayOptions"]

_HOLD_ERRORS: dict[str, str] = {
    "denied": "approval denied",
    "timeout": "approval timed out",
    "unavailable": "approval could not be recorded or confirmed (control plane unreachable)",
}
#: Bytes of the server's stderr read at a time (a line may be of any length).
_STDERR_READ = 1 << 16


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
    def __init__(
        self,
        gate: Gate,
        control: Control,
        options: RelayOptions,
        child: asyncio.subprocess.Process,
        config_version: int,
    ) -> None:
        self.gate = gate
        self.control = control
        self.options = options
        self.child = child
        self.holds = Holds(control)
        self.budgets = Budgets(control)
        self.shipper = TrafficShipper(control, batch=200, interval=1.0)
        self.scrubber = gate.connector.scrubber
        #: Forwarded client requests not yet answered: id key -> method.
        self.inflight: dict[str, str] = {}
        #: Held client messages: id key -> (task, the ids it answers).
        self.held: dict[str, tuple[asyncio.Task[None], list[Any]]] = {}
        #: Every hold still running (kept when `held` is cleared: awaited at the end, so
        #: their reservations are released before the budgets are drained).
        self._holding: set[asyncio.Task[None]] = set()
        #: Forwarded requests refused since (cut): their answer, should it come, is dropped.
        self.cut_off: set[str] = set()
        self.closing = False
        #: The config long poll and the watchdog (``--max-config-age``).
        self.follower = Follower(
            self, gate, control, config_version,
            wait=options.config_wait, bound=options.max_config_age,
        )  # fmt: skip
        self.contact = self.follower.contact
        self._done: asyncio.Future[int] | None = None
        self._out: asyncio.StreamWriter | None = None
        self._prefix = f"mcp_{secrets.token_hex(4)}"
        self._count = 0

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
            asyncio.ensure_future(self._client_pump(client_in)),
            asyncio.ensure_future(self._server_pump()),
            asyncio.ensure_future(self._stderr_pump()),
            asyncio.ensure_future(self.shipper.run()),
            *map(asyncio.ensure_future, self.follower.loops()),
        ]
        try:
            return await self._done
        finally:
            self.closing = True
            holding = list(self._holding)
            for task in [*tasks, *holding]:
                task.cancel()
            await asyncio.gather(*tasks, *holding, return_exceptions=True)
            self.holds.release_all()
            await self.budgets.drain()
            await self._stop_child()
            with contextlib.suppress(ConnectionError):
                await client_out.drain()

    def _finish(self, code: int) -> None:
        self.closing = True
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    async def _stop_child(self) -> None:
        child = self.child
        if child.returncode is None and child.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                child.stdin.close()
        for stop in (None, child.terminate, child.kill):
            if stop is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), self.options.term_grace)
                return

    async def _write(self, data: bytes) -> None:
        assert self._out is not None
        self._out.write(data)
        try:
            await self._out.drain()
        except ConnectionError:  # the client is gone
            self._finish(0)

    # -- client -> server --------------------------------------------------------------

    async def _client_pump(self, reader: asyncio.StreamReader) -> None:
        while not self.closing:
            line = await read_message(reader)
            if line is None:
                await self._client_closed()
                return
            if isinstance(line, TooLarge):  # not read: its id is not known (JSON-RPC: null)
                text = f"message over the {self.options.limit}-byte limit: not relayed"
                self._record_unread("/too-large", line.size, text)
                await self._write(rpc.error(None, rpc.INVALID, text))
                continue
            try:
                await self.from_client(line)
            except Exception as exc:  # one bad message never ends the session
                print(f"tf mcp wrap: message refused: {exc}", file=sys.stderr)
                await self._write(rpc.error(None, rpc.INVALID, "message could not be relayed"))

    async def from_client(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = parse_json(line, connector="mcp")
        except AgentFirewallError as exc:
            self._record_unread("/not-json", len(line), str(exc))
            await self._write(rpc.error(None, rpc.PARSE_ERROR, str(exc)))
            return
        if self._cancels_hold(message):
            return
        why = self._untrackable(message)
        if why is not None:  # its answer could not be told apart: refused, recorded
            self._record_unread("/bad-id", len(line), why)
            await self._write(rpc.error(None, rpc.INVALID, why))
            return
        kill = self.gate.kill_switch()
        if kill is not None:
            await self.cut(kill)
            return
        flow = self._flow(message, len(line))
        if self.contact.lost:  # the config in force may miss a kill switch: fail closed
            await self._unreachable(message, flow)
            return
        parsed, decision = self.gate.decide(message)
        flow.parsed, flow.decision = parsed, decision
        flow.action = parsed.spec.type if parsed else None
        config = self.gate.config
        if parsed is not None and config is not None and config.budget_fields:
            try:  # a policy condition reads `budget.<name>.*`: decided again with them
                attributes = await self.budgets.attributes()
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            parsed, decision = self.gate.decide(message, attributes)
            flow.parsed, flow.decision = parsed, decision
        if decision.outcome == "allow" and parsed is not None:
            try:
                held = await self._reserve(flow, force=False)
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            if held is not None:  # a `require_approval` budget: held like a rule's hold
                decision = flow.decision = held
        if decision.outcome == "allow":
            await self._forward(message, flow)
        elif decision.outcome == "require_approval" and parsed is not None:
            try:  # reserved as if approved (as at the gateway): a `deny` budget refuses
                await self._reserve(flow, force=True)  # before anyone is asked or a grant used
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            self._hold(message, flow)
        else:
            flow.status = 403
            await self._refuse(message, flow, rpc.DENIED, self._denial_text(flow))
            self._record(flow)

    async def _reserve(self, flow: Flow, *, force: bool) -> Decision | None:
        config = self.gate.config
        if config is None or not config.budgets:
            return None
        return await self.budgets.reserve(config.budgets, flow, force=force)

    async def _refused(self, message: Any, flow: Flow, exc: Refusal) -> None:
        """A budget refused or could not be checked: answered, recorded, nothing forwarded."""
        flow.status, flow.reason = exc.status, exc.message
        text = f"TameFlare: `{flow.action or 'unnamed message'}`: {exc.message}"
        await self._refuse(message, flow, rpc.DENIED, text, error=exc.error)
        self._record(flow)

    async def _unreachable(self, message: Any, flow: Flow) -> None:
        """Refused: no word from the control plane for longer than ``--max-config-age``."""
        flow.parsed, _ = self.gate.decide(message)  # (named for the record)
        flow.action = flow.parsed.spec.type if flow.parsed else None
        reason = self.contact.unheard()
        flow.decision = Decision("deny", reason, decided_outcome="deny")
        flow.status, flow.reason = 503, reason
        text = f"TameFlare: control_plane_unreachable: {reason}: refused until it answers"
        await self._refuse(message, flow, rpc.DENIED, text, error="control_plane_unreachable")
        self._record(flow)

    def _flow(self, message: Any, size: int) -> Flow:
        self._count += 1
        if isinstance(message, list):
            method = "batch"
        elif isinstance(message, dict) and isinstance(message.get("method"), str):
            method = message["method"]
        else:
            method = "response"
        return Flow(
            request_id=f"{self._prefix}{self._count:x}",
            method="MCP",
            scheme="stdio",
            host=self.gate.server_name,
            path="/" + method[:2000],
            agent=self.gate.agent(),
            connector=self.gate.connector,
            bytes_in=size,
        )

    def _record(self, flow: Flow) -> None:
        self.shipper.record(traffic_record(flow))

    def _untrackable(self, message: object) -> str | None:
        """Why a request's answer could not be matched to it, or None: an id that is not a
        string or an integer (the server may answer ``2.0`` as ``2``), or one an unanswered
        request already has. The answer to a ``tools/list`` is filtered by that match: an
        answer matched to nothing would pass unfiltered."""
        seen: set[str] = set()
        for member in message if isinstance(message, list) else [message]:
            if not isinstance(member, dict) or "method" not in member or "id" not in member:
                continue
            value = member["id"]
            if value is None:
                continue  # (refused as any null id is, with its own answer)
            if isinstance(value, bool) or not isinstance(value, str | int):
                return "a request id must be a string or an integer"
            key = rpc.id_key(value)
            if key in seen or key in self.inflight or key in self.held or key in self.cut_off:
                return f"request id {key[:60]} is already used by an unanswered request"
            seen.add(key)
        return None

    def _record_unread(self, path: str, size: int, reason: str) -> None:
        """A client line refused before it was read as a message (not JSON, over the
        limit): recorded too, as every client message is."""
        flow = self._flow(None, size)
        flow.path, flow.status, flow.reason = path, 400, reason
        flow.decision = Decision("deny", reason, decided_outcome="deny")
        self._record(flow)

    def _denial_text(self, flow: Flow) -> str:
        decision = flow.decision
        reason = decision.reason if decision else "denied"
        rule = rpc.rule_of(decision)
        text = f"TameFlare denied `{flow.action or 'unnamed message'}`: {reason}"
        return text + (f" (rule `{rule}`)" if rule else "")

    async def _forward(self, message: Any, flow: Flow) -> None:
        for member in message if isinstance(message, list) else [message]:
            is_request, request_id = rpc.request_id(member)
            if is_request:
                self.inflight[rpc.id_key(request_id)] = str(member["method"]).strip().lower()
            elif isinstance(member, dict) and member.get("method") == "notifications/cancelled":
                params = member.get("params")
                if isinstance(params, dict):
                    self.inflight.pop(rpc.id_key(params.get("requestId")), None)
        data = rpc.dumps(message)
        flow.status, flow.bytes_out = 200, len(data)
        self._record(flow)
        try:
            flow.sent = self._to_server(data)  # a budget debit is spent from here
            await self._server_drained()
        finally:
            self.budgets.settle(flow)

    def _to_server(self, data: bytes) -> bool:
        """Write `data` to the server; False when it could not be written (the server is
        gone: `_server_pump` reports it for every tracked request)."""
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _server_drained(self) -> None:
        assert self.child.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.child.stdin.drain()

    async def _refuse(
        self, message: Any, flow: Flow, code: int, text: str, **extra: object
    ) -> None:
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
                await self._write(rpc.error(request_id, code, text, data))

    # -- holds ---------------------------------------------------------------------------

    def _hold(self, message: Any, flow: Flow) -> None:
        task = asyncio.ensure_future(self._held(message, flow))
        ids = [
            rid
            for member in (message if isinstance(message, list) else [message])
            for is_request, rid in [rpc.request_id(member)]
            if is_request
        ]
        for rid in ids:
            self.held[rpc.id_key(rid)] = (task, ids)
        self._holding.add(task)
        task.add_done_callback(self._holding.discard)
        task.add_done_callback(lambda _: [self.held.pop(rpc.id_key(rid), None) for rid in ids])

    def _timeout(self, flow: Flow) -> float:
        approval = flow.decision.approval if flow.decision is not None else None
        if approval is not None and approval.explicit:
            return float(approval.timeout_seconds)
        config = self.gate.config
        return config.approval_timeout if config is not None else 300.0

    async def _held(self, message: Any, flow: Flow) -> None:
        """Hold `message` (its spend reserved in :meth:`from_client`) until it is decided."""
        try:
            outcome = await self._approval(message, flow)
            await self._settled(message, flow, outcome)
        finally:  # not forwarded (denied, timed out, cancelled, cut): released; else a no-op
            self.budgets.settle(flow)

    async def _approval(self, message: Any, flow: Flow) -> HoldOutcome:
        """The held message's outcome; its hold (``flow.hold``) lasts from recording the
        approval to confirming its use, as at the gateway (``exchange._hold``)."""
        seconds = self._timeout(flow)
        flow.bound = bind(message, flow)
        flow.hold = (time.monotonic(), 0.0)
        try:
            outcome = await self.holds.create(flow, seconds)
            if outcome is None:
                outcome = await self._wait(message, flow, seconds)
            outcome = await self.holds.finish(flow, outcome)
            flow.hold = (flow.hold[0], time.monotonic())
            return outcome
        except asyncio.CancelledError:
            flow.status, flow.reason = 499, "held request cancelled by the client"
            self._record(flow)
            raise

    async def _wait(self, message: Any, flow: Flow, seconds: float) -> HoldOutcome:
        waiter = asyncio.ensure_future(self.holds.wait(flow, seconds, lambda: self.closing))
        token = rpc.progress_token(message)
        count = 0
        try:
            while True:
                if token is not None:
                    count += 1
                    text = (
                        f"TameFlare: `{flow.action}` is waiting for approval "
                        f"`{flow.approval_id}` ({count})"
                    )
                    await self._write(rpc.progress(token, count, text))
                done, _ = await asyncio.wait({waiter}, timeout=self.options.progress_interval)
                if done:
                    return waiter.result()
        finally:
            waiter.cancel()

    async def _settled(self, message: Any, flow: Flow, outcome: HoldOutcome) -> None:
        if outcome == "approved" and self.contact.lost:  # the last checks before it goes
            outcome = "outage"
        elif outcome == "approved" and not self.follower.active():
            outcome = "inactive"
        if outcome == "approved":  # (its spend was reserved before it was held)
            await self._forward(message, flow)
            return
        if outcome == "killed":
            flow.killed, flow.status = True, 403
            text = "TameFlare: kill switch active: the session is cut"
            await self._refuse(message, flow, rpc.DENIED, text, kill_switch=True)
        elif outcome == "inactive":
            flow.status, flow.reason = 403, self.follower.inactive()
            text = f"TameFlare: `{flow.action}`: {flow.reason}: it was not forwarded"
            await self._refuse(message, flow, rpc.DENIED, text, error="agent_inactive")
        elif outcome == "outage":
            flow.status, flow.reason = 503, self.contact.unheard()
            text = f"TameFlare: `{flow.action}`: control_plane_unreachable: {flow.reason}"
            await self._refuse(message, flow, rpc.DENIED, text, error="control_plane_unreachable")
        elif outcome != "gone":
            flow.status = 408 if outcome == "timeout" else 403
            flow.reason = _HOLD_ERRORS[outcome]
            text = f"TameFlare: `{flow.action}`: {flow.reason} (approval `{flow.approval_id}`)"
            await self._refuse(message, flow, rpc.APPROVAL, text, approval_id=flow.approval_id)
        self._record(flow)

    def _cancels_hold(self, message: Any) -> bool:
        """A ``notifications/cancelled`` for a held request ends the hold (not forwarded:
        the server never saw that request)."""
        if not isinstance(message, dict) or message.get("method") != "notifications/cancelled":
            return False
        params = message.get("params")
        key = rpc.id_key(params.get("requestId")) if isinstance(params, dict) else ""
        found = self.held.get(key)
        if found is None:
            return False
        found[0].cancel()
        return True

    # -- server -> client ----------------------------------------------------------------

    async def _server_pump(self) -> None:
        stdout = self.child.stdout
        assert stdout is not None
        while True:
            line = await read_message(stdout)
            if line is None:
                break
            if isinstance(line, TooLarge):
                print(f"tf mcp wrap: server message over {self.options.limit} bytes dropped",
                      file=sys.stderr)  # fmt: skip
                continue
            try:
                await self.from_server(line)
            except Exception as exc:  # a bad server line never ends the session
                print(f"tf mcp wrap: server message dropped: {exc}", file=sys.stderr)
        code = await self.child.wait()
        if not self.closing:
            await self.server_died(code)

    async def from_server(self, line: bytes) -> None:
        if self.scrubber is not None:
            line, _ = self.scrubber.scrub(line)
        try:
            message = parse_json(line, connector="mcp")
        except AgentFirewallError:
            text = line[:200].decode("utf-8", "replace")
            print(f"tf mcp wrap: server wrote a line that is not JSON (dropped): {text}",
                  file=sys.stderr)  # fmt: skip
            return
        if message is None:
            return
        members = message if isinstance(message, list) else [message]
        kept = [m for m in members if not self._too_late(m)]
        if not kept:
            return
        changed = len(kept) != len(members)
        for member in kept:
            changed = self._answered(member) or changed
        out = kept if isinstance(message, list) else kept[0]
        await self._write(rpc.dumps(out) if changed else line + b"\n")

    def _too_late(self, member: Any) -> bool:
        """An answer to a request refused since it was forwarded (cut): dropped, the client
        has its refusal."""
        if not isinstance(member, dict) or "method" in member or "id" not in member:
            return False
        key = rpc.id_key(member["id"])
        if key not in self.cut_off:
            return False
        self.cut_off.discard(key)
        return True

    def _answered(self, member: Any) -> bool:
        """Track a response to a client request; filter tools/list. True when changed."""
        if not isinstance(member, dict) or "method" in member or "id" not in member:
            return False
        method = self.inflight.pop(rpc.id_key(member["id"]), None)
        result = member.get("result")
        if method != "tools/list" or self.options.show_denied or not isinstance(result, dict):
            return False
        tools = result.get("tools")
        if not isinstance(tools, list):
            return False
        kept = [
            t
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("name"), str)
            and self.gate.tool_visible(t["name"])
        ]  # fmt: skip
        result["tools"] = kept
        return len(kept) != len(tools)

    async def _stderr_pump(self) -> None:
        """The server's stderr to ours, scrubbed, read in chunks (a line may be of any
        length: a secret split between two reads is still found)."""
        stderr = self.child.stderr
        assert stderr is not None
        stream = self.scrubber.stream() if self.scrubber is not None else None
        while chunk := await stderr.read(_STDERR_READ):
            sys.stderr.buffer.write(chunk if stream is None else stream.feed(chunk))
            sys.stderr.flush()
        if stream is not None:
            sys.stderr.buffer.write(stream.finish())
            sys.stderr.flush()

    # -- ending --------------------------------------------------------------------------

    async def _fail_all(self, code: int, text: str, data: dict[str, Any]) -> None:
        """Answer every unanswered request (forwarded or held) with one error."""
        ids = [json.loads(key) for key in self.inflight]
        self.inflight.clear()
        for task, held_ids in list(self.held.values()):
            task.cancel()
            ids.extend(held_ids)
        self.held.clear()
        for request_id in dict.fromkeys(rpc.id_key(i) for i in ids):
            await self._write(rpc.error(json.loads(request_id), code, text, data))

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
        self.closing = True
        text = f"TameFlare: kill switch active: the session is cut ({reason})"
        print(f"tf mcp wrap: {text}", file=sys.stderr)
        data = {"reason": "kill_switch_active", "rule": "kill_switch", "kill_switch": True}
        await self._fail_all(rpc.DENIED, text, data)
        self._finish(1)

    async def _client_closed(self) -> None:
        """EOF from the client: the server gets EOF too and the session ends with it."""
        stdin = self.child.stdin
        if stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                stdin.close()
        self.closing = True
        try:
            code = await asyncio.wait_for(self.child.wait(), self.options.term_grace)
        except TimeoutError:
            code = 0
        self._finish(max(code, 0))

    async def cut_unanswered(self, reason: str, error: str, outcome: HoldOutcome) -> None:
        """Refuse every unanswered request (as the gateway cuts its exchanges): held ones
        end with `outcome`; forwarded ones are answered now and cancelled at the server
        (its answer, should it come, is dropped)."""
        for flow in self.holds.flows():
            self.holds.kill(flow, outcome)
        if not self.inflight:
            return
        print(f"tf mcp wrap: {reason}: {len(self.inflight)} unanswered request(s) refused",
              file=sys.stderr)  # fmt: skip
        text = f"TameFlare: {error}: {reason}: the request was cut"
        forwarded, self.inflight = self.inflight, {}
        for key, method in forwarded.items():
            self.cut_off.add(key)
            request_id = json.loads(key)
            data = {"error": error, "reason": reason}
            await self._write(rpc.error(request_id, rpc.DENIED, text, data))
            if method != "initialize":  # (which a client must never cancel)
                self._to_server(rpc.cancelled(request_id, reason))
        await self._server_drained()
