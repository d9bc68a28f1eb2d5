"""An agent and a connector as a compiled snapshot holds them (``snapshot.py`` builds them).

Plain frozen records, below everything that names them: a flow carries one of each
(``flow.Flow``), the snapshot indexes them, the request path reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfirewall.connectors import Connector
    from agentfirewall.credentials import Injector
    from agentfirewall.decisions import EnforcementLevel
    from agentfirewall_proxy.scrub import Scrubber

__all__ = ["AgentEntry", "ConnectorEntry"]


@dataclass(frozen=True, slots=True)
class AgentEntry:
    id: str
    name: str
    status: str
    level: EnforcementLevel
    proxy_port: int | None
    name_header: bytes


@dataclass(frozen=True, slots=True)
class ConnectorEntry:
    id: str
    type: str
    name: str
    domains: tuple[str, ...]
    impl: Connector
    base_url: str | None
    has_credential: bool
    #: Headers added to every forwarded request (the connector credential).
    auth_headers: tuple[tuple[bytes, bytes], ...]
    #: Lowercase names of the agent's headers removed before forwarding.
    auth_header_names: frozenset[bytes]
    body_limit: int
    #: Finds every form of the injected credential in responses (None: nothing injected).
    scrubber: Scrubber | None = None
    #: A computed credential (SigV4, GitHub App, OAuth2): headers made per request.
    injector: Injector | None = None
