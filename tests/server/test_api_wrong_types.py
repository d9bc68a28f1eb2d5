"""A JSON value of the wrong type is refused on every field of every body (docs/api.md,
"Input limits").

The API reads bodies strictly (``web.parse_model``): a string is not a number, a float is
not an integer, ``null`` is no value of a field that does not take it, an integer past 64
bits, ``NaN`` and a NUL character in text are no field's, an unknown field is refused.
This walk proves it for every route, not for a sample:

- the routes come from the app's own table, and the model each one reads is seen by
  spying on ``parse_model`` (a route that reads no JSON body is listed in
  ``NO_JSON_BODY`` with why; a route neither seen nor listed fails the walk, as does one
  without a seed its model and the route accept);
- each field of that model, nested ones too (read from its JSON schema), gets every value
  of a JSON type its schema does not allow, set into its route's seed body (``SEEDS``);
- each answer must be 400/422 ``invalid_request`` naming the field (dotted path), and
  no row of any table and no configuration version may have changed.

CI walks every other route on each engine (the odd ones on SQLite, the even ones on
PostgreSQL: every route once, ``tests/slices.py``); ``nox -s fuzz`` walks every route on
both.

The query parameters each route reads are found the same way (spying on
``query_params``), and each gets values of the wrong kind (``QUERY_VALUES``): a non-number
is refused with 400 naming it, a number out of range is refused or clamped, never a 5xx.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import Connection, select
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from agentfirewall.actions import ActionSpec, action_hash
from agentfirewall_server import web
from agentfirewall_server.app import create_app
from agentfirewall_server.clock import parse_time, rfc3339
from agentfirewall_server.store.schema import metadata
from tests.server.apiwalk import SEEDS as FUZZ_SEEDS
from tests.server.conftest import Harness, make_settings
from tests.slices import FUZZ_ALL_ENV, engine_half

SPEC = {
    "type": "webhook.post",
    "resource": {
        "provider": "webhook",
        "account": "acme",
        "target": "https://hooks.example.com/a",
        "environment": "test",
    },
    "parameters": {"method": "POST", "body": {"k": [1, 2.5, None, True]}},
    "risk_hints": {"irreversible": False},
}
_APPROVAL = {
    "agent": "Fuzz",
    "connector": "webhook",
    "action_spec": SPEC,
    "action_hash": action_hash(SPEC),
    "risk_score": 10.0,
    "reason": "held",
    "request": {
        "method": "POST",
        "host": "hooks.example.com",
        "path": "/a",
        "query": "q=1",
        "content_type": "application/json",
        "content_encoding": "gzip",
        "body_size": 10,
        "body_sha256": "1" * 64,
        "body_preview": "{}",
        "digest": "2" * 64,
    },
    "timeout_seconds": 60,
    "approver_roles": ["admin"],
}
_HOLD_DELETES = (
    "name: hold-deletes\nrules:\n- name: r\n  conditions:\n"
    "    all:\n    - {field: action_spec.type, operator: equals, value: x.y.delete}\n"
    "  decision: require_approval\n"
)
_POLICY = {"document": _HOLD_DELETES.replace("hold-deletes", "seeded")}
_SETTLE = {"reservation": "bres_x", "ok": True, "model": "gpt-4o", "usage": {"input": 1}}
_REPORT = {"lease": "bls_x", "spent": {"daily": 1.0}, "freed": 0.0, "done": False}
_RULE = {"agent": "Fuzz", "connector": "webhook", "action_pattern": "*", "decision": "allow"}

#: A valid body per route (the fuzzer's, with every optional container filled so that the
#: fields nested in it are walked too).
SEEDS: dict[str, Any] = FUZZ_SEEDS | {
    "/api/v1/actions": {"action_spec": SPEC},
    "/api/v1/actions/dry-run": {"action_spec": SPEC},
    "/api/v1/approvals/{id}/approve": {
        "note": "ok",
        "grant": {"for_seconds": 60, "max_uses": 1, "where": ["amount<=10"]},
    },
    "/api/v1/gateway/approvals": _APPROVAL,
    "/api/v1/gateway/approvals/batch": {"approvals": [_APPROVAL]},
    "/api/v1/gateway/heartbeat": {
        "gateway_id": "g1",
        "version": "1",
        "listen": "127.0.0.1:8443",
        "agent_ports": {"Fuzz": 9000},
        "agent_port_range": [9000, 9010],
        "started_at": "2026-01-01T00:00:00Z",
        "stats": {},
    },
    "/api/v1/gateway/traffic": {
        "records": [
            {
                "request_id": "r1",
                "agent": "Fuzz",
                "connector": "webhook",
                "action": "webhook.post",
                "method": "POST",
                "host": "hooks.example.com",
                "path": "/a",
                "decision": "allow",
                "would_outcome": "would_deny",
                "status_code": 200,
                "latency_ms": 1.5,
                "bytes_in": 10,
                "bytes_out": 20,
                "reason": "r",
                "created_at": "2026-01-01T00:00:00Z",
                "input": {},
            }
        ]
    },
    "/api/v1/budgets/{name}": {
        "agents": ["Fuzz"],
        "connector": "webhook",
        "action": "webhook.*",
        "measure": "count",
        "window": "calendar_day",
        "timezone": "UTC",
        "limit": 10.0,
        "outcome": "deny",
        "description": "d",
    },
    "/api/v1/llm-prices": {"prices": {"gpt-x*": {"input": 1.0, "output": 2.0}}},
    "/api/v1/gateway/budgets/reserve": {
        "request_id": "r1",
        "agent": "Fuzz",
        "connector": "webhook",
        "action": "webhook.post",
        "parameters": {},
        "force": False,
    },
    "/api/v1/gateway/budgets/settle": _SETTLE,
    "/api/v1/gateway/budgets/settle/batch": {"settlements": [_SETTLE]},
    "/api/v1/gateway/budgets/lease": {
        "agent": "Fuzz",
        "connector": "webhook",
        "action": "webhook.post",
        "parameters": {},
        "want": {"daily": 1.0},
        "handback": [_REPORT],
    },
    "/api/v1/gateway/budgets/leases/report": {"reports": [_REPORT]},
    "/api/v1/policies": _POLICY,
    "/api/v1/policies/validate": _POLICY,
    "/api/v1/policies/{id}": _POLICY,
    "/api/v1/shadow/policies": _POLICY,
    "/api/v1/policies/replay": {
        "policies": [_HOLD_DELETES],
        "permissions": [_RULE],
        "since_seconds": 3600,
        "agents": ["Fuzz"],
        "examples": 1,
        "limit": 10,
    },
    "/api/v1/users/{id}": {"role": "viewer", "password": "password1"},
    "/dashboard/sandbox/evaluate": {"agent": "Fuzz", "action_spec": SPEC, "mode": "sdk"},
}

#: Free JSON fields a route validates with a model of its own after the body's: walked
#: with that model's schema.
LATER_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    "/api/v1/actions": {"action_spec": ActionSpec},
    "/api/v1/actions/dry-run": {"action_spec": ActionSpec},
    "/api/v1/gateway/approvals": {"action_spec": ActionSpec},
    "/dashboard/sandbox/evaluate": {"action_spec": ActionSpec},
}

#: POST/PUT/PATCH routes that read no JSON body, and why.
NO_JSON_BODY = {
    ("POST", "/api/v1/agents/{ident}/activate"): "a state change named by the path",
    ("POST", "/api/v1/agents/{ident}/revoke"): "a state change named by the path",
    ("POST", "/api/v1/agents/{ident}/rotate"): "a new key, nothing to say",
    ("POST", "/api/v1/agents/{ident}/suspend"): "a state change named by the path",
    ("POST", "/api/v1/audit/checkpoints"): "signs the chain head now",
    ("POST", "/api/v1/auth/logout"): "ends the caller's session",
    ("POST", "/api/v1/gateway/approvals/{id}/consume"): "marks the approval used",
    ("POST", "/api/v1/grants/{id}/revoke"): "a state change named by the path",
    ("POST", "/api/v1/integrations/slack/interactivity"): "a form body signed by Slack",
    ("POST", "/api/v1/policies/{id}/disable"): "a state change named by the path",
    ("POST", "/api/v1/policies/{id}/enable"): "a state change named by the path",
    ("POST", "/api/v1/policy-packs/{name}/install"): "the pack is named by the path",
    ("POST", "/api/v1/shadow/promote"): "promotes what is installed",
    ("POST", "/api/v1/vault/rotate"): "starts or resumes a rotation",
}

#: The kind of each query parameter a route reads, by name; `QUERY_KIND_AT` where a name
#: means something else on one route. A parameter of no kind fails the walk.
QUERY_KINDS = {
    "before": "count",  # an id to page from
    "hours": "count",
    "limit": "count",
    "since_seconds": "count",
    "timeout": "seconds",
    "wait": "seconds",
    "since": "time",
    "until": "time",
    **dict.fromkeys(["action", "agent", "connector", "decision", "event_type"], "text"),
    **dict.fromkeys(["format", "shadow", "status"], "text"),
}
QUERY_KIND_AT = {
    ("/api/v1/traffic", "status"): "count",  # an HTTP status
    ("/api/v1/gateway/config", "since"): "seconds",  # a configuration version (a number)
}
#: Values of each kind: (value, whether a clamp may take it). A value no clamp may take is
#: refused, 400 naming the parameter; one a clamp may take is refused or answered.
QUERY_VALUES: dict[str, list[tuple[str, bool]]] = {
    "count": [("abc", False), ("", False), ("1.5", False), ("1e3", False), ("nan", False),
              ("inf", False), ("0x10", False), ("0", True), ("-1", True), (str(2**64), True),
              ("9" * 5000, True)],
    "seconds": [("abc", False), ("", False), ("nan", False), ("-nan", False), ("1s", False),
                ("0", True), ("-1", True), ("inf", True), ("-inf", True), ("1e400", True),
                ("9" * 5000, True)],
    "time": [("abc", False), ("", False), ("nan", False), ("inf", False), ("-inf", False),
             ("1e400", False), ("2026-13-01T00:00:00Z", False), ("0", True), ("-1e300", True),
             ("9999-12-31T23:59:59-14:00", True), ("0001-01-01T00:00:00+14:00", True)],
    "text": [("zz", True), ("", True), ("%00", True), ("%ff%fe", True), ("x" * 5000, True),
             ("%F0%9F%98%80", True)],
}  # fmt: skip
#: Streams that never end: not called.
_STREAMS = {"/api/v1/events"}
#: The query every GET is sent with: a value for a required parameter, and a long-poll's
#: answer at once.
_DISCOVERY_QUERY_VALUES = {"agent": "Fuzz", "timeout": "0"}
_BODY_METHODS = ("PATCH", "POST", "PUT")
_PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")
_SENTINEL = "@@wrong-type@@"
_UNKNOWN = "zz_unknown_field"


# -- the routes ---------------------------------------------------------------------------


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app, mounts included."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            template = _PARAM.sub(r"{\1}", prefix + route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, template


@dataclass
class World:
    """An app with an agent, a connector, a policy, a user, an action and a pending
    approval for the path parameters to name."""

    harness: Harness
    agent_key: str
    ids: dict[str, str]
    auth: dict[tuple[str, str], str]  # (method, template) -> documented authentication

    @classmethod
    def build(cls, harness: Harness) -> World:
        key = harness.create_agent("Fuzz", sdk_default="allow", rate_limit_per_minute=1_000_000)
        harness.create_agent("Victim")
        assert harness.admin("POST", "/v1/permissions", json=_RULE).status_code == 200
        policy = harness.admin("POST", "/v1/policies", json={"document": _HOLD_DELETES}).json()
        connector = harness.admin(
            "POST",
            "/v1/connectors",
            json={"type": "sendgrid", "token": "SG.x"},  # a type with an option to PATCH
        ).json()
        user = harness.admin(
            "POST", "/v1/users", json={"email": "fuzz@example.com", "password": "password1"}
        ).json()
        action = harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).json()
        held = harness.agent(
            key, "POST", "/v1/actions", json={"action_spec": {"type": "x.y.delete"}}
        ).json()
        ids = {
            "ident": "Victim",
            "name": "daily",
            "lease": "rfl_unknown",
            "actions": action["action_request_id"],
            "approvals": held["approval"]["id"],
            "connectors": connector["id"],
            "grants": "gnt_unknown",
            "policies": policy["id"],
            "users": user["id"],
        }
        doc = harness.call("GET", "/api/openapi.json").json()
        auth = {
            (method.upper(), template): op["description"]
            for template, ops in doc["paths"].items()
            for method, op in ops.items()
        }
        return cls(harness, key, ids, auth)

    def routes(self) -> list[tuple[str, str]]:
        return sorted(set(_routes(list(self.harness.client.app.routes))))  # type: ignore[attr-defined]

    def path(self, template: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "id":  # the collection before it says which
                name = template[: match.start()].rstrip("/").rsplit("/", 1)[-1]
            return self.ids.get(name, "unknown")

        return _PARAM.sub(value, template)

    def token(self, method: str, template: str) -> str | None:
        described = self.auth.get((method, template), "admin token")
        if "agent key" in described:
            return self.agent_key
        if "gateway token" in described:
            return self.harness.gateway_token
        if "admin token" in described:
            return self.harness.admin_token
        return None

    def send(self, method: str, template: str, content: bytes, query: str = "") -> Any:
        path = self.path(template) + (f"?{query}" if query else "")
        headers = {"content-type": "application/json"}
        return self.harness.call(
            method, path, self.token(method, template), content=content, headers=headers
        )


@dataclass
class Spy:
    """The models the app parsed bodies into, and the query parameters it read."""

    models: list[type[BaseModel]] = field(default_factory=list)
    json_bodies: int = 0
    query: set[str] = field(default_factory=set)

    def clear(self) -> None:
        self.models.clear()
        self.json_bodies = 0
        self.query.clear()


class _Recording(QueryParams):
    """Query parameters that note each name a route reads."""

    def __init__(self, spy: Spy, query: bytes) -> None:
        super().__init__(query)
        self.spy = spy

    def get(self, key: Any, default: Any = None) -> Any:
        self.spy.query.add(str(key))
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.spy.query.add(str(key))
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.spy.query.add(str(key))
        return super().__contains__(key)

    def getlist(self, key: Any) -> list[Any]:
        self.spy.query.add(str(key))
        return super().getlist(key)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    found = Spy()
    real_model, real_json = web.parse_model, web.parse_json

    def parse_model(raw: bytes, model: type[BaseModel], *, allow_empty: bool = False) -> Any:
        found.models.append(model)
        return real_model(raw, model, allow_empty=allow_empty)

    def parse_json(raw: bytes, *, allow_empty: bool = False) -> Any:
        found.json_bodies += 1
        return real_json(raw, allow_empty=allow_empty)

    fakes: dict[Callable[..., Any], Callable[..., Any]] = {
        real_model: parse_model,
        real_json: parse_json,
    }
    for name, module in list(sys.modules.items()):  # wherever a route imported them
        if name.startswith("agentfirewall_server"):
            for attr in ("parse_model", "parse_json"):
                fake = fakes.get(getattr(module, attr, None))  # type: ignore[arg-type]
                if fake is not None:
                    monkeypatch.setattr(module, attr, fake)

    def query_params(self: HTTPConnection) -> QueryParams:
        return _Recording(found, self.scope["query_string"])

    monkeypatch.setattr(HTTPConnection, "query_params", property(query_params))
    return found


@pytest.fixture
def world(harness: Harness) -> World:
    return World.build(harness)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[World]:
    """An app of its own (on SQLite: which model a route reads does not depend on the
    engine), for calls whose side effects must not reach the walk's."""
    settings = make_settings(tmp_path / "scratch", f"sqlite:///{tmp_path / 'scratch.db'}")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:3000") as client:
        yield World.build(Harness(client, settings.data_dir))


