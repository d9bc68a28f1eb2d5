"""Through a real gateway (127.0.0.1): an ordinary text upload is decided on what it holds.

The review's case, end to end: a 54 KB mysqldump (``--`` comment lines past ``MAX_PARTS``,
``DEFAULT CHARSET=utf8mb4``) uploaded by httpx as a multipart file, under a policy whose only
content rule is ``content.pii contains email``, was refused 403 ``unreadable_encoding at
multipart+0``. Now it goes upstream as it was sent; the same dump holding an e-mail address
is refused by that rule, for the address. The table of text files:
``test_content_multipart_text.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.core.test_content_multipart_text import EMAIL, mysqldump
from tests.proxy.rawupstream import RawUpstream, record_at
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

HOST = "files.example.org"
POLICY = {"name": "guard", "rules": [
    {"name": "no-email", "decision": "deny", "reason": "addresses stay home",
     "conditions": [{"field": "content.pii", "operator": "contains", "value": "email"}]},
]}  # fmt: skip


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, StaticControl]]:
    snap = snapshot([rule("http.*", "allow")], level="full_enforce",
                    connectors=[connector("generic", domains=[HOST], credential=None)],
                    policies=[{"name": "guard", "document": POLICY}])  # fmt: skip
    resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{upstream.port}"])
    running = start_gateway(Path(tmp_path_factory.mktemp("gw")), None, snap, resolve=resolve)
    yield running
    running[0].stop()


def _upload(running: RunningGateway, path: str, dump: bytes) -> httpx.Response:
    """The dump uploaded as a file by httpx, through the gateway (a plain-HTTP proxy)."""
    with httpx.Client(proxy=running.proxy_url(), trust_env=False, timeout=30) as client:
        files = {"file": ("shop.sql", dump, "application/sql")}
        return client.post(f"http://{HOST}{path}", data={"title": "nightly"}, files=files)


def test_a_sql_dump_upload_goes_upstream_as_it_was_sent(
    gateway: tuple[RunningGateway, StaticControl], upstream: RawUpstream
) -> None:
    """Before: 403 ``unreadable_encoding at multipart+0``."""
    running, control = gateway
    dump = mysqldump()
    answer = _upload(running, "/dumps/clean", dump)
    assert answer.status_code == 200, answer.text
    record = record_at(control, "/dumps/clean")
    assert record["decision"] == "allow", record["reason"]
    assert "unreadable" not in record["reason"]
    received = [body for head, body in upstream.received if b" /dumps/clean " in head]
    assert len(received) == 1
    assert dump in received[0]  # (relayed as it was sent, byte for byte)


def test_the_same_dump_holding_an_email_address_is_refused_for_it(
    gateway: tuple[RunningGateway, StaticControl], upstream: RawUpstream
) -> None:
    running, control = gateway
    answer = _upload(running, "/dumps/address", mysqldump(row=f"'{EMAIL}','done'"))
    assert answer.status_code == 403
    assert answer.json()["rule"] == "guard/no-email"
    reason = record_at(control, "/dumps/address")["reason"]
    assert "email at body+" in reason
    assert "unreadable" not in reason
    assert EMAIL not in reason  # (the address is never echoed)
    assert "/dumps/address" not in upstream.paths()
