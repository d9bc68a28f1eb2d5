"""Client to server: every message (a batch is one message) is named and decided by the
:class:`~agentfirewall_proxy.mcpwrap.gate.Gate`, recorded as traffic, then:

- allowed: forwarded as the relay re-serialised it (the server reads exactly what was
  decided: no duplicate keys, no alternative encodings);
- denied: answered with a JSON-RPC error naming the action, the rule and the reason (a
  denied notification is dropped);
- held: by :mod:`~agentfirewall_proxy.mcpwrap.holding` (``notifications/cancelled`` for a
  held request ends the hold; the other requests of a held batch are then refused).

A line that cannot be read as a message (over the size limit, not JSON, an id whose answer
could not be told apart, ``null`` among them) is refused and recorded too.

Content guardrails (a policy reads ``content.*``): each message is scanned as it would be
forwarded and decided with what was found, as at the gateway; a ``redact`` rule's
detections are replaced before it is forwarded (held: once approved), or it is refused
when they cannot be (:mod:`~agentfirewall_proxy.mcpwrap.contentguard`).

Budgets (connector ``mcp``) count here as over HTTP, with the gateway's ``Budgets``: an
allowed message a budget covers is debited before it is forwarded (spent once forwarded:
a tool call that was sent counts, whatever the server answers), refused past a ``deny``
budget or held past a ``require_approval`` one, and refused when the budget cannot be
checked (the control plane unreachable: fail closed). A held message (by a rule or a
budget) is reserved as if approved before it is held, in the gateway's order: past a
``deny`` budget it is refused before an approval is recorded or a grant's use is spent.
Policy conditions on ``budget.<name>.*`` read the same state.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any

from agentfirewall.connectors.bodies import parse_json
from agentfirewall.content import content_attributes
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.contact import ContactWatch
from agentfirewall_proxy.flow import Flow, Refusal
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.contentguard import redact_request, scan_request
from agentfirewall_proxy.mcpwrap.framing import TooLarge, read_message
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.holding import Holding
from agentfirewall_proxy.mcpwrap.pending import Pending
from agentfirewall_proxy.mcpwrap.session import Session

__all__ = ["FromClient"]


def _denial_text(flow: Flow) -> str:
    decision = flow.decision
    reason = decision.reason if decision else "denied"
    rule = rpc.rule_of(decision)
    text = f"TameFlare denied `{flow.action or 'unnamed message'}`: {reason}"
    return text + (f" (rule `{rule}`)" if rule else "")


@dataclass
class FromClient:
    session: Session
    gate: Gate
    budgets: Budgets
    contact: ContactWatch
    pending: Pending
    holding: Holding
    limit: int
    #: Each message's traffic record id: this prefix, then its number in the session.
    _prefix: str = field(init=False, default_factory=lambda: f"mcp_{secrets.token_hex(4)}")
    _count: int = field(init=False, default=0)

    async def pump(self, reader: asyncio.StreamReader) -> None:
        """Every message the client writes, until it closes stdin or the session ends."""
        session = self.session
        while not session.closing:
            line = await read_message(reader)
            if line is None:
                await session.client_closed()
                return
            if isinstance(line, TooLarge):  # not read: its id from its first bytes, else null
                text = f"message over the {self.limit}-byte limit: not relayed"
                self._record_unread("/too-large", line.size, text)
                await session.write(rpc.error(self._unread_id(line), rpc.INVALID, text))
                continue
            try:
                await self.receive(line)
            except Exception as exc:  # one bad message never ends the session
                print(f"tf mcp wrap: message refused: {exc}", file=sys.stderr)
                await session.write(rpc.error(None, rpc.INVALID, "message could not be relayed"))

    async def receive(self, line: bytes) -> None:
        """One line from the client: read, named, decided, then forwarded, refused or held."""
        session = self.session
        if not line.strip():
            return
        try:
            message = parse_json(line, connector="mcp")
        except AgentFirewallError as exc:
            self._record_unread("/not-json", len(line), str(exc))
            await session.write(rpc.error(None, rpc.PARSE_ERROR, str(exc)))
            return
        hold_cancelled = self.pending.cancel_hold(message)
        if hold_cancelled is not None:  # the rest of the held batch (if any) is refused
            cancelled, others = hold_cancelled
            text = (f"TameFlare: request {rpc.id_key(cancelled)[:60]} of this held batch was "
                    "cancelled by the client: the batch was not forwarded")  # fmt: skip
            data = {"error": "batch_cancelled", "cancelled": cancelled}
            for request_id in others:
                await session.write(rpc.error(request_id, rpc.APPROVAL, text, data))
            return
        why = self.pending.untrackable(message)
        if why is not None:  # its answer could not be told apart: refused, recorded
            self._record_unread("/bad-id", len(line), why)
            await session.write(rpc.error(None, rpc.INVALID, why))
            return
        kill = self.gate.kill_switch()
        if kill is not None:
            await session.cut(kill)
            return
        flow = self._flow(message, len(line))
        if self.contact.lost:  # the config in force may miss a kill switch: fail closed
            await self._unreachable(message, flow)
            return
        config = self.gate.config
        scanner = config.guard.request if config is not None else None
        if scanner is not None:  # a policy reads content fields: what would be sent, scanned
            flow.findings = tuple(scan_request(scanner, message))
            flow.content = content_attributes(list(flow.findings))
        attributes: dict[str, object] = dict(flow.content or {})
        parsed, decision = self.gate.decide(message, attributes)
        flow.parsed, flow.decision = parsed, decision
        flow.action = parsed.spec.type if parsed else None
        if parsed is not None and config is not None and config.budget_fields:
            try:  # a policy condition reads `budget.<name>.*`: decided again with them
                attributes = {**await self.budgets.attributes(), **attributes}
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            parsed, decision = self.gate.decide(message, attributes)
            flow.parsed, flow.decision = parsed, decision
        outgoing = message
        if decision.outcome != "deny" and flow.content:
            try:  # a `redact` rule matched: forwarded with what it names replaced
                outgoing = redact_request(self.gate, flow, message, attributes)
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
        if decision.outcome == "allow" and parsed is not None:
            try:
                held = await self._reserve(flow, force=False)
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            if held is not None:  # a `require_approval` budget: held like a rule's hold
                decision = flow.decision = held
        if decision.outcome == "allow":
            await session.forward(outgoing, flow)
        elif decision.outcome == "require_approval" and parsed is not None:
            try:  # reserved as if approved (as at the gateway): a `deny` budget refuses
                await self._reserve(flow, force=True)  # before anyone is asked or a grant used
            except Refusal as exc:
                await self._refused(message, flow, exc)
                return
            self.holding.hold(message, flow, outgoing)
        else:
            flow.status = 403
            await session.refuse(message, flow, rpc.DENIED, _denial_text(flow))
            session.record(flow)

    async def _reserve(self, flow: Flow, *, force: bool) -> Decision | None:
        config = self.gate.config
        if config is None or not config.budgets:
            return None
        return await self.budgets.reserve(config.budgets, flow, force=force)

    async def _refused(self, message: Any, flow: Flow, exc: Refusal) -> None:
        """A budget refused or could not be checked: answered, recorded, nothing forwarded."""
        flow.status, flow.reason = exc.status, exc.message
        text = f"TameFlare: `{flow.action or 'unnamed message'}`: {exc.message}"
        await self.session.refuse(message, flow, rpc.DENIED, text, error=exc.error)
        self.session.record(flow)

    async def _unreachable(self, message: Any, flow: Flow) -> None:
        """Refused: no word from the control plane for longer than ``--max-config-age``."""
        flow.parsed, _ = self.gate.decide(message)  # (named for the record)
        flow.action = flow.parsed.spec.type if flow.parsed else None
        reason = self.contact.unheard()
        flow.decision = Decision("deny", reason, decided_outcome="deny")
        flow.status, flow.reason = 503, reason
        text = f"TameFlare: control_plane_unreachable: {reason}: refused until it answers"
        await self.session.refuse(
            message, flow, rpc.DENIED, text, error="control_plane_unreachable"
        )
        self.session.record(flow)

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

    def _unread_id(self, skipped: TooLarge) -> str | int | None:
        """The id of a request too large to read, from its first bytes, when its answer
        can be told apart (an id no unanswered request uses), else None (JSON-RPC's id
        when it cannot be read): the client's request gets its answer."""
        head = rpc.read_head(skipped.head)
        is_request, request_id = rpc.request_id(head)
        if not is_request or self.pending.untrackable(head) is not None:
            return None
        return request_id if isinstance(request_id, str | int) else None

    def _record_unread(self, path: str, size: int, reason: str) -> None:
        """A client line refused before it was read as a message (not JSON, over the
        limit): recorded too, as every client message is."""
        flow = self._flow(None, size)
        flow.path, flow.status, flow.reason = path, 400, reason
        flow.decision = Decision("deny", reason, decided_outcome="deny")
        self.session.record(flow)
