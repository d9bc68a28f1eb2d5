"""The store: SQLAlchemy Core tables, migrations and the single-writer database."""

from __future__ import annotations

from agentfirewall_server.store.db import Database, StoreError
from agentfirewall_server.store.schema import metadata

__all__ = ["Database", "StoreError", "metadata"]
