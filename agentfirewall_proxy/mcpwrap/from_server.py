"""Server to client: everything is relayed (responses, notifications, server requests such
as sampling or elicitation) after the injected credentials are scrubbed out; answers to
``tools/list`` lose the tools the agent may not call (unless ``show_denied``); an answer to
a request refused since it was forwarded (cut) is dropped; one over the size limit is not
relayed, the request it answers gets an error instead. The server's stderr goes to ours,
scrubbed too. When the server exits, the session is told (every unanswered request gets an
error saying so).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from agentfirewall.connectors.bodies import parse_json
from agentfirewall.errors import AgentFirewallError
from agentfirewall_proxy.mcpwrap import messages as rpc
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

    async def pump(self) -> None:
        """Every message the server writes, until it exits."""
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            line = await read_message(stdout)
            if line is None:
                break
            if isinstance(line, TooLarge):
                await self._too_large(line)
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
            text = line[:200].decode("utf-8", "replace")
            print(f"tf mcp wrap: server wrote a line that is not JSON (dropped): {text}",
                  file=sys.stderr)  # fmt: skip
            return
        if message is None:
            return
        members = message if isinstance(message, list) else [message]
        kept = [m for m in members if not self.pending.too_late(m)]
        if not kept:
            return
        changed = len(kept) != len(members)
        for member in kept:
            changed = self._answered(member) or changed
        out = kept if isinstance(message, list) else kept[0]
        await self.session.write(rpc.dumps(out) if changed else line + b"\n")

    async def _too_large(self, skipped: TooLarge) -> None:
        """A message over the limit is not relayed; when its first bytes show it answers a
        forwarded request, that request is answered with an error (never left waiting)."""
        text = f"server message over the {self.limit}-byte limit (--max-message): not relayed"
        print(f"tf mcp wrap: {text}", file=sys.stderr)
        head = rpc.read_head(skipped.head)
        request_id = head.get("id")
        if not isinstance(request_id, str | int) or self.pending.too_late(head):
            return  # (an answer to a request refused since: the client has its refusal)
        if self.pending.answered(head) is not None:
            data = {"error": "too_large", "size": skipped.size}
            await self.session.write(rpc.error(request_id, rpc.INVALID, f"TameFlare: {text}", data))

    def _answered(self, member: Any) -> bool:
        """Track a response to a client request; filter tools/list. True when changed."""
        if self.pending.answered(member) != "tools/list" or self.show_denied:
            return False
        result = member.get("result")
        if not isinstance(result, dict):
            return False
        return rpc.filter_tools(result, self.gate.tool_visible)

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
