"""Run the Alembic migrations programmatically, on a given connection.

Alembic is imported only when a migration runs (or is asked about): loading it and its
scripts costs a start a few hundred milliseconds, and a database already at
:func:`head_revision` (every start but the first after an upgrade) needs none of it.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

__all__ = ["alembic_config", "head_revision", "upgrade"]

_HERE = Path(__file__).parent / "migrations"
#: ``revision = "0007"`` / ``down_revision = None`` at the start of a line, as Alembic writes
#: them (an annotation allowed); the value is read with ``ast.literal_eval``.
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Upgrade the schema reachable through `conn` to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(conn), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest revision this version ships, read from the migration scripts' text
    (Alembic not loaded): the one no other script names as its ``down_revision``. None
    when the scripts do not say it plainly (a merge, a computed id, two heads): whoever
    asks then lets Alembic decide. A test checks it against Alembic's own answer."""
    follows: dict[str, str | None] = {}  # revision -> its down_revision
    for script in (_HERE / "versions").glob("*.py"):
        if script.name.startswith(("_", ".#")):  # as Alembic skips them
            continue
        found = _ASSIGNMENT.findall(script.read_text(encoding="utf-8"))
        values = dict(found)
        if len(found) != 2 or len(values) != 2:
            return None
        try:
            revision = ast.literal_eval(values["revision"])
            down = ast.literal_eval(values["down_revision"])
        except (ValueError, SyntaxError):
            return None
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        if revision in follows:
            return None
        follows[revision] = down
    heads = set(follows) - set(follows.values())
    roots = [rev for rev, down in follows.items() if down is None]
    dangling = {down for down in follows.values() if down is not None} - set(follows)
    if len(heads) != 1 or len(roots) != 1 or dangling:
        return None
    return heads.pop()
