"""A fresh agent on the shared live server, and the admin calls SDK tests need.

Every test gets its own agent (unique name), so tests share one server without seeing
each other's actions, approvals or policies (policies are scoped to the agent).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentfirewall import AgentFirewall, AsyncAgentFirewall
from tests.fakes import FakeUpstream, FakeUpstreams, github, stripe
from tests.livesrv import LiveServer

__all__ = ["ExecutingServer", "LiveAgent", "SendGridFake", "executing_server", "new_agent"]


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


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


class SendGridFake:
    """A fake SendGrid v3 on plain threads (``POST /v3/mail/send`` answers 202)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append(Received("POST", self.path, headers, body))
                self.send_response(202 if self.path == "/v3/mail/send" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def received(self, method: str | None = None, path: str | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def clear(self) -> None:
        self.requests.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@dataclass
class ExecutingServer:
    """A server whose github, stripe and sendgrid connectors point at fakes (Mode A)."""

    server: LiveServer
    fakes: FakeUpstreams | None
    sendgrid: SendGridFake

    agents: list[LiveAgent] = field(default_factory=list)

    def agent(self, prefix: str = "exec", **fields: Any) -> LiveAgent:
        made = new_agent(self.server, prefix, **fields)
        self.agents.append(made)
        return made

    def fake(self, name: str) -> FakeUpstream:
        assert self.fakes is not None, "started with sendgrid_only"
        return self.fakes[name]

    def clear(self) -> None:
        self.sendgrid.clear()
        for fake in self.fakes.fakes.values() if self.fakes else ():
            fake.clear()

    def close_agents(self) -> None:
        for made in self.agents:
            made.close()


@contextlib.contextmanager
def executing_server(data_dir: Path, *, sendgrid_only: bool = False) -> Iterator[ExecutingServer]:
    """Start fakes and a server with one connector per fake; stop both after.

    `sendgrid_only` skips the asyncio fakes of tests/fakes (for the CrewAI environment).
    """
    with contextlib.ExitStack() as stack:
        fakes = None if sendgrid_only else FakeUpstreams([github(), stripe()]).start()
        if fakes is not None:
            stack.callback(fakes.stop)
        sendgrid = SendGridFake()
        stack.callback(sendgrid.stop)
        server = LiveServer.start(data_dir)
        stack.callback(server.stop)
        urls = {"sendgrid": sendgrid.http_url}
        if fakes is not None:
            urls |= {"github": fakes["github"].http_url, "stripe": fakes["stripe"].http_url}
        for kind, url in urls.items():
            response = server.admin(
                "POST",
                "/v1/connectors",
                json={"type": kind, "token": _TOKENS[kind], "base_url": url},
            )
            assert response.status_code == 201, response.text
        running = ExecutingServer(server, fakes, sendgrid)
        stack.callback(running.close_agents)
        yield running


_TOKENS = {
    "github": "ghp_vaulted_github",
    "stripe": "sk_test_vaulted_stripe",
    "sendgrid": "SG.vaulted_sendgrid",
}
