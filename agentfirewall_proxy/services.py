"""What one exchange and one client connection use of the running gateway: a protocol.

``exchange.py``, ``respond.py``, ``guarded.py`` and ``connection.py`` sit below
``gateway.py`` (which calls them), so they name the gateway by this protocol, never by its
class: the state it holds (options, the compiled config, the upstream pool, the holds, the
budgets, the token broker, the certificates) and the bookkeeping of flows in progress
(for the kill switch) and of flows done (the hooks). :class:`~agentfirewall_proxy.gateway.
Gateway` implements it; mypy checks that it does where the gateway passes itself down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agentfirewall_proxy.approvals import Holds
    from agentfirewall_proxy.budgets import Budgets
    from agentfirewall_proxy.certs import CertStore
    from agentfirewall_proxy.client import ClientConnection
    from agentfirewall_proxy.entries import AgentEntry
    from agentfirewall_proxy.flow import Abortable, Flow, Refusal
    from agentfirewall_proxy.http1 import Head
    from agentfirewall_proxy.injection import TokenBroker
    from agentfirewall_proxy.options import Options
    from agentfirewall_proxy.parking import Parked
    from agentfirewall_proxy.snapshot import CompiledConfig
    from agentfirewall_proxy.tracing import FlowTracer
    from agentfirewall_proxy.upstream import UpstreamPool

__all__ = ["Services"]


class Services(Protocol):
    """The running gateway as the request path sees it (``gateway.Gateway``)."""

    # -- state ---------------------------------------------------------------------------

    @property
    def options(self) -> Options: ...

    @property
    def config(self) -> CompiledConfig | None: ...

    @property
    def pool(self) -> UpstreamPool: ...

    @property
    def holds(self) -> Holds: ...

    @property
    def budgets(self) -> Budgets: ...

    @property
    def tokens(self) -> TokenBroker: ...

    @property
    def certs(self) -> CertStore: ...

    @property
    def tracer(self) -> FlowTracer | None: ...

    @property
    def connections(self) -> set[ClientConnection]: ...

    @property
    def stats(self) -> dict[str, int]: ...

    # -- identity and decisions ----------------------------------------------------------

    def new_request_id(self) -> str: ...

    def require_config(self) -> CompiledConfig: ...

    async def look_again(self) -> CompiledConfig: ...

    def check_port_agent(self, conn: ClientConnection, agent: AgentEntry) -> None: ...

    def is_passthrough(self, host: str) -> bool: ...

    def check_kill_switch(self, flow: Flow, head: Head | None = None) -> None: ...

    def check_forward(self, flow: Flow) -> None: ...

    def approval_timeout(self, flow: Flow) -> float: ...

    def refusal_body(self, flow: Flow, exc: Refusal) -> dict[str, Any]: ...

    # -- flows in progress and done --------------------------------------------------------

    def park(self, parked: Parked, seconds: float) -> None: ...

    def begin(self, flow: Flow, conn: ClientConnection) -> None: ...

    def attach(self, flow: Flow, up: Abortable) -> None: ...

    def end(self, flow: Flow) -> None: ...

    def record(self, flow: Flow) -> None: ...

    def decided(self, flow: Flow) -> None: ...

    # -- messages ------------------------------------------------------------------------

    def say(self, message: str, level: str = "info") -> None: ...
