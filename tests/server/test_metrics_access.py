"""/metrics: who may read it, and label cardinality an agent cannot grow (docs/server.md)."""

from __future__ import annotations

import re
from typing import Any

from agentfirewall_server.metrics import catalogue_action_types
from tests.server.conftest import SPEC, Harness

METRICS_TOKEN = "metrics-scraper-secret-0123456789"


def _metrics(h: Harness, token: str | None = None, **kw: Any) -> Any:
    return h.call("GET", "/metrics", token, **kw)


def _sign_in_viewer(h: Harness) -> str:
    """Sign a viewer in (the client keeps the session cookie); returns the CSRF token."""
    h.admin("POST", "/v1/users", {"email": "v@example.com", "password": "password1"})
    login = h.call(
        "POST", "/v1/auth/login", json={"email": "v@example.com", "password": "password1"}
    )
    assert login.status_code == 200, login.text
    assert login.json()["user"]["role"] == "viewer"
    csrf: str = login.json()["csrf_token"]
    return csrf


def test_metrics_need_a_metrics_token_or_a_viewer(harness_factory: Any) -> None:
    h: Harness = harness_factory(metrics_token=METRICS_TOKEN)
    key = h.create_agent("Bot")
    anonymous = _metrics(h)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"
    assert "aaf_" not in anonymous.text
    assert _metrics(h, "wrong-token").status_code == 401
    assert _metrics(h, key).status_code == 403  # an agent key never reads metrics
    assert _metrics(h, h.gateway_token).status_code == 403
    for reader in (METRICS_TOKEN, h.admin_token):
        r = _metrics(h, reader)
        assert r.status_code == 200, r.text
        assert "# TYPE aaf_requests_total counter" in r.text
    _sign_in_viewer(h)
    assert _metrics(h).status_code == 200  # a viewer's dashboard session


def test_without_a_metrics_token_a_viewer_still_reads(harness: Harness) -> None:
    assert _metrics(harness).status_code == 401
    assert _metrics(harness, METRICS_TOKEN).status_code == 401
    _sign_in_viewer(harness)
    assert _metrics(harness).status_code == 200


def test_an_owner_can_make_metrics_public_and_private_again(harness: Harness) -> None:
    assert harness.admin("GET", "/v1/settings").json()["metrics_public"] is False
    r = harness.admin("PATCH", "/v1/settings", {"metrics_public": True})
    assert r.status_code == 200, r.text
    assert r.json()["metrics_public"] is True
    assert _metrics(harness).status_code == 200
    csrf = _sign_in_viewer(harness)
    denied = harness.call(
        "PATCH", "/v1/settings", headers={"X-CSRF-Token": csrf}, json={"metrics_public": False}
    )
    assert denied.status_code == 403
    harness.client.cookies.clear()
    harness.admin("PATCH", "/v1/settings", {"metrics_public": False})
    assert _metrics(harness).status_code == 401
    audit = harness.admin("GET", "/v1/audit?event_type=settings.updated").json()["events"]
    assert any("metrics_public" in e["data"]["changed"] for e in audit)


def test_the_operator_flag_makes_metrics_public(harness_factory: Any) -> None:
    h: Harness = harness_factory(metrics_public=True)
    assert _metrics(h).status_code == 200


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_agent_chosen_action_types_fold_into_other(harness: Harness) -> None:
    key = harness.create_agent("Bot", rate_limit_per_minute=100_000)
    for i in range(300):
        spec = {"type": f"made.up{i}.action", "resource": {"provider": f"prov{i}"}}
        r = harness.agent(key, "POST", "/v1/actions", {"action_spec": spec})
        assert r.status_code == 200, r.text
    assert harness.agent(key, "POST", "/v1/actions", {"action_spec": SPEC}).status_code == 200
    text = _metrics(harness, harness.admin_token).text
    series = _series(text, "aaf_requests_total")
    assert 'connector="other"' in "".join(series)
    assert 'action_type="other"' in "".join(series)
    assert 'action_type="github.pr.merge"' in "".join(series)  # the catalogue keeps its names
    assert not re.search(r"made\.up\d+|prov\d+", text)
    assert len(series) == 2
    folded = [s for s in series if 'action_type="other"' in s]
    assert folded[0].endswith(" 300.0")


def test_label_sets_are_capped_and_the_folded_samples_counted(harness_factory: Any) -> None:
    h: Harness = harness_factory(metrics_max_label_sets=5)
    known = sorted(t for t in catalogue_action_types() if t.startswith("github."))[:12]
    records = [
        {"request_id": f"r{i}", "agent": f"Bot{i}", "connector": "github", "action": t}
        for i, t in enumerate(known)
    ]
    r = h.gateway("POST", "/v1/gateway/traffic", {"records": records})
    assert r.status_code == 200, r.text
    text = _metrics(h, h.admin_token).text
    series = _series(text, "aaf_requests_total")
    assert len(series) == 6  # the cap, plus the one set everything beyond it folds into
    assert any('agent="other",connector="other"' in s and s.endswith(" 7.0") for s in series)
    assert 'aaf_metrics_folded_samples_total{metric="aaf_requests_total"} 7.0' in text
