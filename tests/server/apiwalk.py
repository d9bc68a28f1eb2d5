"""Every JSON endpoint of a live server, read from its OpenAPI document, ready to call.

`World.build(server)` creates what the path parameters name (agents, a connector, a
policy, a user, an action and a pending approval) and picks the credential each
endpoint's documented authentication asks for; `Endpoint.seed` is a valid body the
fuzzer mutates. Used by test_fuzz_api.py and test_input_limits.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.livesrv import LiveServer

__all__ = ["SEEDS", "Endpoint", "World"]

SPEC = {
    "type": "webhook.post",
    "resource": {"provider": "webhook", "target": "https://hooks.example.com/a"},
    "parameters": {"method": "POST", "body": {"k": [1, 2.5, None, True]}},
    "risk_hints": {"irreversible": False},
}

#: A valid body per endpoint (path template), the start of every mutation.
SEEDS: dict[str, Any] = {
    "/api/v1/actions": {"action_spec": SPEC},
    "/api/v1/actions/dry-run": {"action_spec": SPEC},
    "/api/v1/actions/{id}/execute": {"decision_token": "eyJ.x.y"},
    "/api/v1/actions/{id}/resolve": {"outcome": "retry", "note": "checked upstream"},
    "/api/v1/agents": {"name": "fuzzed", "environment": "test", "rate_limit_per_minute": 5},
    "/api/v1/agents/ensure": {"name": "fuzzed", "enforcement_level": "monitor"},
    "/api/v1/agents/{ident}": {"description": "d", "sdk_default": "deny"},
    "/api/v1/agents/{ident}/run-keys/{key_id}/renew": {"lease_seconds": 300},
    "/api/v1/approvals/{id}/approve": {"note": "ok"},
    "/api/v1/approvals/{id}/deny": {"note": "no"},
    "/api/v1/auth/login": {"email": "owner@example.com", "password": "wrong password"},
    "/api/v1/auth/setup": {"setup_token": "x", "email": "a@b.c", "password": "12345678"},
    "/api/v1/connectors": {
        "type": "generic",
        "domains": ["api.example.com"],
        "base_url": "https://api.example.com:8443/v1",
        "options": {},
        "token": "t",
    },
    "/api/v1/connectors/{id}": {"options": {"from": "ops@example.com"}},
    "/api/v1/gateway/approvals": {
        "agent": "Fuzz",
        "connector": "webhook",
        "action_spec": SPEC,
        "action_hash": "0" * 64,
        "risk_score": 10,
        "request": {"method": "POST", "host": "hooks.example.com", "path": "/a"},
    },
    "/api/v1/gateway/approvals/wait": {"ids": ["apr_x"]},
    "/api/v1/gateway/heartbeat": {"gateway_id": "g1", "agent_ports": {"Fuzz": 9000}},
    "/api/v1/gateway/connectors/{id}/refresh-lease": {"holder": "gw-fuzz"},
    "/api/v1/gateway/connectors/{id}/refresh-token": {
        "previous_sha256": "0" * 64,
        "refresh_token": "rt_fuzzed",
        "lease": "rfl_fuzzed",
    },
    "/api/v1/gateway/traffic": {
        "records": [
            {"request_id": "r1", "agent": "Fuzz", "bytes_in": 10, "latency_ms": 1.5},
        ]
    },
    "/api/v1/kill-switch": {"active": False, "scope": "agent:Victim", "reason": "r"},
    "/api/v1/permissions": {
        "agent": "Fuzz",
        "connector": "github",
        "action_pattern": "github.*",
        "decision": "allow",
    },
    "/api/v1/permissions/preset": {"agent": "Fuzz", "connector": "github", "preset": "read-only"},
    "/api/v1/policies": {"document": "name: p\nrules: []\n"},
    "/api/v1/policies/validate": {"document": "name: p\nrules: []\n"},
    "/api/v1/policies/{id}": {"document": "name: p\nrules: []\n"},
    "/api/v1/settings": {"approval_timeout_seconds": 300},
    "/api/v1/shadow/permissions": {
        "permissions": [
            # the walk's own live rule: a promote in the walk leaves the configuration as is
            {"agent": "Fuzz", "connector": "webhook", "action_pattern": "*", "decision": "allow"}
        ]
    },
    "/api/v1/shadow/policies": {"document": "name: p\nrules: []\n"},
    "/api/v1/tokens": {"name": "t"},
    "/api/v1/users": {"email": "u@example.com", "password": "password1", "role": "viewer"},
    "/api/v1/users/{id}": {"role": "viewer"},
}

#: Endpoints whose success changes what the rest of the walk relies on, or that ignore
#: the body and succeed at the cost of a configuration reload: called through an unknown
#: path parameter (404), like a caller who guessed an id.
_DISRUPTIVE = ("/revoke", "/suspend", "/rotate", "/activate", "/enable", "/disable")
_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    path: str
    token: str | None
    seed: Any = field(default_factory=dict)


@dataclass
class World:
    server: LiveServer
    agent_key: str
    ids: dict[str, str]
    endpoints: list[Endpoint]

    @classmethod
    def build(cls, server: LiveServer) -> World:
        key = server.create_agent("Fuzz", sdk_default="allow", rate_limit_per_minute=1_000_000)
        server.create_agent("Victim")
        ids = _objects(server, key)
        doc = server.request("GET", "/api/openapi.json").json()
        endpoints = []
        for template, ops in sorted(doc["paths"].items()):
            for method, op in sorted(ops.items()):
                if "requestBody" not in op:
                    continue
                token = _credential(server, key, op["description"])
                endpoints.append(
                    Endpoint(
                        method.upper(),
                        template,
                        _fill(template, ids),
                        token,
                        SEEDS.get(template, {}),
                    )
                )
        return cls(server, key, ids, endpoints)


def _credential(server: LiveServer, agent_key: str, description: str) -> str | None:
    if "agent key" in description:
        return agent_key
    if "gateway token" in description:
        return server.gateway_token
    if "admin token" in description:
        return server.admin_token
    return None


_OWNER = {"actions": "action", "approvals": "approval", "connectors": "connector"}
_OWNER |= {"policies": "policy", "users": "user"}


def _fill(template: str, ids: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) != "id":
            return ids.get(match.group(1), "unknown")
        collection = template[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        return ids.get(_OWNER.get(collection, ""), "unknown")

    path = _PARAM.sub(value, template)
    if any(part in template for part in _DISRUPTIVE):
        path = _PARAM.sub("does-not-exist", template)
    if path.endswith("/wait"):
        path += "?timeout=0"
    return path


def _objects(server: LiveServer, key: str) -> dict[str, str]:
    """Real ids for the path parameters: the walk reaches each handler's body parsing."""
    server.admin(
        "POST",
        "/v1/permissions",
        {"agent": "Fuzz", "connector": "webhook", "action_pattern": "*", "decision": "allow"},
    )
    policy = server.admin(
        "POST",
        "/v1/policies",
        {
            "document": "name: hold-deletes\nrules:\n- name: r\n  conditions:\n"
            "    all:\n    - {field: action_spec.type, operator: equals, value: x.y.delete}\n"
            "  decision: require_approval\n"
        },
    ).json()
    connector = server.admin(
        "POST",
        "/v1/connectors",
        {"type": "sendgrid", "token": "SG.fuzz"},  # a type with an option to PATCH
    ).json()
    user = server.admin(
        "POST", "/v1/users", {"email": "fuzz@example.com", "password": "password1"}
    ).json()
    action = server.agent(key, "POST", "/v1/actions", {"action_spec": SPEC}).json()
    held = server.agent(key, "POST", "/v1/actions", {"action_spec": {"type": "x.y.delete"}}).json()
    approval = (held.get("approval") or {}).get("id", "unknown")
    return {
        "ident": "Victim",
        "name": "read-only",
        "policy": str(policy.get("id", "unknown")),
        "connector": str(connector.get("id", "unknown")),
        "user": str(user.get("id", "unknown")),
        "action": str(action.get("action_request_id", "unknown")),
        "approval": str(approval),
    }
