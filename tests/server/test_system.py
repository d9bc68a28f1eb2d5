"""Health, metrics, OpenAPI, JWKS, server-sent events, the dashboard mount."""

from __future__ import annotations

from tests.livesrv import LiveServer
from tests.server.conftest import SPEC, Harness

SERVER_METRICS = (
    "aaf_requests_total",
    "aaf_requests_denied_total",
    "aaf_requests_approved_total",
    "aaf_kill_switch_active",
    "aaf_approvals_pending",
    "aaf_rate_limit_hits_total",
    "aaf_request_duration_seconds",
    "aaf_connector_errors_total",
)


def test_health_needs_no_credentials(harness: Harness) -> None:
    body = harness.call("GET", "/api/health").json()
    assert body == {
        "status": "ok",
        "version": body["version"],
        "database": "ok",
        "vault": {"status": "ok", "unreadable": []},
        "config": {"status": "ok", "unreadable": 0},
    }


def test_metrics_expose_the_documented_names(harness: Harness) -> None:
    key = harness.create_agent("Bot")
    harness.admin("POST", "/v1/kill-switch", json={"active": True})
    harness.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
    text = harness.call("GET", "/metrics", harness.admin_token).text
    for name in SERVER_METRICS:
        assert f"# TYPE {name}" in text, name
    assert 'aaf_kill_switch_active{scope="all"} 1.0' in text
    assert (
        'aaf_requests_denied_total{agent="Bot",connector="github",reason="kill_switch_active"}'
        in text
    )


def test_openapi_describes_the_real_routes(harness: Harness) -> None:
    doc = harness.call("GET", "/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/actions"]
    assert "post" in paths["/api/v1/actions/{id}/execute"]
    assert "get" in paths["/api/v1/gateway/config"]
    routes = {r.path for r in harness.client.app.routes if hasattr(r, "methods")}  # type: ignore[attr-defined]
    documented = set(paths)
    assert documented <= {p.replace(":path", "") for p in routes}
    assert {p for p in routes if p.startswith("/api/")} <= documented


def test_jwks_serves_the_signing_key(harness: Harness) -> None:
    jwks = harness.call("GET", "/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kid"] == harness.state.signing_key.kid
    assert "d" not in jwks["keys"][0]


def test_dashboard_mount_never_500s(harness: Harness) -> None:
    r = harness.call("GET", "/dashboard", follow_redirects=False)
    assert r.status_code < 500


def test_events_stream_approvals_and_kill_switch(live_server: LiveServer) -> None:
    key = live_server.create_agent("Bot")
    live_server.admin(
        "POST",
        "/v1/permissions",
        json={
            "agent": "Bot",
            "connector": "github",
            "action_pattern": "*",
            "decision": "require_approval",
        },
    )
    with live_server.events(until="kill_switch") as seen:
        live_server.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC})
        live_server.admin("POST", "/v1/kill-switch", json={"active": True})
    kinds = [k for k, _ in seen]
    assert "approval.created" in kinds
    assert "approval.decided" in kinds
    assert kinds[-1] == "kill_switch"
    created = next(d for k, d in seen if k == "approval.created")
    assert created["agent"] == "Bot"
    assert live_server.agent(key, "GET", "/v1/events").status_code == 403
