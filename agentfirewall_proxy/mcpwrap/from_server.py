"""Server to client: everything is relayed (responses, notifications, server requests such
as sampling or elicitation) after the injected credentials are scrubbed out; answers to
``tools/list`` lose the tools the agent may not call (unless ``show_denied``; an answer to a
``tools/list`` the client cancelled too); an answer to a request refused since it was
forwarded (cut) is dropped; one over the size limit, or that cannot be read, is not
relayed, the request it answers gets an error instead. The server's stderr goes to ours,
scrubbed too. When the server exits, the session is told (every unanswered request gets an
error saying so).

Where a policy reads ``response.*``, each message is checked before it is relayed
(:mod:`~agentfirewall_proxy.mcpwrap.contentguard`): a cut answer becomes an error answer
(-32001, ``data.error: "response_blocked"``), a cut server request is answered to the
server with that error (never left waiting), a cut notification is dropped; a redacted one
goes on rewritten. Each message on which detectors fired is recorded (path
``/<method>/answer``, or ``/server/<method>`` for the server's own), with the verdict.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentfirewall.connectors.bodies import parse_json
from agentfirewall.content import Scanner
from agentfirewall.decisions import Decision
from agentfirewall.errors import AgentFirewallError
from agentfirewall_proxy.flow import Flow
from agentfirewall_proxy.mcpwrap import messages as rpc
from agentfirewall_proxy.mcpwrap.contentguard import Checked, check_response
from agentfirewall_proxy.mcpwrap.framing import TooLarge, read_message
from agentfirewall_proxy.mcpwrap.gate import Gate
from agentfirewall_proxy.mcpwrap.pending import Pending
from agentfirewall_proxy.mcpwrap.session import Session
from agentfirewall_proxy.scrub import Scrubber

__all__ = ["FromServer"]

#: Bytes of the server's stderr read at a time (a line may be of any length).
_STDERR_READ = 1 << 16


@dataclass
class FromServer:
    session: Session
    process: asyncio.subprocess.Process
    gate: Gate
    pending: Pending
    #: Takes the injected credentials out of everything the server writes.
    scrubber: Scrubber | None
    show_denied: bool
    limit: int
    #: Writes to the server (an answer to its own request that a response rule cut).
    to_server: Callable[[bytes], bool]
    #: The traffic record id of a server message that answers no request: this prefix,
    #: then its number in the session.
    _prefix: str = field(init=False, default_factory=lambda: f"mcp_{secrets.token_hex(4)}s")
    _count: int = field(init=False, default=0)

    async def pump(self) -> None:
        """Every message the server writes, until it exits."""
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            line = await read_message(stdout)
            if line is None:
                break
            if isinstance(line, TooLarge):
                text = (f"server message over the {self.limit}-byte limit (--max-message): "
                        "not relayed")  # fmt: skip
                await self._unread(line.head, text, {"error": "too_large", "size": line.size})
                continue
            try:
                await self.receive(line)
            except Exception as exc:  # a bad server line never ends the session
                print(f"tf mcp wrap: server message dropped: {exc}", file=sys.stderr)
        code = await self.process.wait()
        if not self.session.closing:
            await self.session.server_died(code)

    async def receive(self, line: bytes) -> None:
        if self.scrubber is not None:
            line, _ = self.scrubber.scrub(line)
        try:
            message = parse_json(line, connector="mcp")
        except AgentFirewallError:
            shown = line[:200].decode("utf-8", "replace")
            text = f"server wrote a line that is not JSON (dropped): {shown}"
            await self._unread(line[:4096], text, {"error": "unreadable"})
            return
        if message is None:
            return
        members = message if isinstance(message, list) else [message]
        kept = [m for m in members if not self.pending.too_late(m)]
        config = self.gate.config
        scanner = config.guard.response if config is not None else None
        changed = len(kept) != len(members) or scanner is not None  # (checked: as read)
        out = []
        for member in kept:
            asked = self.pending.answering(member)
            changed = self._filtered(member, asked) or changed
            relayed = member if scanner is None else await self._checked(scanner, member, asked)
            if relayed is not None:
                out.append(relayed)
        if not out:
            return
        found = out if isinstance(message, list) else out[0]
        await self.session.write(rpc.dumps(found) if changed else line + b"\n")

    async def _unread(self, head: bytes, text: str, data: dict[str, Any]) -> None:
        """A server message not relayed (over the limit, not readable): when its first
        bytes show it answers a forwarded request, that request is answered with an error
        (never left waiting)."""
        print(f"tf mcp wrap: {text}", file=sys.stderr)
        found = rpc.read_head(head.decode("utf-8", "replace").encode())  # (its id, in any case)
        request_id = found.get("id")
        if not isinstance(request_id, str | int) or self.pending.too_late(found):
            return  # (an answer to a request refused since: the client has its refusal)
        if self.pending.answered(found) is not None:
            await self.session.write(rpc.error(request_id, rpc.INVALID, f"TameFlare: {text}", data))

    def _filtered(self, member: Any, asked: tuple[str, Flow | None] | None) -> bool:
        """Filter an answer to a ``tools/list``; True when changed."""
        if asked is None or asked[0] != "tools/list" or self.show_denied:
            return False
        result = member.get("result")
        if not isinstance(result, dict):
            return False
        return rpc.filter_tools(result, self.gate.tool_visible)

    async def _checked(
        self, scanner: Scanner, member: Any, asked: tuple[str, Flow | None] | None
    ) -> Any:
        """`member` as relayed after the response rules (None: nothing goes to the client)."""
        flow = asked[1] if asked is not None else None
        checked = check_response(self.gate, scanner, member, flow)
        if checked.note:
            self._record(member, asked, checked)
        if checked.outcome != "cut":
            return checked.message
        action = flow.action if flow is not None and flow.action else "mcp.stream.open"
        data = {"action": action, "rule": checked.rule or None, "reason": checked.note,
                "error": "response_blocked"}  # fmt: skip
        text = f"TameFlare: `{action}`: {checked.note}"
        is_request, request_id = rpc.request_id(member)
        if is_request:  # the server's own request: it gets the refusal, the client nothing
            self.to_server(rpc.error(request_id, rpc.DENIED, text, data))
            return None
        if isinstance(member, dict) and "id" in member and "method" not in member:
            data["request_id"] = flow.request_id if flow is not None else None
            return rpc.error_message(member["id"], rpc.DENIED, text, data)
        return None  # a notification: dropped

    def _record(self, member: Any, asked: tuple[str, Flow | None] | None, checked: Checked) -> None:
        """A server message on which detectors fired, as a traffic record: the verdict."""
        flow = asked[1] if asked is not None else None
        method = member.get("method") if isinstance(member, dict) else None
        if asked is not None:
            path = f"/{asked[0]}/answer"
        else:
            path = f"/server/{method if isinstance(method, str) else 'answer'}"
        if flow is not None:  # (its request's id, marked: the two rows go together)
            request_id = f"{flow.request_id}r"
        else:
            self._count += 1
            request_id = f"{self._prefix}{self._count:x}"
        cut = checked.outcome == "cut"
        record = Flow(
            request_id=request_id,
            method="MCP",
            scheme="stdio",
            host=self.gate.server_name,
            path=path[:2000],
            agent=self.gate.agent(),
            connector=self.gate.connector,
            status=502 if cut else 200,
            reason=checked.note,
            bytes_in=len(rpc.dumps(member)),
        )
        record.action = flow.action if flow is not None and flow.action else "mcp.stream.open"
        record.decision = Decision(
            "deny" if cut else "allow",
            checked.note,
            matched_rules=(checked.rule,) if checked.rule else (),
            decided_outcome="deny" if checked.decided == "cut" else "allow",
        )
        record.handed_off = record.started
        self.session.record(record)

    async def copy_stderr(self) -> None:
        """The server's stderr to ours, scrubbed, read in chunks (a line may be of any
        length: a secret split between two reads is still found)."""
        stderr = self.process.stderr
        assert stderr is not None
        stream = self.scrubber.stream() if self.scrubber is not None else None
        while chunk := await stderr.read(_STDERR_READ):
            sys.stderr.buffer.write(chunk if stream is None else stream.feed(chunk))
            sys.stderr.flush()
        if stream is not None:
            sys.stderr.buffer.write(stream.finish())
            sys.stderr.flush()
