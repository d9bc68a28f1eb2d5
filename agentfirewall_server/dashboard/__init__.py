"""The web dashboard: page shells and static assets served under `/dashboard`."""

from __future__ import annotations

from agentfirewall_server.dashboard.pages import PAGES, SECURITY_HEADERS, Page, routes

__all__ = ["PAGES", "SECURITY_HEADERS", "Page", "routes"]
