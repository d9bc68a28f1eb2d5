"""The vault: its keys and their use, and online key rotation (``tf vault rotate``).

``POST /api/v1/vault/rotate`` starts (or, after a crash, resumes) a rotation in the
running server and answers 202 at once; ``GET /api/v1/vault`` shows its progress. New
secrets are sealed with the new key as soon as it is installed; re-sealing runs in
batches through the store's writer (rotate.py). Only one rotation runs at a time; it ends
with a new configuration version, and the keys it retired are forgotten from memory only
after the snapshot holding the re-sealed credentials is served.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import now, rfc3339
from agentfirewall_server.keystore import where_looked
from agentfirewall_server.rotate import Progress, forget_retired, run_rotation
from agentfirewall_server.state import AppState
from agentfirewall_server.vaultcheck import keys_in_use
from agentfirewall_server.web import ApiError, check_query, json_ok, no_body

__all__ = ["routes"]

log = logging.getLogger("agentfirewall_server")


@dataclass(slots=True)
class Rotation:
    progress: Progress
    started_at: float
    state: str = "running"  # running | done | failed
    finished_at: float | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "state": self.state,
            "key_id": p.key_id,
            "total": p.total,
            "resealed": p.resealed,
            "batches": p.batches,
            "retired_keys": p.pruned,
            "unreadable": p.unreadable,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "error": self.error,
        }


async def _run(state: AppState, rotation: Rotation, actor: str) -> None:
    before = state.vault.key_id
    outcome, error = "done", None
    try:
        await asyncio.to_thread(
            run_rotation,
            state.settings,
            state.vault,
            state.db.write_sync,
            new_key=None,
            progress=rotation.progress,
        )
    except Exception as exc:
        outcome, error = "failed", str(exc)
        log.warning("vault rotation failed: %s", exc)
    p = rotation.progress
    if p.unreadable:
        log.warning("vault rotation: not re-sealed, they do not decrypt: %s", p.unreadable)
    data = {
        "from": before,
        "to": p.key_id,
        "resealed": p.resealed,
        "state": outcome,
        "unreadable": p.unreadable,
    }
    try:
        # a new configuration version: this replica (and every other one) reloads the
        # re-sealed ciphertexts; only then are the retired keys forgotten, as the snapshot
        # before still needed them (another replica never forgets a key it holds)
        await state.change_config(
            lambda c: append_event(
                c, "vault.rotated", actor=actor, now=now(), subject="vault", data=data
            )
        )
        forget_retired(state.vault, p.pruned, state.snapshot.credentials.values())
    except Exception:  # the server is stopping: a re-run finishes and records it
        log.warning("vault rotation: could not record the outcome", exc_info=True)
    rotation.state, rotation.error, rotation.finished_at = outcome, error, now()


async def rotate(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    await no_body(request)
    state = state_of(request)
    current: Rotation | None = state.rotation
    if current is not None and current.state == "running":
        return json_ok({"rotation": current.to_dict()}, 202)
    in_use = await state.db.read(keys_in_use)
    pending = sum(n for k, n in in_use.items() if k != state.vault.key_id)
    if state.settings.encryption_key is not None and pending == 0:
        raise ApiError(
            409,
            "the key comes from SETTINGS_ENCRYPTION_KEY: set it to the new key and "
            "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS to the old one, restart the server, "
            "then rotate again to re-seal every credential",
            code="key_from_environment",
        )
    rotation = Rotation(Progress(state.vault.key_id), now())
    state.rotation = rotation
    rotation.task = asyncio.create_task(_run(state, rotation, who.actor))
    return json_ok({"rotation": rotation.to_dict()}, 202)


async def show(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "admin")
    state = state_of(request)
    in_use = await state.db.read(keys_in_use)
    current = state.vault.key_id
    rotation: Rotation | None = state.rotation
    keys = sorted(set(state.vault.keys) | set(in_use))
    return json_ok(
        {
            "current_key_id": current,
            "key_source": "environment" if state.settings.encryption_key else "file",
            "looked_in": where_looked(state.settings),
            "keys": [
                {
                    "key_id": k,
                    "current": k == current,
                    "in_keyring": k in state.vault.keys,
                    "credentials": in_use.get(k, 0),
                }
                for k in keys
            ],
            "credentials": sum(in_use.values()),
            "pending": sum(n for k, n in in_use.items() if k != current),
            "rotation": rotation.to_dict() if rotation else None,
            "unreadable": [
                {"owner": owner, **problem} for owner, problem in state.vault_problems.items()
            ],
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/vault", show, methods=["GET"]),
        Route("/api/v1/vault/rotate", rotate, methods=["POST"]),
    ]
