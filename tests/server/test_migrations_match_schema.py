"""The migrations build exactly the schema the code declares (`store/schema.py`), on both
engines: a column, index or constraint added to one and not the other is caught here, not
by a user's upgraded database behaving unlike a fresh one."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade
from agentfirewall_server.store.schema import metadata


def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn)
            conn.commit()
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        db.close()
    assert differences == []
