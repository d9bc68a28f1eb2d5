"""Databases as an earlier version left them, for the tests of a migration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from agentfirewall_server.store.db import Database
from agentfirewall_server.store.migrate import upgrade

__all__ = ["stored_at"]


def stored_at(database_url: str, revision: str, rows: dict[Table, list[dict[str, Any]]]) -> None:
    """Migrate the database at `database_url` to `revision` only and store `rows` in it
    (table -> its rows): an app started on it next runs the migrations after `revision`."""
    db = Database(database_url)
    try:
        with db.writer_engine.connect() as conn:
            upgrade(conn, revision)
            for table, stored in rows.items():
                conn.execute(table.insert(), stored)
            conn.commit()
    finally:
        db.close()
