"""Org settings: approval timeout, default enforcement level, gateway URL, Slack (write-only).

The gateway URL is a note for people (what agents' owners are told, the integration guide's
migration step 3): nothing reads it. Beside it, `gateways_online` says where the gateways
heard from lately listen, from their own heartbeats.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Connection, delete, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.decisions import normalize_level
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import metrics_public, require_role, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.grants import revoke_unlinked
from agentfirewall_server.routes.connectors import check_url
from agentfirewall_server.routes.system import GATEWAY_ONLINE_SECONDS
from agentfirewall_server.snapshot import put_setting
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import credentials, users
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, read_model

__all__ = ["SLACK_SECRET_OWNERS", "gateways_online", "routes", "settings_json"]

SLACK_SECRET_OWNERS = ("settings:slack_bot_token", "settings:slack_signing_secret")
_Level = Literal["monitor", "soft_enforce", "full_enforce", "L0", "L1", "L2"]
#: A Slack member id (``U…``, ``W…`` on Enterprise Grid) and the TameFlare user it acts as.
_SlackId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,30}$")]
_Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class SettingsPatch(Strict):
    approval_timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    default_enforcement_level: _Level | None = None
    gateway_url: str | None = Field(default=None, max_length=2048)
    slack_channel: str | None = Field(default=None, max_length=80)
    slack_bot_token: str | None = Field(default=None, max_length=4096)
    slack_signing_secret: str | None = Field(default=None, max_length=4096)
    metrics_public: bool | None = None
    #: who may click Approve / Deny in Slack: member id -> user email (``{}``: nobody)
    slack_approvers: dict[_SlackId, _Email] | None = Field(default=None, max_length=1000)


def settings_json(state: AppState) -> dict[str, Any]:
    snap = state.snapshot
    configured = all(owner in snap.credentials for owner in SLACK_SECRET_OWNERS)
    return {
        "approval_timeout_seconds": int(
            snap.settings.get("approval_timeout_seconds") or state.settings.approval_timeout_seconds
        ),
        "default_enforcement_level": snap.settings["default_enforcement_level"],
        "gateway_url": snap.settings.get("gateway_url"),
        "gateways_online": gateways_online(state),
        "metrics_public": metrics_public(state),
        "slack": {
            "channel": snap.settings.get("slack_channel"),
            "configured": configured and bool(snap.settings.get("slack_channel")),
            "approvers": dict(snap.settings.get("slack_approvers") or {}),
        },
    }


def gateways_online(state: AppState) -> list[str]:
    """The proxy URLs (`http://127.0.0.1:8444`) of the gateways heard from in the last
    `GATEWAY_ONLINE_SECONDS`, each as its heartbeat's `listen` address names it."""
    stamp = now()
    heard = [
        str(g["info"].get("listen") or "")
        for g in state.gateways.values()
        if stamp - g["last_heartbeat"] < GATEWAY_ONLINE_SECONDS
    ]
    return sorted({url for url in map(_proxy_url, heard) if url})


def _proxy_url(listen: str) -> str | None:
    """``HOST:PORT`` (``::1:8443``, ``[::1]:8443``) as ``http://HOST:PORT``; None when it
    is not one."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isascii() or not port.isdigit():
        return None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def get_settings(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok(settings_json(state_of(request)))


async def patch_settings(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    body = await read_model(request, SettingsPatch)
    state = state_of(request)
    plain: dict[str, Any] = body.model_dump(
        exclude_none=True, exclude={"slack_bot_token", "slack_signing_secret"}
    )
    if "default_enforcement_level" in plain:
        plain["default_enforcement_level"] = normalize_level(plain["default_enforcement_level"])
    if "slack_approvers" in plain:
        plain["slack_approvers"] = {k: v.lower() for k, v in plain["slack_approvers"].items()}
    secrets = {
        "settings:slack_bot_token": body.slack_bot_token,
        "settings:slack_signing_secret": body.slack_signing_secret,
    }
    if not plain and not any(v is not None for v in secrets.values()):
        raise ApiError(422, "nothing to change: send at least one setting")
    if plain.get("gateway_url"):  # "" clears it (the dashboard's empty field)
        check_url(
            plain["gateway_url"],
            "gateway_url",
            "which every viewer would read: give the gateway's address alone"
            " (`http(s)://host[:port]`); an agent's key goes in its own proxy settings"
            " (`tf run` sets them)",
        )

    def job(conn: Connection) -> None:
        stamp = now()
        _check_approvers(conn, plain.get("slack_approvers") or {})
        for key, value in plain.items():
            put_setting(conn, key, value)
        for owner, value in secrets.items():
            if value is None:
                continue
            conn.execute(delete(credentials).where(credentials.c.owner == owner))
            if value:
                conn.execute(
                    credentials.insert().values(
                        owner=owner,
                        ciphertext=state.vault.encrypt(value, owner=owner),
                        created_at=stamp,
                    )
                )
        changed = sorted(plain) + [o.split(":")[1] for o, v in secrets.items() if v is not None]
        ended = _end_unlinked_grants(conn, plain, actor=who.actor, stamp=stamp)
        append_event(
            conn,
            "settings.updated",
            actor=who.actor,
            now=stamp,
            subject="settings",
            data={"changed": changed, **ended},
        )

    await state.change_config(job)
    return json_ok(settings_json(state))


def _check_approvers(conn: Connection, approvers: dict[str, str]) -> None:
    """Each Slack approver names a user (422 naming the member id otherwise)."""
    known = set(conn.execute(select(users.c.email)).scalars())
    for slack_id, email in sorted(approvers.items()):
        if email not in known:
            raise ApiError(422, f"no user `{email}` for the Slack member `{slack_id}`",
                           field=f"slack_approvers.{slack_id}")  # fmt: skip


def _end_unlinked_grants(
    conn: Connection, plain: dict[str, Any], *, actor: str, stamp: float
) -> dict[str, list[str]]:
    """After the Slack links are written (same transaction): revoke the grants made through
    a link that is gone or now names another user, listed as `grants_revoked` for the
    `settings.updated` event (nothing when the links were not written or none ended)."""
    if "slack_approvers" not in plain:
        return {}
    revoked = revoke_unlinked(conn, actor=actor, now=stamp)
    return {"grants_revoked": revoked} if revoked else {}


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/settings", get_settings, methods=["GET"]),
        Route("/api/v1/settings", patch_settings, methods=["PATCH"]),
    ]
