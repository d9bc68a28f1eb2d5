"""The SDK's action requests as stored: one row with the approval that held it.

Read by the agent API (`routes/actions.py`: status, wait) and by the execute route
(`routes/execute.py`), which claims the row before it runs the action.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from agentfirewall_server.store.schema import action_requests, approvals

__all__ = ["load_action"]


def load_action(conn: Connection, action_id: str) -> dict[str, Any] | None:
    """The action request `action_id` as a dict, its approval row under ``approval_row``."""
    row = conn.execute(select(action_requests).where(action_requests.c.id == action_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["approval_row"] = None
    if row.approval_id:
        apv = conn.execute(select(approvals).where(approvals.c.id == row.approval_id)).first()
        out["approval_row"] = dict(apv._mapping) if apv else None
    return out
