"""Every connector type in front of one reflecting upstream (``tests/fakes/reflect.py``).

:data:`TABLE` is the connector table the credential tests run over: every registered
type with a real credential, plus ``generic`` configured three more ways (declared TLS,
declared plain, no credential). :func:`start_reflecting` runs a gateway whose every
connector host resolves to the reflector (TLS and plain ports) and the WebSocket
reflector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.fakes import FakeUpstream, FakeUpstreams
from tests.fakes.reflect import WebSocketReflector, reflector
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway


@dataclass(frozen=True)
class Case:
    """One configured connector: where to send a request it names and allows."""

    name: str
    kind: str
    host: str
    path: str
    action: str
    credential: str | None
    base_url: str | None = None

    def config(self) -> dict[str, Any]:
        return connector(self.kind, id=f"conn_{self.name}", name=self.name, domains=[self.host],
                         credential=self.credential, base_url=self.base_url)  # fmt: skip


TABLE = [
    Case("github", "github", "api.github.com", "/user", "github.user.get",
         "ghp_realGithubToken0000000000000000000"),
    Case("openai", "openai", "api.openai.com", "/v1/models", "openai.model.list",
         "sk-realOpenAIKey000000000000000000"),
    Case("anthropic", "anthropic", "api.anthropic.com", "/v1/models", "anthropic.model.list",
         "sk-ant-realAnthropicKey0000000000"),
    Case("stripe", "stripe", "api.stripe.com", "/v1/customers", "stripe.customer.list",
         "sk_test_realStripeKey000000000000"),
    Case("slack", "slack", "slack.com", "/api/conversations.list", "slack.channel.list",
         "xoxb-real-slack-token-0000"),
    Case("sendgrid", "sendgrid", "api.sendgrid.com", "/v3/templates", "sendgrid.template.list",
         "SG.realSendgridKey.000000000000"),
    Case("mcp", "mcp", "mcp.example.com", "/mcp", "mcp.stream.open", "mcp-real-token-000000"),
    Case("webhook", "webhook", "hooks.example.com", "/hook", "webhook.get",
         "whk-real-webhook-secret-0000"),
    Case("generic", "generic", "example.org", "/echo", "http.get", "gen-real-secret-00000000"),
    Case("generic-tls", "generic", "tls.example.org", "/echo", "http.get",
         "gen-tls-secret-000000000", base_url="https://tls.example.org"),
    Case("generic-plain", "generic", "plain.example.org", "/echo", "http.get",
         "gen-plain-secret-00000000", base_url="http://plain.example.org"),
    Case("generic-open", "generic", "open.example.org", "/echo", "http.get", None),
]  # fmt: skip
CASES = {case.name: case for case in TABLE}
SECRETS = [case.credential for case in TABLE if case.credential]
WS_HOSTS = ("ws.github.com", "ws.plain.example")
WS_GITHUB = Case("ws-github", "github", "ws.github.com", "/socket", "github.unknown.get",
                 "ghp_webSocketToken000000000000000000")  # fmt: skip
WS_PLAIN = Case("ws-plain", "generic", "ws.plain.example", "/socket", "http.get",
                "ws-plain-secret-000000000", base_url="http://ws.plain.example")  # fmt: skip


class Reflecting:
    """The reflector, the WebSocket reflector and a gateway in front of both."""

    def __init__(self, tmp: Path) -> None:
        hosts = tuple(dict.fromkeys(case.host for case in TABLE))
        self.fakes = FakeUpstreams([reflector(hosts)]).start()
        self.ws = WebSocketReflector(self.fakes.ca, WS_HOSTS).start()
        cases = [*TABLE, WS_GITHUB, WS_PLAIN]
        rules = [rule(action, "allow") for action in dict.fromkeys(c.action for c in cases)]
        snap = snapshot(rules, connectors=[case.config() for case in cases])
        resolve = parse_resolve(self.fakes.resolve_entries() + self.ws.resolve_entries())
        self.gateway: RunningGateway
        self.control: StaticControl
        self.gateway, self.control = start_gateway(tmp, self.fakes, snap, resolve=resolve)

    @property
    def upstream(self) -> FakeUpstream:
        return self.fakes["reflect"]

    def stop(self) -> None:
        self.gateway.stop()
        self.ws.stop()
        self.fakes.stop()