# -- the store, before and after ------------------------------------------------------------

#: Tables a refused request may touch without writing anything: the shared rate limit's
#: token buckets (PostgreSQL) count every request, refused or not.
_VOLATILE = {"rate_limits"}


def _fingerprint(harness: Harness) -> dict[str, str]:
    """A digest of every row of every table, and the configuration version."""

    def read(conn: Connection) -> dict[str, str]:
        out = {}
        for table in metadata.sorted_tables:
            if table.name not in _VOLATILE:
                rows = sorted(repr(tuple(row)) for row in conn.execute(select(table)))
                out[table.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
        return out

    found = harness.state.db.read_sync(read)
    found["config_version"] = str(harness.state.snapshot.version)
    return dict(found)


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


# -- the wrong values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wrong:
    label: str
    raw: str  # the JSON text sent
    #: its JSON type (string, integer, number, boolean, null, array, object), or bigint
    #: (past 64 bits), nonfinite, nul (a string with U+0000) or unknown (an unknown field)
    kind: str

    def fits(self, allowed: set[str]) -> bool:
        """Whether a field of the `allowed` JSON types takes this value's type."""
        if self.kind in ("nonfinite", "nul"):
            return False
        if self.kind == "bigint":  # a number field takes it as a float; an int field never
            return "number" in allowed
        if self.kind == "integer":
            return bool(allowed & {"integer", "number"})
        return self.kind in allowed


WRONG = [
    Wrong("a string", '"1"', "string"),
    Wrong("an integer", "1", "integer"),
    Wrong("a float", "1.5", "number"),
    Wrong("an integral float", "1e300", "number"),
    Wrong("a boolean", "true", "boolean"),
    Wrong("null", "null", "null"),
    Wrong("a list", "[]", "array"),
    Wrong("an object", "{}", "object"),
    Wrong("2**64", str(2**64), "bigint"),
    Wrong("-2**63-1", str(-(2**63) - 1), "bigint"),
    Wrong("NaN", "NaN", "nonfinite"),
    Wrong("-Infinity", "-Infinity", "nonfinite"),
    Wrong("1e400", "1e400", "nonfinite"),
    # a string, but no text a PostgreSQL column holds (free JSON is stored escaped)
    Wrong("a NUL character", '"a\\u0000"', "nul"),
]

Where = tuple[str | int, ...]


@dataclass(frozen=True)
class Mutation:
    path: Where
    wrong: Wrong

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.path)

    def body(self, seed: Any) -> bytes:
        data = copy.deepcopy(seed)
        _put(data, self.path, _SENTINEL)
        text = json.dumps(data).replace(json.dumps(_SENTINEL), self.wrong.raw)
        return text.encode()


