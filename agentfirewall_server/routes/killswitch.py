"""The kill switch: owner only; scope all, a connector type or an agent name; audited.

A scope reads one way only (`resolve_scope`), for activating and deactivating alike, and
names something real or is refused: a bare name that is an agent's and a connector type's,
a bare name that is neither, an agent name no agent can bear (`ALL`, `Connector:x`), and a
connector name that stops nothing meant (`connector:*`, a blank at either end, an invisible
or full-width character, `connector:GitHub`). An agent's id stands for its name.

Activating it is in force once the switch's row and event are committed (the configuration
is published then); the pending approvals it covers are denied after that, a page per writer
job (`approvals.sweep_covered`), and by the expiry loop's sweep should a restart cut it
short. Meanwhile none of them can be approved (`approvals.decide_approval`).
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Connection, delete, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.display import visible
from agentfirewall.policy import KillSwitch
from agentfirewall_server.agentnames import name_key, name_problem, read_as, shown_problem, twin_of
from agentfirewall_server.approvals import sweep_covered
from agentfirewall_server.audit import append_event
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.clock import now
from agentfirewall_server.routes.connectors import DOCUMENTED_TYPES
from agentfirewall_server.state import AppState
from agentfirewall_server.store.schema import kill_switches
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, read_model

__all__ = ["routes"]


class KillBody(Strict):
    active: bool
    scope: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)


def resolve_scope(state: AppState, scope: str | None, *, lifting: bool = False) -> tuple[str, str]:
    """`all`, `agent:NAME`, `connector:TYPE`, or a bare connector type or agent name.

    A scope reads one way only: `all` is every agent (no agent may be named so; one stored
    before is `agent:all`), and a bare name that is an agent's and a connector type's too is
    refused (`_bare_kind`). The switch is checked as the core builds it from the store
    (`KillSwitch`): a scope it would refuse (``agent:`` naming nobody) is 422 here, never a
    stored configuration that no process can read (which would deny every action). An
    agent's target must name one (`_agent_target`); `lifting`: an active switch's target
    counts as one (a switch set for an agent not registered yet, or by an earlier version)."""
    if scope is None or scope == "all":
        return "all", ""
    kind: Literal["connector", "agent"]
    if scope.startswith("agent:"):
        kind, target = "agent", scope.removeprefix("agent:")
    elif scope.startswith("connector:"):
        kind, target = "connector", scope.removeprefix("connector:")
    else:
        kind, target = _bare_kind(state, scope), scope
    try:
        KillSwitch(scope=kind, target=target or None)
    except ValueError as exc:
        raise ApiError(422, f"invalid `scope` `{scope}`: {exc}", field="scope") from None
    if kind == "agent":
        target = _agent_target(state, scope, target, lifting=lifting)
    elif kind == "connector":
        target = _connector_target(state, scope, target, lifting=lifting)
    return kind, target


def _bare_kind(state: AppState, name: str) -> Literal["connector", "agent"]:
    """A connector type (documented or configured), else an agent name; 422 when an agent
    bears the type's name: read either way, it would stop (or lift) what was not meant."""
    snap = state.snapshot
    if name not in DOCUMENTED_TYPES and name not in snap.connector_types():
        return "agent"
    if name in snap.agents_by_name:
        raise ApiError(
            422,
            f"ambiguous `scope` `{name}`: it names an agent and a connector type: write"
            f" `agent:{name}` or `connector:{name}`",
            field="scope",
        )
    return "connector"


def _agent_target(state: AppState, scope: str, target: str, *, lifting: bool) -> str:
    """The agent name a switch stops: an agent's id (`agt_...`) is read as its name, a
    stored agent's name (or, `lifting`, an active switch's target) as itself. Else 422:
    a name no agent can bear (`name_problem`) would stop no one, whatever is registered
    later, and so would a bare name that names nothing (a typo: an agent not registered
    yet is stopped as `agent:NAME`, on purpose)."""
    snap = state.snapshot
    agent = snap.agents_by_id.get(target) if target.startswith("agt_") else None
    if agent is not None:
        return agent.name
    if target in snap.agents_by_name or (
        lifting and any(r["scope"] == "agent" and r["target"] == target for r in snap.kill_switches)
    ):
        return target
    live = (a.name for a in snap.agents_by_id.values() if a.status != "revoked")
    if target.startswith("agt_"):
        problem = f"no agent has the id `{target}`"
    elif (why := name_problem(target)) is not None:
        problem = f"no agent is named `{target}` and none can be ({why}){_meant(target)}"
    elif (twin := twin_of(target, live)) is not None:
        problem = (
            f"no agent is named `{target}` and none can be while `{twin}` reads the same:"
            f" write `agent:{twin}`"
        )
    elif scope.startswith("agent:"):
        return target  # an agent not registered yet, stopped on purpose
    else:
        problem = (
            f"no agent or connector type is named `{target}`: to stop an agent not"
            f" registered yet, write `agent:{target}`"
        )
    raise ApiError(422, f"invalid `scope` `{scope}`: {problem}", field="scope")


