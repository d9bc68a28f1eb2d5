"""What the parts of one stdio session reach it for: the follower, each direction and the
holds are handed the session as this Protocol (the
:class:`~agentfirewall_proxy.mcpwrap.relay.Relay` is it), so none of them imports the relay.
"""

from __future__ import annotations

from typing import Any, Protocol

from agentfirewall_proxy.approvals import HoldOutcome
from agentfirewall_proxy.flow import Flow

__all__ = ["Session"]


class Session(Protocol):
    #: Set once the session ends: nothing more is read, nothing more is waited for.
    closing: bool

    async def write(self, data: bytes) -> None:
        """To the client (a client gone ends the session)."""

    async def forward(self, message: Any, flow: Flow) -> None:
        """To the server, as decided: its requests tracked, `flow` recorded, its budget
        debit spent."""

    async def refuse(self, message: Any, flow: Flow, code: int, text: str, **extra: object) -> None:
        """Answer each member of `message` that expects an answer with this error."""

    def record(self, flow: Flow) -> None:
        """`flow` as a traffic record."""

    async def cut(self, reason: str) -> None:
        """A kill switch covers the session: it ends."""

    async def cut_unanswered(self, reason: str, error: str, outcome: HoldOutcome) -> None:
        """Refuse every unanswered request; held ones end with `outcome`."""

    async def client_closed(self) -> None:
        """EOF from the client: the session ends."""

    async def server_died(self, code: int) -> None:
        """The server exited: every unanswered request is told, the session ends."""
