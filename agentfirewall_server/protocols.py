"""What the parts below the composition read of it, named as Protocols.

`state.AppState` composes the server: store, hub, metrics, vault, snapshot, HTTP client,
the Slack notifier and the background tasks. The parts it starts sit below it and never
import it: the approvals' publishing and expiry loop (`approvals`), the audit checkpoints
(`checkpointer`), Slack (`notify.slack`) and the shared events (`pgevents`) each take a
`Services`, which `AppState` satisfies (mypy checks it where `state.py` hands itself over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import httpx
    from sqlalchemy import Connection

    from agentfirewall.tokens import SigningKey
    from agentfirewall_server.hub import Hub
    from agentfirewall_server.metrics import Metrics
    from agentfirewall_server.settings import Settings
    from agentfirewall_server.snapshot import Snapshot
    from agentfirewall_server.store.db import Database
    from agentfirewall_server.vault import Keyring

__all__ = ["Notifier", "Services"]

T = TypeVar("T")


class Notifier(Protocol):
    """Tells people about approvals (`notify.slack.SlackNotifier`)."""

    async def on_created(self, row: dict[str, Any]) -> None: ...

    async def on_decided(self, row: dict[str, Any]) -> None: ...


class Services(Protocol):
    """The composed server as the parts it starts see it (`state.AppState`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def hub(self) -> Hub: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def vault(self) -> Keyring: ...

    @property
    def signing_key(self) -> SigningKey: ...

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def slack(self) -> Notifier: ...

    async def reload(self) -> None:
        """Re-read the configuration snapshot from the store."""

    async def follow_version(self) -> None:
        """Reload when the stored version moved; the snapshot is then confirmed current."""

    async def change_config(self, fn: Callable[[Connection], T]) -> T:
        """Run a configuration write (bumping the version), then reload and notify."""
        ...