def _connector_target(state: AppState, scope: str, target: str, *, lifting: bool) -> str:
    """The connector a switch stops: a connector type, or any provider an SDK action may
    name (case-sensitive, free-form), but not a name that stops nothing meant: 422 for `*`
    (no wildcard here: `all` stops every action), one that does not show all it holds
    (`shown_problem`: a blank at either end, an invisible character), one that reads as
    another (NFKC: `github` in full-width letters) and one that reads or shows as a
    documented or configured connector type but is not it (`GitHub`, or `github` with a
    Cyrillic letter for its `i`: no connector sends such a provider's actions), each with
    the scope it most likely meant. `lifting`: an active switch's target counts (one an
    earlier version stored)."""
    snap = state.snapshot
    types = sorted({*DOCUMENTED_TYPES, *snap.connector_types()})
    if target in types or (
        lifting
        and any(r["scope"] == "connector" and r["target"] == target for r in snap.kill_switches)
    ):
        return target
    folded = " ".join(
        "".join(c for c in unicodedata.normalize("NFKC", target) if visible(c) == c).split()
    )
    key = name_key(folded)
    meant = next((t for t in types if read_as(t) == read_as(folded) or name_key(t) == key), folded)
    write = f": write `connector:{meant}`" if meant else ""
    if "*" in folded:
        problem = "`*` is no wildcard of a scope: write `all` to stop every action"
    elif (why := shown_problem(target)) is not None:
        problem = f"no connector is named `{target}` and none can be ({why}){write}"
    elif meant != target:
        problem = f"`{target}` reads as `{meant}` but is not it{write}"
    else:
        return target  # a provider of SDK actions
    raise ApiError(422, f"invalid `scope` `{scope}`: {problem}", field="scope")


def _meant(name: str) -> str:
    """The scope a name no agent can bear most likely meant (`ALL`: `all`)."""
    kind, colon, rest = unicodedata.normalize("NFKC", name).partition(":")
    if read_as(name) == "all":
        return ": write `all` to stop every agent"
    if colon and read_as(kind) in ("agent", "connector"):
        return f": write `{read_as(kind)}:{rest.strip()}`"
    return ""


async def list_kill(request: Request) -> JSONResponse:
    check_query(request)
    await require_role(request, "viewer")
    return json_ok({"active": state_of(request).snapshot.switches_json()})


async def set_kill(request: Request) -> JSONResponse:
    who = await require_role(request, "owner")
    body = await read_model(request, KillBody)
    state = state_of(request)
    if body.active:
        scope, target = resolve_scope(state, body.scope)
        await state.change_config(_activate(scope, target, body.reason, who.actor))
    else:
        await state.change_config(_deactivate(state, body.scope, who.actor))
    denied = await sweep_covered(state) if body.active else 0  # in force already
    active = state.snapshot.switches_json()
    state.hub.publish("kill_switch", {"active": active})
    return json_ok({"active": active, "approvals_denied": denied})


def _activate(scope: str, target: str, reason: str, actor: str) -> Any:
    def job(conn: Connection) -> None:
        stamp = now()
        conn.execute(
            delete(kill_switches).where(
                kill_switches.c.scope == scope, kill_switches.c.target == target
            )
        )
        conn.execute(
            kill_switches.insert().values(
                scope=scope,
                target=target,
                reason=reason or "kill switch",
                activated_by=actor,
                activated_at=stamp,
            )
        )
        append_event(
            conn,
            "kill_switch.activated",
            actor=actor,
            now=stamp,
            agent=target if scope == "agent" else None,
            subject=scope,
            data={"scope": scope, "target": target or None, "reason": reason},
        )

    return job


def _deactivate(state: AppState, scope_text: str | None, actor: str) -> Any:
    where = None if scope_text is None else resolve_scope(state, scope_text, lifting=True)

    def job(conn: Connection) -> None:
        rows = conn.execute(select(kill_switches)).all()
        chosen = [r for r in rows if where is None or (r.scope, r.target) == where]
        if not chosen and where is not None:
            raise ApiError(404, f"no active kill switch for `{scope_text}`")
        for r in chosen:
            conn.execute(
                delete(kill_switches).where(
                    kill_switches.c.scope == r.scope, kill_switches.c.target == r.target
                )
            )
            append_event(
                conn,
                "kill_switch.deactivated",
                actor=actor,
                now=now(),
                agent=r.target if r.scope == "agent" else None,
                subject=r.scope,
                data={"scope": r.scope, "target": r.target or None},
            )

    return job


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/kill-switch", list_kill, methods=["GET"]),
        Route("/api/v1/kill-switch", set_kill, methods=["POST"]),
    ]
