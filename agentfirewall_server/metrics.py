"""Prometheus metrics (tameflare-facts.md section 7.3), one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aaf_requests_total",
            "Decisions made, by agent, connector, decision and action type",
            ["agent", "connector", "decision", "action_type"],
            registry=r,
        )
        self.denied = Counter(
            "aaf_requests_denied_total",
            "Denied requests, by reason",
            ["agent", "connector", "reason"],
            registry=r,
        )
        self.approved = Counter(
            "aaf_requests_approved_total", "Approvals granted", ["agent", "connector"], registry=r
        )
        self.duration = Histogram(
            "aaf_request_duration_seconds",
            "Time to answer an action request or execute it",
            registry=r,
        )
        self.kill_switch = Gauge(
            "aaf_kill_switch_active", "1 while a kill switch is active", ["scope"], registry=r
        )
        self.approvals_pending = Gauge(
            "aaf_approvals_pending", "Approvals waiting for a human", registry=r
        )
        self.connector_errors = Counter(
            "aaf_connector_errors_total",
            "Upstream errors while executing actions",
            ["connector", "error_type"],
            registry=r,
        )
        self.rate_limit_hits = Counter(
            "aaf_rate_limit_hits_total",
            "Requests refused by the rate limit",
            ["agent"],
            registry=r,
        )
        self.active_connections = Gauge(
            "aaf_active_connections", "Long-polls and event streams open", ["agent"], registry=r
        )
