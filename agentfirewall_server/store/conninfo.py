"""A plain psycopg connection string for the store's PostgreSQL database.

The shared events (`pgevents`) and the shared rate limiter (`ratelimit`) open their own
psycopg connections, outside SQLAlchemy's pool, to the database the store's engine uses.
"""

from __future__ import annotations

from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine

__all__ = ["libpq_conninfo"]


def libpq_conninfo(engine: Engine, application_name: str) -> str:
    """The connection string of `engine`'s database, for a plain psycopg connection."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    params = {k: v for k, v in params.items() if k != "context"}
    return make_conninfo(**params, application_name=application_name)
