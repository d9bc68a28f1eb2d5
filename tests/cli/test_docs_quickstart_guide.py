"""docs/quickstart.md's "From the integration guide": each replacement it gives exists as written.

The integration guide's migration steps name `go run ./cmd/gateway`, a compose service
`gateway` and a GitHub PAT field, none of which this edition has; the section says what to
run instead. Offline (test_docs_commands.py runs the page's ```bash blocks; this section's
commands are inline, beside the walk-through): each `tf` command and the gateway's command
line parse, the compose service exists and starts what the page says it does, and the
dashboard page it names is one.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from agentfirewall_proxy.cli.app import build_parser
from agentfirewall_proxy.main import parse_args
from agentfirewall_server.dashboard.pages import PAGES
from tests.cli.conftest import REPO

SECTION = (
    (REPO / "docs" / "quickstart.md")
    .read_text(encoding="utf-8")
    .split("## From the integration guide", 1)[1]
)
COMMANDS = re.findall(r"`([^`]+)`", SECTION)


def _commands(start: str) -> list[list[str]]:
    found = [shlex.split(c) for c in COMMANDS if c.startswith(start)]
    assert found, start
    return found


def test_each_tf_command_parses() -> None:
    for argv in _commands("tf "):
        args, extra = build_parser().parse_known_args(argv[1:])
        assert not extra, argv
        assert getattr(args, "handler", None) is not None, argv
    assert ["tf", "up", "--agent-ports", "10001-10100"] in _commands("tf up")
    assert ["tf", "connector", "add", "github", "--token-env", "GITHUB_TOKEN"] in _commands("tf ")


def test_the_gateway_command_line_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = [c for c in COMMANDS if "python -m agentfirewall_proxy " in c]
    env, _, args = line.partition(" python -m agentfirewall_proxy ")
    assert env == "AGENTFIREWALL_GATEWAY_TOKEN=$(cat .tf/gateway.token)"  # what `tf up` made
    monkeypatch.setenv("AGENTFIREWALL_GATEWAY_TOKEN", "tfg_" + "x" * 40)
    options = parse_args(shlex.split(args))
    assert options.control_plane == "http://127.0.0.1:3000"
    assert (options.listen_host, options.listen_port) == ("127.0.0.1", 8444)  # not tf up's 8443


def test_the_compose_service_and_what_it_starts() -> None:
    (argv,) = _commands("docker compose -f")
    assert argv[:7] == ["docker", "compose", "-f", "deploy/compose.yaml", "--env-file",
                        "deploy/.env", "up"]  # fmt: skip
    service = argv[-1]
    services = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())["services"]
    assert service == "gateway-1" in services
    started, todo = set(), [service]
    while todo:  # `up SERVICE` starts what it depends on, and so on
        for name in services[todo.pop()].get("depends_on", {}):
            if name not in started:
                started.add(name)
                todo.append(name)
    assert started == {"lb", "control-plane-a", "control-plane-b", "postgres"}
    assert "the nginx load balancer, both control-plane replicas and PostgreSQL" in SECTION
    assert (REPO / "deploy" / ".env.example").is_file()  # deploy.md: copied to deploy/.env


def test_the_dashboard_page_it_names() -> None:
    (page,) = [p for p in PAGES if f"/dashboard{p.path}" in COMMANDS]
    assert (page.path, page.nav) == ("/connectors", "Connectors")
    template = (REPO / "agentfirewall_server/dashboard/templates" / page.template).read_text()
    assert "Add connector" in template
    assert "Credential (write-only)" in template
