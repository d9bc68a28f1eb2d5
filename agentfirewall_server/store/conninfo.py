"""A plain psycopg connection string for the store's PostgreSQL database.

The shared events (`pgevents`) and the shared rate limiter (`ratelimit`) open their own
psycopg connections, outside SQLAlchemy's pool, to the database the store's engine uses.

A connection attempt gives up after ``connect_timeout`` seconds, and TCP keepalives find a
peer that went away (a network partition, a host that died) instead of waiting on its
socket for good; the database URL's own values win (``?connect_timeout=3``). A database
that is up but does not answer (a frozen process) is not seen by either: the callers bound
their own waits.
"""

from __future__ import annotations

from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine

__all__ = ["CONNECTION_DEFAULTS", "libpq_conninfo"]

#: libpq parameters set unless the URL sets them: give up connecting after 10 s; probe an
#: idle connection after 30 s, every 10 s, and drop it after 3 unanswered probes.
CONNECTION_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def libpq_conninfo(
    engine: Engine, application_name: str, *, statement_timeout: float | None = None
) -> str:
    """The connection string of `engine`'s database, for a plain psycopg connection;
    `statement_timeout` (seconds): the server ends a statement that runs longer."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    params = {k: v for k, v in params.items() if k != "context"}
    params = {**CONNECTION_DEFAULTS, **params, "application_name": application_name}
    if statement_timeout is not None:
        option = f"-c statement_timeout={round(statement_timeout * 1000)}"
        params["options"] = f"{params.get('options', '')} {option}".strip()
    return make_conninfo(**params)
