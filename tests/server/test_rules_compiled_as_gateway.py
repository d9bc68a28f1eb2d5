"""Every engine the control plane compiles from access rules decides as the gateway's does.

The gateway compiled its rules through `alias_rules` (`generic.get` is `http.get`, the name
the generic connector gives a GET); the control plane's engines did not: the snapshot's
(SDK decisions, dry runs, the dashboard's sandbox, the live side of shadow mode), replay's
and shadow mode's, and ``agentfirewall.testing``'s. So the integration guide's own
configuration replayed against itself drifted on every GET, a candidate dropping
`generic.get allow` showed no change, a shadow set denying every GET was not marked
diverged, and an SDK `http.delete` a `*` rule denies was allowed by dry-run.

For the guide's rules and generated actions, the gateway's compiled decision is compared
with each of them: the snapshot's engine, replay (the live and a candidate set equal to it,
on the record input the gateway stores), shadow mode (the same set installed as shadow),
and in SDK mode the dry-run route and the testing transport.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import get_connector, performed_as
from agentfirewall.decisions import Decision
from agentfirewall.policy import AccessRule, EvaluationContext
from agentfirewall.policy.record import record_input, restore_input
from agentfirewall.policy.replay import Recorded, evaluate_sdk, replay_one, verdict
from agentfirewall.testing import TEST_API_KEY, TEST_BASE_URL, FirewallTransport
from agentfirewall_proxy.snapshot import CompiledConfig, compile_snapshot
from agentfirewall_server.decide import context_for
from agentfirewall_server.replaystore import build_engine
from agentfirewall_server.routes.gateway import build_config
from agentfirewall_server.routes.replay import CandidatePermission, candidate_permissions
from agentfirewall_server.shadow import judge_input
from tests.server.conftest import Harness

#: the integration guide's multi-agent example, and a rule for every agent on the other
#: spelling of a generic action
GUIDE = [
    ("DevOps Bot", "github", "github.*", "allow"),
    ("DevOps Bot", "github", "github.repo.delete", "deny"),
    ("Finance Bot", "generic", "generic.get", "allow"),
    ("Finance Bot", "generic", "generic.post", "require_approval"),
    ("*", "generic", "http.delete", "deny"),
]
AGENTS = ("DevOps Bot", "Finance Bot", "Ops Bot")
_METHODS = ("get", "head", "post", "put", "patch", "delete")
ACTIONS = {
    "github": sorted({a.type for a in get_connector("github").actions()} | {"github.get"}),
    "generic": [f"{kind}.{m}" for kind in ("http", "generic") for m in _METHODS],
}
NAMED = st.sampled_from(sorted(ACTIONS)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.sampled_from(ACTIONS[kind]))
)


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _configure(h: Harness) -> tuple[dict[str, str], CompiledConfig]:
    """The guide's configuration, live and as the shadow permission set; the agents' keys
    and the gateway's config compiled from the snapshot it is served."""
    keys = {name: h.create_agent(name) for name in AGENTS}
    _ok(h.admin("POST", "/v1/connectors", {"type": "github", "token": "ghp_" + "0" * 36}))
    _ok(h.admin("POST", "/v1/connectors", {"type": "generic", "token": "sk_test_0000",
                                           "domains": ["api.stripe.com"]}))  # fmt: skip
    rules = [dict(zip(("agent", "connector", "action_pattern", "decision"), r, strict=True))
             for r in GUIDE]  # fmt: skip
    for rule in rules:
        _ok(h.admin("POST", "/v1/permissions", rule))
    _ok(h.admin("PUT", "/api/v1/shadow/permissions", {"permissions": rules}))
    return keys, compile_snapshot(build_config(h.state))


def _same(found: Decision, expected: Decision) -> None:
    assert (found.outcome, found.matched_rules) == (expected.outcome, expected.matched_rules)


def _proxy_paths(h: Harness, spec: ActionSpec, ctx: EvaluationContext, gw: Decision) -> None:
    """The snapshot's engine, replay (live and an equal candidate), shadow mode."""
    snapshot = h.state.snapshot
    _same(snapshot.engine.evaluate(spec, ctx), gw)
    stored = json.dumps(record_input(spec, ctx))  # as the gateway records it
    item = Recorded("traffic:1", "proxy", *restore_input(json.loads(stored), ctx.agent))
    _same(replay_one(build_engine(snapshot), item), gw)
    same = [CandidatePermission(agent=a, connector=c, action_pattern=p, decision=d)  # type: ignore[arg-type]
            for a, c, p, d in GUIDE]  # fmt: skip
    candidate = build_engine(snapshot, None, candidate_permissions(same, snapshot.agents_by_name))
    assert verdict(replay_one(candidate, item)) == verdict(gw)
    judged = judge_input(snapshot.engine, snapshot.shadow, ctx.agent, stored)
    assert judged is not None
    assert (judged.live, judged.shadow, judged.diverged) == (verdict(gw), verdict(gw), False)


def _sdk_paths(h: Harness, key: str, agent: str, spec: ActionSpec, gw: CompiledConfig) -> None:
    """The dry-run route and the testing transport, against the gateway's rules in SDK
    mode."""
    ctx = context_for(h.state.snapshot.agents_by_name[agent], spec)
    expected = evaluate_sdk(gw.engine, spec, ctx, performed_as(spec)).outcome
    body = {"action_spec": spec.model_dump(mode="json", exclude_none=True)}
    dry = _ok(h.agent(key, "POST", "/v1/actions/dry-run", body))
    assert dry["decision"]["outcome"] == expected
    rules = [AccessRule(*r) for r in GUIDE]  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    transport = FirewallTransport(access_rules=rules, agent=agent)
    with httpx.Client(base_url=TEST_BASE_URL, transport=transport, headers=headers) as client:
        assert _ok(client.post("/v1/actions/dry-run", json=body))["decision"]["outcome"] == expected


def test_control_plane_engines_decide_as_the_gateway(harness_factory: Any) -> None:
    h: Harness = harness_factory(rate_limit_per_minute=100_000)
    keys, gw = _configure(h)
    now = datetime.now(UTC)

    @given(agent=st.sampled_from(AGENTS), named=NAMED)
    @example(agent="Finance Bot", named=("generic", "http.get"))  # the guide's, live: allow
    @example(agent="Finance Bot", named=("generic", "http.post"))
    @example(agent="Ops Bot", named=("generic", "generic.delete"))  # `*` on `http.delete`
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def check(agent: str, named: tuple[str, str]) -> None:
        kind, action = named
        spec = parse_action_spec({"type": action, "resource": {"provider": kind}})
        ctx = EvaluationContext(agent=agent, mode="proxy", now=now, connector=kind)
        _proxy_paths(h, spec, ctx, gw.engine.evaluate(spec, ctx))
        _sdk_paths(h, keys[agent], agent, spec, gw)

    check()
