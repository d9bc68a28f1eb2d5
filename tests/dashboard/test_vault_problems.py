"""A credential that does not decrypt: the overview names its connector and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import credentials

if TYPE_CHECKING:
    from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.browser


def test_overview_names_the_connector_whose_credential_does_not_decrypt(dash: Dashboard) -> None:
    ids = []
    for domain in ("vault-good.example.com", "vault-bad.example.com"):
        body = {"type": "generic", "domains": [domain], "token": f"tok-{domain}"}
        ids.append(dash.api("POST", "/connectors", body)["id"])
    good, bad = ids
    db = Database(f"sqlite:///{dash.data_dir / 'agentfirewall.db'}")
    try:
        query = select(credentials.c.ciphertext).where(credentials.c.owner == good)
        sealed = db.read_sync(lambda c: c.execute(query).scalar_one())
        # the good connector's ciphertext moved onto the other: bound to its owner, it fails
        db.write_sync(
            lambda c: c.execute(
                update(credentials).where(credentials.c.owner == bad).values(ciphertext=sealed)
            )
        )
    finally:
        db.close()
    dash.api("POST", "/agents", {"name": "Vault Reload Bot"})  # a config change: reload
    watched = dash.open("viewer")
    dash.goto(watched.page, "/overview")
    problems = watched.page.locator("#vault-problems")
    expect(problems).to_be_visible()
    expect(problems).to_contain_text(bad)
    expect(problems).to_contain_text("tf connector add")
    expect(problems).not_to_contain_text(good)
    watched.assert_clean()