def _put(data: Any, path: Where, value: Any) -> None:
    *inner, last = path
    for step in inner:
        data = data[step]
    data[last] = value


@dataclass(frozen=True)
class Schema:
    """A JSON schema node with the definitions its references name."""

    node: dict[str, Any]
    defs: dict[str, Any]

    @classmethod
    def of(cls, model: type[BaseModel]) -> Schema:
        full = model.model_json_schema(mode="validation")
        return cls(full, full.get("$defs", {}))

    def at(self, node: dict[str, Any]) -> Schema:
        return Schema(node, self.defs)

    def resolved(self) -> Schema:
        node = self.node
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return self.at(node)

    def branches(self) -> list[Schema]:
        """The alternatives of a union (one for a plain schema), references resolved."""
        node = self.resolved().node
        options = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
        if options is None:
            return [self.resolved()]
        return [b for option in options for b in self.at(option).branches()]

    def types(self) -> set[str] | None:
        """The JSON types this schema takes; None for any."""
        out: set[str] = set()
        for branch in self.branches():
            node = branch.node
            if "const" in node or "enum" in node:
                values = [node["const"]] if "const" in node else node["enum"]
                out |= {_json_type(v) for v in values}
            elif "type" in node:
                kinds = node["type"]
                out |= set(kinds) if isinstance(kinds, list) else {kinds}
            else:
                return None
        return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def mutations(
    schema: Schema,
    seed: Any,
    path: Where = (),
    later: dict[str, type[BaseModel]] | None = None,
    *,
    text: bool = True,
) -> Iterator[Mutation]:
    """Every wrong value for every field of an object `schema`, inside `seed` at `path`
    (with `text`, a NUL character in a string field is one)."""
    node = schema.resolved().node
    if node.get("additionalProperties") is False:
        yield Mutation((*path, _UNKNOWN), Wrong("an unknown field", "1", "unknown"))
    for name, sub in node.get("properties", {}).items():
        if later and name in later:  # a spec: kept as JSON text, a NUL in it is fine
            yield from _value_mutations(Schema.of(later[name]), seed.get(name), (*path, name),
                                        text=False)  # fmt: skip
        else:
            yield from _value_mutations(schema.at(sub), seed.get(name), (*path, name), text=text)


