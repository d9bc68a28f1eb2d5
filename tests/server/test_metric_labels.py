"""One agent cannot take the other agents' series: a metric's label sets are capped per
agent, and what does not fit folds in stages (action type, connector, then everything)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agentfirewall_server.metrics import Metrics, catalogue_action_types

TYPES = sorted(t for t in catalogue_action_types() if t.startswith("github."))[:40]


def _series(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _requests(m: Metrics, agent: str, decision: str, action_type: str) -> float | None:
    labels = {"agent": agent, "connector": "github", "decision": decision,
              "action_type": action_type}  # fmt: skip
    return m.registry.get_sample_value("aaf_requests_total", labels)


def test_one_agent_cannot_take_the_other_agents_series() -> None:
    m = Metrics(max_label_sets=20)  # a tenth each: 2 sets as given
    for action_type in TYPES:
        m.count_request("Noisy", "github", "allow", action_type)
    m.count_request("Victim", "github", "deny", "github.pr.merge")
    assert _requests(m, "Victim", "deny", "github.pr.merge") == 1.0
    # past its share the noisy agent keeps its name and connector, its action types fold
    assert _requests(m, "Noisy", "allow", "other") == len(TYPES) - 2
    folded = {"metric": "aaf_requests_total"}
    assert m.registry.get_sample_value("aaf_metrics_folded_samples_total", folded) == 38.0


def test_label_sets_stay_bounded_whatever_the_agents() -> None:
    m = Metrics(max_label_sets=20)
    for agent in range(50):
        for action_type in TYPES[:5]:
            m.count_request(f"agent{agent}", "github", "allow", action_type)
            m.denied.labels(f"agent{agent}", "github", "policy").inc()
    for name in ("aaf_requests_total", "aaf_requests_denied_total"):
        series = _series(m.registry, name)
        assert len(series) <= 21  # the cap, and the set of every label `other`
        assert sum(series.values()) == 250.0  # every sample counted somewhere


def test_a_folded_gauge_goes_back_down() -> None:
    m = Metrics(max_label_sets=3)
    children = [m.active_connections.labels(agent=f"agent{i}") for i in range(6)]
    for child in children:
        child.inc()
    for i in range(6):
        m.active_connections.labels(agent=f"agent{i}").dec()
    assert set(_series(m.registry, "aaf_active_connections").values()) == {0.0}
