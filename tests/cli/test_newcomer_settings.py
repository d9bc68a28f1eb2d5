"""Settings > Integrations "Gateway URL": the address the running gateways listen on is shown
beside it.

The setting said `http://localhost:8443` whatever port `tf up`'s gateway took (in the
README's two-project setup, :8443 is the other project's gateway), and nothing reads it: it is
what people are told (the integration guide's migration step 3). Settings now also answer
`gateways_online`, the addresses from the gateways' own heartbeats, and the page shows them.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

import agentfirewall_server.dashboard as dashboard
from tests.cli.conftest import Project, wait_for

PAGE = Path(dashboard.__file__).parent / "templates" / "settings.html"


def _settings(project: Project, up: dict[str, Any], **patch: object) -> dict[str, Any]:
    token = (project.root / ".tf" / "admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{up['server_url']}/api/v1/settings"
    answer = (
        httpx.patch(url, json=patch, headers=headers) if patch else httpx.get(url, headers=headers)
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_settings_show_where_the_running_gateway_listens(bare_project: Project) -> None:
    bare_project.tf("init", "--port", "0", "--proxy-port", "0")
    up = bare_project.up()
    assert up["proxy_url"] != "http://127.0.0.1:8443"  # a port of its own, as beside another
    seen = wait_for(
        lambda: _settings(bare_project, up)["gateways_online"], what="the gateway's heartbeat"
    )
    assert seen == [up["proxy_url"]]
    # the setting stays what people are told, as the integration guide has it
    settings = _settings(bare_project, up)
    assert settings["gateway_url"] == "http://localhost:8443"
    told = _settings(bare_project, up, gateway_url="http://gateway.internal:8443")
    assert told["gateway_url"] == "http://gateway.internal:8443"
    assert told["gateways_online"] == [up["proxy_url"]]
    bare_project.stop_up()


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids[str(found["id"])] = found


def test_the_settings_page_has_a_place_for_the_running_gateways() -> None:
    parsed = _Ids()
    parsed.feed(PAGE.read_text())
    field = parsed.ids["s-gateway"]
    live = parsed.ids["s-gateway-live"]
    assert field.get("aria-describedby") == "s-gateway-live"
    assert live.get("aria-live") == "polite"
    script = (PAGE.parents[1] / "static" / "js" / "pages" / "settings.js").read_text()
    assert "gateways_online" in script
    assert "#s-gateway-live" in script
