"""Through a real gateway (127.0.0.1): a rule naming one detector refuses what the scanner
could not read.

The review's case, end to end: a multipart upload whose part is in an encoding no reader
here knows went upstream past ``content.pii contains card_number`` (deny), although it may
hold a card number. Now it is refused (403, the rule in the answer, where in the reason) at
``full_enforce`` and recorded ``would_deny`` at ``monitor``; a ``redact`` rule naming
``card_number`` refuses to forward it unredacted (403); an answer that cannot be read is
cut by ``response.injection contains injection.ignore_instructions``. Uploads that can be
read are decided on what they hold, as before. The property over every operator:
``test_content_unread_named.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.core.test_content_unreadable import PARTS, _part
from tests.core.test_content_unreadable_gateway import UNREADABLE_ANSWER
from tests.proxy.rawupstream import RawUpstream, ask, http_answer, json_body, record_at, status_of
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

HOST = "notes.example.org"
FORM_DATA = "multipart/form-data; boundary=XX"


def _policy(decision: str) -> dict[str, Any]:
    return {"name": "guard", "rules": [
        {"name": "no-cards", "decision": decision, "reason": "card numbers stay home",
         "conditions": [{"field": "content.pii", "operator": "contains", "value": "card_number"}]},
        {"name": "cut-ignore", "decision": "deny", "conditions": [
            {"field": "response.injection", "operator": "contains",
             "value": "injection.ignore_instructions"}]},
    ]}  # fmt: skip


#: One gateway per case: (enforcement level, what the card rule decides).
CASES = {"full_enforce": ("full_enforce", "deny"), "monitor": ("monitor", "deny"),
         "redact": ("full_enforce", "redact")}  # fmt: skip
CARD = _part("note", ["Content-Type: text/plain"], b"card 4242 4242 4242 4242") + b"--XX--\r\n"
CLEAN = _part("note", ["Content-Type: text/plain"], b"plain words") + b"--XX--\r\n"
UNREAD_ROWS = [(r[1], r[3]) for r in PARTS]
UNREAD_IDS = [r[0] for r in PARTS]
Gateways = dict[str, tuple[RunningGateway, StaticControl]]


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    started: Gateways = {}
    resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{upstream.port}"])
    for case, (level, decision) in CASES.items():
        snap = snapshot([rule("http.*", "allow")], level=level,
                        connectors=[connector("generic", domains=[HOST], credential=None)],
                        policies=[{"name": "guard", "document": _policy(decision)}])  # fmt: skip
        started[case] = start_gateway(tmp_path_factory.mktemp(case), None, snap, resolve=resolve)
    yield started
    for running, _ in started.values():
        running.stop()


def _post(gateways: Gateways, case: str, path: str, body: bytes) -> bytes:
    return ask(gateways[case][0], HOST, path, "POST", (f"Content-Type: {FORM_DATA}",), body)


def _record(gateways: Gateways, case: str, path: str) -> dict[str, Any]:
    return record_at(gateways[case][1], path)


def _forwarded(upstream: RawUpstream, path: str) -> bytes | None:
    bodies = [body for head, body in upstream.received if head.split(b" ", 2)[1] == path.encode()]
    return bodies[-1] if bodies else None


@pytest.mark.parametrize(("body", "where"), UNREAD_ROWS, ids=UNREAD_IDS)
def test_an_upload_that_cannot_be_read_is_refused_by_a_rule_naming_card_number(
    gateways: Gateways, upstream: RawUpstream, body: bytes, where: str
) -> None:
    """Before: 200, forwarded as it was (``content.pii`` held only ``unreadable_encoding``)."""
    path = f"/refused/{where}/{len(upstream.received)}"
    answer = _post(gateways, "full_enforce", path, body)
    assert status_of(answer) == 403
    assert json_body(answer)["rule"] == "guard/no-cards"
    assert _forwarded(upstream, path) is None
    record = _record(gateways, "full_enforce", path)
    assert record["decision"] == "deny"
    assert f"unreadable_encoding at {where}+0" in record["reason"]


def test_at_monitor_it_is_forwarded_and_recorded_as_it_would_have_been_denied(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    """Before: recorded ``allow`` with no would-be outcome."""
    body, where = UNREAD_ROWS[0]
    path = "/monitored/unread"
    assert status_of(_post(gateways, "monitor", path, body)) == 200
    assert _forwarded(upstream, path) == body
    record = _record(gateways, "monitor", path)
    assert (record["decision"], record["would_outcome"]) == ("allow", "would_deny")
    assert f"unreadable_encoding at {where}+0" in record["reason"]


@pytest.mark.parametrize(("body", "where"), UNREAD_ROWS, ids=UNREAD_IDS)
def test_a_redact_rule_naming_card_number_refuses_an_upload_it_cannot_read(
    gateways: Gateways, upstream: RawUpstream, body: bytes, where: str
) -> None:
    """It cannot rewrite what it did not read. Before: 200, forwarded unredacted."""
    path = f"/redact/{where}/{len(upstream.received)}"
    answer = _post(gateways, "redact", path, body)
    assert status_of(answer) == 403
    assert f"a redact rule cannot rewrite unreadable_encoding at {where}+0" in answer.decode()
    assert _forwarded(upstream, path) is None


def test_a_redact_rule_naming_card_number_still_redacts_what_it_reads(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    path = "/redact/read"
    assert status_of(_post(gateways, "redact", path, CARD)) == 200
    sent = _forwarded(upstream, path)
    assert sent is not None
    assert b"[REDACTED:card_number]" in sent
    assert b"4242 4242" not in sent


@pytest.mark.parametrize(("case", "status"), [("full_enforce", 403), ("monitor", 200)])
def test_uploads_that_can_be_read_are_decided_on_what_they_hold(
    gateways: Gateways, upstream: RawUpstream, case: str, status: int
) -> None:
    assert status_of(_post(gateways, case, f"/read/card/{case}", CARD)) == status
    assert status_of(_post(gateways, case, f"/read/clean/{case}", CLEAN)) == 200
    assert _forwarded(upstream, f"/read/clean/{case}") == CLEAN


def test_an_answer_that_cannot_be_read_is_cut_by_a_rule_naming_one_marker(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    """Before: relayed (the rule did not match ``[unreadable_encoding]``)."""
    path = "/answers/unread"
    upstream.answers[path] = UNREADABLE_ANSWER
    answer = ask(gateways["full_enforce"][0], HOST, path)
    assert status_of(answer) == 502
    assert json_body(answer)["error"] == "response_blocked"
    said = "response cut by rule `guard/cut-ignore`: unreadable_encoding at multipart.doc+0"
    assert said in _record(gateways, "full_enforce", path)["reason"]


def test_an_answer_that_can_be_read_is_relayed(gateways: Gateways, upstream: RawUpstream) -> None:
    path = "/answers/read"
    upstream.answers[path] = http_answer(b'{"text": "the weather is fine"}')
    assert status_of(ask(gateways["full_enforce"][0], HOST, path)) == 200
