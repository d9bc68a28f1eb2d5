"""Learn from recorded decisions: ``POST /api/v1/policies/replay`` replays them under a
candidate configuration, ``GET /api/v1/permissions/suggest`` proposes access rules.

The candidate replaces the live policies and/or permissions (either left out: the live
ones); both configurations are evaluated on the same recorded inputs by the pure engine
(``agentfirewall.policy.replay``, an SDK action as live decides it: with its build alias)
and the verdict changes come back counted, with the rules responsible and examples. The
candidate's documents are parsed and compiled in a worker thread (``policies.off_loop``).

A caller who reads stored inputs masked (a viewer: ``shownspec.sees_as_sent``) replays them
as read (:func:`as_viewer_reads`): a candidate's rules are an oracle on every value they
read (``starts_with: alice``, counted, with the record's id), so a value masked for the
caller is withheld from their replay, absent to every rule, and the record counted
``partial``. A suggestion proposes no rule on a connector no rule can name (an SDK agent
names its provider: ``*``, a glob, a control or invisible character), counted ``skipped``
(the closing deny covers those calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Container
from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agentfirewall.actions import Risk
from agentfirewall.connectors import ConnectorError, get_connector, performed_as
from agentfirewall.decisions import normalize_outcome
from agentfirewall.errors import PolicyError
from agentfirewall.policy import AccessRule, Engine, Policy, load_policy
from agentfirewall.policy.record import withheld_values
from agentfirewall.policy.replay import Recorded, replay
from agentfirewall.policy.suggest import suggest_rules
from agentfirewall_server.auth import require_role, state_of
from agentfirewall_server.replaystore import AgentRows, Records, build_engine
from agentfirewall_server.routes.permissions import check_names
from agentfirewall_server.routes.policies import off_loop
from agentfirewall_server.routes.shownspec import masked_input, sees_as_sent
from agentfirewall_server.snapshot import Snapshot
from agentfirewall_server.state import AppState
from agentfirewall_server.web import ApiError, Strict, check_query, json_ok, read_model

__all__ = ["CandidatePermission", "as_viewer_reads", "candidate_permissions", "routes"]

_DAY = 86400
_NAME = Annotated[str, Field(min_length=1, max_length=200)]


class CandidatePermission(Strict):
    agent: str = Field(min_length=1, max_length=200)
    connector: str = Field(min_length=1, max_length=80)
    action_pattern: str = Field(min_length=1, max_length=300)
    decision: Literal["allow", "deny", "require_approval", "requires_approval"]


class ReplayBody(Strict):
    policies: list[Annotated[str, Field(min_length=1, max_length=512 * 1024)]] | None = Field(
        default=None, max_length=200
    )
    permissions: list[CandidatePermission] | None = Field(default=None, max_length=10_000)
    since_seconds: int = Field(default=7 * _DAY, ge=1, le=366 * _DAY)
    agents: list[_NAME] | None = Field(default=None, max_length=100)
    examples: int = Field(default=5, ge=0, le=100)
    limit: int = Field(default=200_000, ge=1, le=1_000_000)


def _policies(texts: list[str]) -> list[Policy]:
    out = []
    for index, text in enumerate(texts):
        try:
            out.append(load_policy(text))
        except PolicyError as exc:
            raise ApiError(
                422, f"invalid policy {index}: {exc}", field=f"policies.{index}", line=exc.line
            ) from None
    return [p for p in out if p.enabled]


def candidate_permissions(
    rules: list[CandidatePermission], agents: Container[str]
) -> list[AccessRule]:
    """The access rules of a candidate (or shadow) set; 422 naming the first invalid one,
    with names checked as live ones are (`check_names`: `agents`, the names known)."""
    out = []
    for index, r in enumerate(rules):
        check_names(agents, r.agent, r.connector, at=f"permissions.{index}.")
        try:
            rule = AccessRule(
                r.agent, r.connector, r.action_pattern, normalize_outcome(r.decision),
                id=f"candidate-{index}",
            )  # fmt: skip
        except ValueError as exc:
            raise ApiError(
                422, f"invalid permission {index}: {exc}", field=f"permissions.{index}"
            ) from None
        out.append(rule)
    return out


def _engines(snapshot: Snapshot, body: ReplayBody) -> tuple[Engine, Engine]:
    """The live configuration and the candidate, compiled."""
    policies = None if body.policies is None else _policies(body.policies)
    permissions = (
        None
        if body.permissions is None
        else candidate_permissions(body.permissions, snapshot.agents_by_name)
    )
    return build_engine(snapshot), build_engine(snapshot, policies, permissions)


def _aliased(item: Recorded) -> Recorded:
    """An SDK record with the action its build alias runs as (decided under both live)."""
    performed = performed_as(item.spec) if item.ctx.mode == "sdk" else None
    return item if performed is None else dataclasses.replace(item, performed=performed)


def as_viewer_reads(data: dict[str, Any]) -> dict[str, Any]:
    """A stored decision input as a viewer reads it (``shownspec.masked_input``), for their
    replay: each value masking changes (an email address, a card number, a token) or renames
    withheld, its name under ``"w"``, in each action of ``"x"`` too."""
    shown: dict[str, Any] = withheld_values(data, _masked_for_viewer)
    return shown


def _masked_for_viewer(key: str, name: str, value: object) -> bool:
    return not _shown_as_is(key, name, value)


def _shown_as_is(key: str, name: str, value: object) -> bool:
    """Whether a viewer reads the value `name` holds in part `key` of a record as it is
    (each value is masked under its name alone, so the answer is remembered: a replay
    reads the same values again and again). `true`, `false` and `null` are never masked."""
    if value is None or isinstance(value, bool):
        return True
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return _read_as_is(key, name, text)


@functools.lru_cache(maxsize=16384)
def _read_as_is(key: str, name: str, text: str) -> bool:
    shown = masked_input({"t": "", key: {name: json.loads(text)}}).get(key)
    return isinstance(shown, dict) and list(shown) == [name] and shown[name] == json.loads(text)


async def replay_route(request: Request) -> JSONResponse:
    """Replay recorded decisions under a candidate configuration: the verdict changes."""
    who = await require_role(request, "viewer")
    body = await read_model(request, ReplayBody)
    state = state_of(request)
    snapshot = state.snapshot
    baseline, candidate = await off_loop(request, lambda: _engines(snapshot, body))
    since = time.time() - body.since_seconds
    agents = AgentRows.of(snapshot, body.agents) if body.agents else None
    shown = None if sees_as_sent(who) else as_viewer_reads

    def job(conn: Connection) -> dict[str, Any]:
        records = Records(conn, since, agents, body.limit, shown)
        started = time.perf_counter()
        aliased = map(_aliased, records)
        report = replay(aliased, baseline, candidate, examples=body.examples).to_dict()
        report["seconds"] = round(time.perf_counter() - started, 3)
        # live verdicts no replay gives (a kill switch's, a budget's its record does not
        # name): not compared for drift, counted here by what gave them
        report["outside_rules"] = dict(sorted(records.outside_rules.items()))
        return report

    async with _one_at_a_time(state):
        result = await state.db.read(job)
    result["since_seconds"] = body.since_seconds
    return json_ok(result)


def _since(request: Request) -> int:
    raw = request.query_params.get("since_seconds", str(7 * _DAY))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 366 * _DAY:
        raise ApiError(400, f"`since_seconds` must be 1 to {366 * _DAY}, not `{raw[:40]}`",
                       field="since_seconds")  # fmt: skip
    return value


def _catalogue(connector: str) -> dict[str, Risk] | None:
    try:
        return {a.type: a.risk for a in get_connector(connector).actions()}
    except ConnectorError:
        return None  # an SDK provider without a connector: exact names only


async def suggest_route(request: Request) -> JSONResponse:
    """Access rules for one agent that would have let its observed traffic through."""
    await require_role(request, "viewer")
    check_query(request, "agent", "since_seconds")
    agent = request.query_params.get("agent", "")
    if not 1 <= len(agent) <= 200:
        raise ApiError(400, "`agent` is required (an agent name)", field="agent")
    since = time.time() - _since(request)
    state = state_of(request)
    wanted = AgentRows.of(state.snapshot, [agent])  # the rules are the name's: its agent's now

    def job(conn: Connection) -> Counter[tuple[str, str, Any]]:
        return Counter((r.ctx.connector, r.spec.type, r.ctx.risk)
                       for r in Records(conn, since, wanted) if r.ctx.connector)  # fmt: skip

    async with _one_at_a_time(state):
        observed = await state.db.read(job)  # how many calls of each kind: not each call
    named = Counter({o: n for o, n in observed.items() if _nameable(o[0])})
    catalogues = {c: found for c in {o[0] for o in named} if (found := _catalogue(c))}
    calls = itertools.chain.from_iterable(itertools.repeat(o, n) for o, n in named.items())
    rules = suggest_rules(agent, calls, catalogues)
    return json_ok({"agent": agent, "observed": observed.total(),
                    "skipped": observed.total() - named.total(),
                    "rules": [r.to_dict() for r in rules]})  # fmt: skip


def _nameable(connector: str) -> bool:
    """Whether an access rule can name `connector` alone, as ``POST /api/v1/permissions``
    takes it (`check_names`): not `*` (every connector), no glob, nothing hidden. An SDK
    agent names its provider: a rule on what it made up would grant more than it did, or
    be refused half way through ``--apply``."""
    if connector == "*":
        return False
    try:
        check_names((), "*", connector)
    except ApiError:
        return False
    return True


#: The replays (and suggestions) running, per server: one at a time, each reading the whole
#: window on one of the store's readers, so that the others stay free for everyone else.
_RUNNING: weakref.WeakKeyDictionary[AppState, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _one_at_a_time(state: AppState) -> AsyncIterator[None]:
    """Run the body while no other replay or suggestion runs on this server; 429 at once
    when one does (a replay over a long window takes seconds to minutes)."""
    lock = _RUNNING.setdefault(state, asyncio.Lock())
    if lock.locked():
        raise ApiError(
            429,
            "another replay or suggestion is running on this server: try again when it ends",
            code="replay_busy",
            headers={"Retry-After": "5"},
        )
    async with lock:
        yield


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/policies/replay", replay_route, methods=["POST"]),
        Route("/api/v1/permissions/suggest", suggest_route, methods=["GET"]),
    ]