def _value_mutations(schema: Schema, seed: Any, path: Where, *, text: bool) -> Iterator[Mutation]:
    allowed = schema.types()
    if allowed is None:
        return  # free JSON
    for wrong in WRONG:
        if not wrong.fits(allowed) and (text or wrong.kind != "nul"):
            yield Mutation(path, wrong)
    for branch in schema.branches():
        node = branch.node
        if "properties" in node and isinstance(seed, dict):
            yield from mutations(branch, seed, path, text=text)
        elif (values := _mapping_values(node)) is not None and isinstance(seed, dict):
            key = next(iter(seed), "k")  # a value of a mapping
            yield from _value_mutations(branch.at(values), seed.get(key), (*path, key), text=text)
        elif "prefixItems" in node and isinstance(seed, list):
            for i, item in enumerate(node["prefixItems"]):
                yield from _value_mutations(branch.at(item), seed[i], (*path, i), text=text)
        elif "items" in node and isinstance(seed, list) and seed:
            yield from _value_mutations(branch.at(node["items"]), seed[0], (*path, 0), text=text)


def _mapping_values(node: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a mapping's values (keys with a pattern are `patternProperties`)."""
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        return values
    patterns = node.get("patternProperties")
    return next(iter(patterns.values())) if patterns else None


# -- the walk --------------------------------------------------------------------------------


@dataclass
class Discovery:
    """What the routes of an app read: the model of each body, the query parameters of
    each route, and what keeps the walk from covering a route."""

    models: dict[tuple[str, str], type[BaseModel]] = field(default_factory=dict)
    #: routes that read no body and refuse one (``web.no_body``)
    bodiless: set[tuple[str, str]] = field(default_factory=set)
    query: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def discover(world: World, spy: Spy) -> Discovery:
    """Call every route of `world` (a scratch: its routes do what they do) and see what
    each reads: a body route is sent a JSON array first (which every model refuses), then
    its seed, which must be accepted (a 401/403/404/409 of the route's own is fine)."""
    found = Discovery()
    routes = [r for r in world.routes() if r[1] not in _STREAMS]
    for method, template in sorted(routes, key=lambda r: r[0] == "DELETE"):  # deletes last
        spy.clear()
        if method in _BODY_METHODS:
            answer = world.send(method, template, b"[]")
            _read_body(found, method, template, spy)
            if (method, template) in found.models:
                spy.clear()
                answer = world.send(method, template, json.dumps(SEEDS.get(template)).encode())
                if answer.status_code in (400, 422):
                    found.problems.append(f"{method} {template}: the seed is refused: "
                                          f"{answer.text[:300]}")  # fmt: skip
        else:
            answer = _send_known(world, method, template, spy)
            if web.NoBody in spy.models:
                found.bodiless.add((method, template))
        if answer.status_code >= 500:
            found.problems.append(f"{method} {template}: {answer.status_code} {answer.text}")
        found.query[(method, template)] = set(spy.query)
    return found


def _send_known(world: World, method: str, template: str, spy: Spy) -> Any:
    """The discovery query, less what the route refuses as a parameter it does not read
    (a refused one stops the route before it reads the rest)."""
    values = dict(_DISCOVERY_QUERY_VALUES)
    while True:
        spy.clear()
        answer = world.send(method, template, b"", _query(values))
        unknown = answer.json().get("field") if answer.status_code == 400 else None
        if unknown not in values or "unknown query parameter" not in answer.text:
            return answer
        del values[unknown]


def _read_body(found: Discovery, method: str, template: str, spy: Spy) -> None:
    route = (method, template)
    if spy.models and spy.models[0] is web.NoBody:
        found.bodiless.add(route)
        if route not in NO_JSON_BODY:
            found.problems.append(f"{method} {template} reads no body: list it in NO_JSON_BODY")
    elif spy.models:
        found.models[route] = spy.models[0]
        if route in NO_JSON_BODY:
            found.problems.append(f"{method} {template} reads a body: not in NO_JSON_BODY")
        if template not in SEEDS:
            found.problems.append(f"{method} {template}: no seed in SEEDS")
        else:
            try:
                spy.models[0].model_validate_json(json.dumps(SEEDS[template]), strict=True)
            except ValueError as exc:
                found.problems.append(f"{method} {template}: the seed does not parse: {exc}")
    elif spy.json_bodies:
        found.problems.append(f"{method} {template} parses JSON without a model: read_model")
    elif route not in NO_JSON_BODY:
        found.problems.append(f"{method} {template} reads no body: list it in NO_JSON_BODY")


def test_the_walk_covers_every_route(scratch: World, spy: Spy) -> None:
    """Each body route has a seed its model parses and the route accepts (so the one wrong
    value is the only thing wrong in each body the walk sends), and each query parameter
    a route reads has a kind the query walk knows."""
    found = discover(scratch, spy)
    assert len(found.models) >= 40, sorted(found.models)
    for (method, template), names in sorted(found.query.items()):
        for name in sorted(names - set(QUERY_KINDS)):
            found.problems.append(f"{method} {template} reads `?{name}=`: give it a kind")
    assert not found.problems, "\n".join(found.problems)


@pytest.mark.timeout(600)
def test_a_value_of_the_wrong_type_is_refused_on_every_field(
    scratch: World, world: World, spy: Spy, database_url: str
) -> None:
    """Every field, nested ones too, refuses every value of a JSON type its model does not
    take: 400/422 naming the field, and nothing in the store changes (every route of its
    engine's half in CI, all of them under nox -s fuzz)."""
    routes = engine_half(sorted(discover(scratch, spy).models.items()), database_url, FUZZ_ALL_ENV)
    failures: list[str] = []
    sent = 0
    for (method, template), model in routes:
        seed = SEEDS.get(template, {})
        before = _fingerprint(world.harness)
        for mutation in mutations(Schema.of(model), seed, later=LATER_MODELS.get(template)):
            sent += 1
            answer = world.send(method, template, mutation.body(seed))
            # a NUL is a string: a validator of the list it is in may name the list
            problem = _refusal_problem(answer, mutation.field, whole=mutation.wrong.kind == "nul")
            if problem:
                failures.append(f"{method} {template} {mutation.field} = {mutation.wrong.label}"
                                f" ({mutation.wrong.raw}): {problem}")  # fmt: skip
        for root in (b"[]", b'"x"', b"1", b"null", b"true"):  # no object: nothing to name
            sent += 1
            problem = _refusal_problem(world.send(method, template, root), None)
            if problem:
                failures.append(f"{method} {template} body {root.decode()}: {problem}")
        changed = _changed(before, _fingerprint(world.harness))
        if changed:
            failures.append(f"{method} {template}: refused bodies changed {changed}")
    assert not failures, f"{len(failures)} of {sent}:\n" + "\n".join(failures)
    assert len(routes) >= 20
    assert sent > 25 * len(routes)


def test_a_route_that_reads_no_body_refuses_one(scratch: World, world: World, spy: Spy) -> None:
    """A field sent to a route that reads none was dropped unread (a revocation's `reason`
    no audit event shows): now it is 422 naming the field, and nothing changes; no body,
    or `{}`, is what such a route takes."""
    found = discover(scratch, spy)
    bodiless = sorted(found.bodiless)
    assert len(bodiless) >= 20, bodiless  # the state changes and the deletes
    assert {r for r in NO_JSON_BODY if r[0] != "DELETE"} - set(bodiless) == {
        ("POST", "/api/v1/integrations/slack/interactivity"),  # a form, signed by Slack
    }
    failures: list[str] = []
    for method, template in bodiless:
        before = _fingerprint(world.harness)
        for body, named in ((b'{"reason": "compromised"}', "reason"), (b"[]", None)):
            problem = _refusal_problem(world.send(method, template, body), named)
            if problem:
                failures.append(f"{method} {template} {body.decode()}: {problem}")
        changed = _changed(before, _fingerprint(world.harness))
        if changed:
            failures.append(f"{method} {template}: refused bodies changed {changed}")
    assert not failures, "\n".join(failures)
    answer = world.send("POST", "/api/v1/audit/checkpoints", b'{"note": 1}')
    assert "POST /api/v1/audit/checkpoints takes no body (send none, or {})" in answer.text
    assert world.send("POST", "/api/v1/audit/checkpoints", b"{}").status_code == 201


def _refusal_problem(answer: Any, field: str | None, *, whole: bool = False) -> str | None:
    """What is wrong with `answer` to a request whose `field` is wrong, if anything (with
    `whole`, naming a field that holds it is right too)."""
    if answer.status_code not in (400, 422):
        return f"answered {answer.status_code}: {answer.text[:300]}"
    error = answer.json()
    if not (isinstance(error, dict) and error.get("error") == "invalid_request"):
        return f"error shape: {answer.text[:300]}"
    if not isinstance(error.get("message"), str):
        return f"no message: {answer.text[:300]}"
    named = error.get("field")
    held = whole and isinstance(named, str) and (field or "").startswith(named + ".")
    if named != field and not held:
        return f"names field {named!r}: {error['message'][:200]}"
    return None


def test_query_parameters_refuse_what_is_no_value_of_their_kind(
    scratch: World, world: World, spy: Spy
) -> None:
    """Every query parameter a route reads: a value of the wrong kind is refused (400
    naming it), a number out of range is refused or clamped, never a 5xx."""
    reads = discover(scratch, spy).query
    held = world.ids["approvals"]  # decided, so that a long-poll on it answers at once
    assert world.harness.admin("POST", f"/v1/approvals/{held}/deny").status_code == 200
    failures: list[str] = []
    for (method, template), names in sorted(reads.items()):
        body = json.dumps(SEEDS.get(template, {})).encode() if method in _BODY_METHODS else b""
        for name in sorted(names):
            kind = QUERY_KIND_AT.get((template, name), QUERY_KINDS.get(name, "text"))
            for value, clamp in QUERY_VALUES[kind]:
                read = {k: v for k, v in _DISCOVERY_QUERY_VALUES.items() if k in names}
                query = _query(read | {name: value})
                answer = world.send(method, template, body, query)
                problem = _query_problem(answer, name, clamp)
                if problem:
                    failures.append(f"{method} {template}?{name}={value[:20]}: {problem}")
    assert not failures, "\n".join(failures)


def _query(values: dict[str, str]) -> str:
    return "&".join(f"{name}={value}" for name, value in values.items())  # already encoded


def _query_problem(answer: Any, name: str, clamp: bool) -> str | None:
    if answer.status_code in (400, 422):
        return _refusal_problem(answer, name)
    if clamp and answer.status_code in (200, 304):
        return None
    return f"answered {answer.status_code}: {answer.text[:200]}"


@pytest.mark.parametrize(
    "created_at",
    ["nan", "inf", "1e400", "-1e300", 1e300, -1e15, "99999999999999999999999",
     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
)  # fmt: skip
def test_a_traffic_time_no_date_holds_is_not_stored(
    harness: Harness, created_at: str | float
) -> None:
    """A record's `created_at` (a string or a number: the right type) that no date holds:
    `"nan"` failed the insert (500), and a time past the year 9999 or before the year 1
    was stored and failed every later `GET /api/v1/traffic` (500). Such a time is
    unreadable, as `"abc"` always was: the record is kept at its arrival time."""
    record = {"request_id": "r1", "agent": "Fuzz", "created_at": created_at}
    answer = harness.gateway("POST", "/v1/gateway/traffic", json={"records": [record]})
    assert answer.status_code == 200, answer.text
    listed = harness.admin("GET", "/v1/traffic")
    assert listed.status_code == 200, listed.text
    [row] = listed.json()["traffic"]
    assert abs(parse_time(row["created_at"]) - time.time()) < 3600


def test_a_nul_in_a_path_parameter_is_refused(world: World) -> None:
    """A NUL character in an id or name of the path was compared with a text column, which
    PostgreSQL refuses (500): every route refuses it before it is read (400)."""
    failures = []
    for method, template in world.routes():
        if "{" not in template or template in _STREAMS:
            continue
        path = _PARAM.sub("a%00", template)
        answer = world.harness.call(method, path, world.token(method, template), json={})
        if answer.status_code != 400 or answer.json()["error"] != "invalid_request":
            failures.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("before", ["1.0,proxy,2147483648", f"1.0,proxy,{2**62}"])
def test_a_traffic_cursor_past_a_traffic_id_is_refused(harness: Harness, before: str) -> None:
    """A `shadow=diverged` page's cursor names a traffic id, a 32-bit integer column on
    PostgreSQL: a larger one failed the query there (500)."""
    answer = harness.admin("GET", f"/v1/traffic?shadow=diverged&before={before}")
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "before"


@given(st.one_of(st.floats().map(repr), st.integers().map(str), st.datetimes(
    timezones=st.timezones()).map(lambda d: d.isoformat())))  # fmt: skip
def test_a_time_parse_time_takes_is_one_rfc3339_writes(text: str) -> None:
    """Whatever a client sends as a time (a traffic record's `created_at`, the audit log's
    `since`), what `parse_time` takes, `rfc3339` can write back: no stored time breaks a
    listing."""
    try:
        stamp = parse_time(text)
    except ValueError:
        return
    written = rfc3339(stamp)
    assert written is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", written)  # year 1: 0001
    # and it reads back: cut to the millisecond, give or take the float's rounding (year 6326)
    assert abs(parse_time(written) - stamp) < 0.001 + 4 * math.ulp(stamp)


def test_a_listing_refuses_a_query_parameter_it_does_not_read(world: World) -> None:
    """Every GET route of the API (listings, reads, long-polls): a parameter it does not
    read is 400 naming it, not ignored (`?agnet=Bot` would otherwise answer everything)."""
    failures = []
    for method, template in sorted(world.routes()):
        if method != "GET" or template in _STREAMS or not template.startswith("/api/v1/"):
            continue
        answer = world.send(method, template, b"", "agnet=Bot")
        if answer.status_code in (401, 403, 404, 405):
            continue  # refused before any query is read (the credential, the id)
        if answer.status_code != 400 or answer.json().get("field") != "agnet":
            failures.append(f"GET {template}?agnet=Bot: {answer.status_code} {answer.text[:120]}")
    assert not failures, "\n".join(failures)
