"""Alembic environment: the connection comes from the caller (store.migrate)."""

from __future__ import annotations

from alembic import context

from agentfirewall_server.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only programmatic use is supported
    raise RuntimeError("run migrations through agentfirewall_server.store.migrate.upgrade")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
