"""A fresh agent on the shared live server, and the admin calls SDK tests need.

Every test gets its own agent (unique name), so tests share one server without seeing
each other's actions, approvals or policies (policies are scoped to the agent).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from tests.fakes import FakeUpstream, FakeUpstreams, github, stripe
from tests.livesrv import LiveServer

__all__ = ["ExecutingServer", "LiveAgent", "executing_server", "new_agent", "sendgrid_fake"]


def new_agent(server: LiveServer, prefix: str = "sdk", **fields: Any) -> LiveAgent:
    """Register a uniquely named agent (rate limit high unless given)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    fields.setdefault("rate_limit_per_minute", 100_000)
    return LiveAgent(server, name, server.create_agent(name, **fields))


@dataclass
class LiveAgent:
    server: LiveServer
    name: str
    key: str
    opened: list[AgentFirewall] = field(default_factory=list)

    def firewall(self, **kwargs: Any) -> AgentFirewall:
        """A client for this agent, closed by :meth:`close` (the fixtures call it)."""
        client = AgentFirewall(api_key=self.key, base_url=self.server.api_url, **kwargs)
        self.opened.append(client)
        return client

    def close(self) -> None:
        for client in self.opened:
            client.close()

    def async_firewall(self, **kwargs: Any) -> AsyncAgentFirewall:
        return AsyncAgentFirewall(api_key=self.key, base_url=self.server.api_url, **kwargs)

    def env(self) -> dict[str, str]:
        """What an agent process needs: the seed's two variables."""
        return {"AAF_API_KEY": self.key, "AAF_BASE_URL": self.server.api_url}

    def _ok(self, method: str, path: str, json: Any = None) -> Any:
        response = self.server.admin(method, path, json=json)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def policy(self, rules_yaml: str, *, action_types: str = '["*"]') -> Any:
        """Install a policy scoped to this agent; `rules_yaml` is the `rules:` list."""
        document = (
            f"name: {self.name}-{uuid.uuid4().hex[:6]}\n"
            f"scope: {{action_types: {action_types}, agents: [{self.name}]}}\n"
            f"rules:\n{rules_yaml}"
        )
        return self._ok("POST", "/v1/policies", {"document": document})

    def require_approval(self, action_type: str, reason: str = "needs a human") -> Any:
        return self.policy(
            "  - name: hold\n"
            f"    conditions: {{all: [{{field: action_spec.type, operator: equals, "
            f"value: {action_type}}}]}}\n"
            "    decision: requires_approval\n"
            f"    reason: {reason}\n"
            "    risk_score: 70\n"
        )

    def deny(self, action_type: str, reason: str = "not allowed") -> Any:
        return self.policy(
            "  - name: block\n"
            f"    conditions: {{all: [{{field: action_spec.type, operator: equals, "
            f"value: {action_type}}}]}}\n"
            "    decision: deny\n"
            f"    reason: {reason}\n"
            "    risk_score: 90\n"
        )

    def pending(self) -> list[dict[str, Any]]:
        approvals = self._ok("GET", "/v1/approvals?status=pending")["approvals"]
        return [a for a in approvals if a.get("agent") == self.name]

    def decide_next(self, verdict: str = "approve", timeout: float = 20.0) -> dict[str, Any]:
        """Wait (bounded) for this agent's next pending approval and approve or deny it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.pending()
            if found:
                decided: dict[str, Any] = self._ok(
                    "POST",
                    f"/v1/approvals/{found[0]['id']}/{verdict}",
                    {"note": "decided by a test"},
                )
                return decided
            time.sleep(0.05)
        raise AssertionError(f"no pending approval for `{self.name}` within {timeout} s")

    def connector(self, kind: str, base_url: str, token: str, **extra: Any) -> Any:
        return self._ok(
            "POST", "/v1/connectors", {"type": kind, "token": token, "base_url": base_url, **extra}
        )


def sendgrid_fake() -> FakeUpstream:
    """A fake SendGrid v3 (``POST /v3/mail/send`` answers 202, as SendGrid does)."""
    fake = FakeUpstream(name="sendgrid", hostnames=("api.sendgrid.com",), app=None)  # type: ignore[arg-type]

    async def send(request: Request) -> Response:
        return Response(status_code=202)

    async def other(request: Request) -> Response:
        return JSONResponse({"ok": True, "path": request.url.path})

    fake.app = Starlette(
        routes=[Route("/v3/mail/send", send, methods=["POST"]), Route("/{path:path}", other)]
    )
    return fake


@dataclass
class ExecutingServer:
    """A server whose github, stripe and sendgrid connectors point at fakes (Mode A)."""

    server: LiveServer
    fakes: FakeUpstreams

    agents: list[LiveAgent] = field(default_factory=list)

    def agent(self, prefix: str = "exec", **fields: Any) -> LiveAgent:
        made = new_agent(self.server, prefix, **fields)
        self.agents.append(made)
        return made


@contextlib.contextmanager
def executing_server(data_dir: Path) -> Iterator[ExecutingServer]:
    """Start fakes and a server with one connector per fake; stop both after."""
    with FakeUpstreams([github(), stripe(), sendgrid_fake()]).start() as fakes:
        server = LiveServer.start(data_dir)
        running: ExecutingServer | None = None
        try:
            tokens = {
                "github": "ghp_vaulted_github",
                "stripe": "sk_test_vaulted_stripe",
                "sendgrid": "SG.vaulted_sendgrid",
            }
            for kind, token in tokens.items():
                response = server.admin(
                    "POST",
                    "/v1/connectors",
                    json={"type": kind, "token": token, "base_url": fakes[kind].http_url},
                )
                assert response.status_code == 201, response.text
            running = ExecutingServer(server, fakes)
            yield running
        finally:
            for made in running.agents if running else ():
                made.close()
            server.stop()
