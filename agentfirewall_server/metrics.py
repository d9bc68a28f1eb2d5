"""Prometheus metrics (tameflare-facts.md section 7.3), one registry per app.

Label values an agent chooses cannot grow the registry without bound (docs/server.md,
"Metrics access"):

- an action type outside the connector catalogue is counted as ``other``, and so is a
  connector (provider) no connector registers;
- each labelled metric holds at most ``max_label_sets`` label sets, and one agent at most
  a tenth of them as they are: a sample whose new set does not fit is counted with its
  action type as ``other``, then its connector too (its agent kept), and only when the
  metric has no room for that either, under ``other`` for every label. So one agent
  cannot take the other agents' series. ``aaf_metrics_folded_samples_total{metric=...}``
  counts the samples folded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OTHER", "BoundedLabels", "Metrics", "catalogue_action_types"]

OTHER = "other"
#: From 0.1 ms (a gateway decides in microseconds) to 1 s (a credential fetched first).
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                     0.1, 0.25, 0.5, 1.0)  # fmt: skip
_FALLBACK_METHODS = ("get", "head", "options", "post", "put", "patch", "delete")
#: The label sets (as given) whose resolved child `Metrics.count_request` remembers.
_MAX_REMEMBERED = 4096


class _Child(Protocol):
    def inc(self, amount: float = 1) -> None: ...


_M = TypeVar("_M", Counter, Gauge)


@cache
def catalogue_action_types() -> frozenset[str]:
    """Every action type a built-in connector can name, fallbacks included."""
    from agentfirewall.connectors import connector_types, get_connector

    names: set[str] = set()
    for ctype in connector_types():
        names.update(info.type for info in get_connector(ctype).actions())
        names.update(f"{ctype}.unknown.{m}" for m in _FALLBACK_METHODS)
    return frozenset(names)


@cache
def _connector_names() -> frozenset[str]:
    from agentfirewall.connectors import connector_types

    return frozenset(connector_types())


#: The labels folded to ``other``, one after another, when a label set does not fit.
_FOLD_ORDER = ("action_type", "connector")


class BoundedLabels(Generic[_M]):
    """A labelled metric that keeps at most `cap` label sets, folding in stages.

    A new label set is kept as it is while the metric has room and, when it has an
    ``agent`` label, while that agent holds fewer than a tenth of `cap` sets kept as they
    were given. Otherwise its action type becomes ``other``, then its connector (the
    labels of :data:`_FOLD_ORDER` it has), until a set the metric holds or has room for
    is found; failing that, every label is ``other``. Once refused, a set folds the same
    way for good (the counts only grow), so a gauge's ``inc`` and ``dec`` meet.
    """

    def __init__(
        self, name: str, metric: _M, names: tuple[str, ...], cap: int, folded: Counter
    ) -> None:
        self.metric: _M = metric
        self._names = names
        self._cap = cap
        self._share = max(1, cap // 10)
        self._agent = names.index("agent") if "agent" in names else None
        self._stages = [names.index(n) for n in _FOLD_ORDER if n in names]
        self._folded = folded.labels(metric=name)
        self._children: dict[tuple[str, ...], _M] = {}
        self._given: dict[str, int] = {}  # per agent: its sets kept as given
        self._other: _M | None = None

    def labels(self, *values: str, **named: str) -> _M:
        """The child for these label values (positional or by name), bounded."""
        key = values or tuple(named[n] for n in self._names)
        child = self._children.get(key)
        if child is not None:
            return child
        if len(self._children) < self._cap:
            if self._agent is None:
                return self._add(key)
            agent = key[self._agent]
            if self._given.get(agent, 0) < self._share:
                self._given[agent] = self._given.get(agent, 0) + 1
                return self._add(key)
        self._folded.inc()
        folded = list(key)
        for index in self._stages:
            folded[index] = OTHER
            child = self._children.get(tuple(folded))
            if child is not None:
                return child
            if len(self._children) < self._cap:
                return self._add(tuple(folded))
        if self._other is None:
            self._other = self.metric.labels(*(OTHER for _ in self._names))
        return self._other

    def _add(self, key: tuple[str, ...]) -> _M:
        child = self._children[key] = self.metric.labels(*key)
        return child

    def kept(self, values: tuple[str, ...]) -> _M | None:
        """The child of this label set if it is kept as given (not folded), else None."""
        return self._children.get(values)

    def clear(self) -> None:
        """Drop every label set (a gauge rebuilt from the current state)."""
        self.metric.clear()
        self._children.clear()
        self._given.clear()
        self._other = None

    def __len__(self) -> int:
        return len(self._children)


class Metrics:
    def __init__(self, *, max_label_sets: int = 1000) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        cap = max_label_sets
        self.folded = Counter(
            "aaf_metrics_folded_samples",
            "Samples counted under `other` because their metric reached its label-set cap",
            ["metric"],
            registry=r,
        )

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> BoundedLabels[Counter]:
            made = Counter(name, doc, labels, registry=r)
            return BoundedLabels(name, made, labels, cap, self.folded)

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> BoundedLabels[Gauge]:
            made = Gauge(name, doc, labels, registry=r)
            return BoundedLabels(name, made, labels, cap, self.folded)

        self.requests = counter(
            "aaf_requests_total",
            "Decisions made, by agent, connector, decision and action type",
            ("agent", "connector", "decision", "action_type"),
        )
        self._request_children: dict[tuple[str, str, str, str], _Child] = {}
        self.denied = counter(
            "aaf_requests_denied_total",
            "Denied requests, by reason",
            ("agent", "connector", "reason"),
        )
        self.approved = counter(
            "aaf_requests_approved_total", "Approvals granted", ("agent", "connector")
        )
        self.duration = Histogram(
            "aaf_request_duration_seconds",
            "Time to answer an SDK action request or execute it, and a proxied request's "
            "time through the gateway and its upstream (an approval hold excluded)",
            registry=r,
        )
        # no labels: one series whatever the traffic (what a gateway reports per request)
        self.proxy_overhead = Histogram(
            "aaf_proxy_overhead_seconds",
            "A gateway's own time per proxied request (decision and credential injection, "
            "until forwarded or answered): the upstream and any approval hold excluded",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.kill_switch = gauge(
            "aaf_kill_switch_active", "1 while a kill switch is active", ("scope",)
        )
        self.approvals_pending = Gauge(
            "aaf_approvals_pending", "Approvals waiting for a human", registry=r
        )
        self.connector_errors = counter(
            "aaf_connector_errors_total",
            "Upstream errors while executing actions",
            ("connector", "error_type"),
        )
        self.rate_limit_hits = counter(
            "aaf_rate_limit_hits_total", "Requests refused by the rate limit", ("agent",)
        )
        # budget names are the admins' (a bounded set): labels as they are
        self.budget_used = gauge(
            "aaf_budget_used", "Spent (and reserved) in the budget's current window", ("budget",)
        )
        self.budget_limit = gauge("aaf_budget_limit", "The budget's limit", ("budget",))
        self.budget_refusals = counter(
            "aaf_budget_refusals_total",
            "Requests past a budget, by budget and outcome (deny, require_approval)",
            ("budget", "outcome"),
        )
        self.grant_uses = counter(
            "aaf_grant_uses_total", "Requests let through by a grant", ("agent",)
        )
        # live x shadow verdict x source: at most 3 x 3 x 2 label sets (shadow.py)
        self.shadow_decisions = Counter(
            "aaf_shadow_decisions",
            "Decisions judged under the shadow configuration, by live and shadow verdict",
            ["live", "shadow", "source"],
            registry=r,
        )
        # call x reason: at most 2 x 5 label sets (notify/delivery.py, REASONS)
        self.slack_dropped = Counter(
            "aaf_slack_messages_dropped",
            "Slack approval messages given up, by call (post, update) and reason "
            "(ratelimited, unavailable, refused, queue_full, shutdown)",
            ["call", "reason"],
            registry=r,
        )
        # the agent's name for its long-polls; `dashboard` for event streams, `gateway` for
        # the gateways' long-polls (config and approvals)
        self.active_connections = gauge(
            "aaf_active_connections", "Long-polls and event streams open", ("agent",)
        )

    @staticmethod
    def action_label(action_type: str) -> str:
        """The action type when the catalogue names it, else ``other`` (empty stays empty)."""
        if not action_type or action_type in catalogue_action_types():
            return action_type
        return OTHER

    @staticmethod
    def connector_label(connector: str) -> str:
        """The connector type when one is registered, else ``other`` (empty stays empty)."""
        return connector if not connector or connector in _connector_names() else OTHER

    @contextlib.contextmanager
    def connection_open(self, agent: str) -> Iterator[None]:
        """One long-poll or event stream in ``aaf_active_connections`` while it lasts."""
        gauge = self.active_connections.labels(agent=agent)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def count_request(self, agent: str, connector: str, decision: str, action_type: str) -> None:
        """One decision in ``aaf_requests_total``, with the chosen labels folded. The child
        of a label set kept as given is remembered (a kept set stays kept: the counts only
        grow); a folded one is looked up each time, each sample counted as folded."""
        key = (agent, connector, decision, action_type)
        child = self._request_children.get(key)
        if child is None:
            labels = (
                agent,
                self.connector_label(connector),
                decision,
                self.action_label(action_type),
            )
            child = self.requests.labels(*labels)
            if (
                self.requests.kept(labels) is child
                and len(self._request_children) < _MAX_REMEMBERED
            ):
                self._request_children[key] = child
        child.inc()
