"""Through a real gateway (127.0.0.1): what the scanner cannot read fails closed for a policy
that reads only ``content.pii`` and ``response.injection`` (no ``content.secrets`` rule).

The review's case, end to end: a multipart upload whose part is in a transfer encoding no
reader here knows went upstream past a ``content.pii`` deny rule, and an upstream's
multipart answer with such a part came back past a ``response.injection`` cut rule. Now
the request is refused (403, the rule and where in the reason) at ``full_enforce`` and
recorded ``would_deny`` at ``monitor``; the answer is cut (502) or, at ``monitor``,
relayed and flagged. The table of what cannot be read: ``test_content_unreadable.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.options import parse_resolve
from tests.core.test_content_unreadable import PARTS, _part
from tests.proxy.rawupstream import RawUpstream, ask, http_answer, json_body, record_at, status_of
from tests.proxy.support import RunningGateway, connector, rule, snapshot, start_gateway

HOST = "notes.example.org"
POLICY = {"name": "guard", "rules": [
    {"name": "no-pii", "decision": "deny", "reason": "personal data would leave",
     "conditions": [{"field": "content.pii", "operator": "exists"}]},
    {"name": "cut-injected", "decision": "deny",
     "conditions": [{"field": "response.injection", "operator": "exists"}]},
]}  # fmt: skip
FORM_DATA = "multipart/form-data; boundary=XX"
CLEAN = _part("note", ["Content-Type: text/plain; charset=utf-8"], b"plain words") + b"--XX--\r\n"
LEVELS = ("full_enforce", "monitor")
Gateways = dict[str, tuple[RunningGateway, StaticControl]]


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    server = RawUpstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    """One gateway per level, both in front of `upstream` (plain HTTP)."""
    started: Gateways = {}
    resolve = parse_resolve([f"{HOST}:80=127.0.0.1:{upstream.port}"])
    for level in LEVELS:
        snap = snapshot([rule("http.*", "allow")], level=level,
                        connectors=[connector("generic", domains=[HOST], credential=None)],
                        policies=[{"name": "guard", "document": POLICY}])  # fmt: skip
        started[level] = start_gateway(tmp_path_factory.mktemp(level), None, snap,
                                       resolve=resolve)  # fmt: skip
    yield started
    for running, _ in started.values():
        running.stop()


def _post(gateways: Gateways, level: str, path: str, body: bytes) -> bytes:
    return ask(gateways[level][0], HOST, path, "POST", (f"Content-Type: {FORM_DATA}",), body)


def _record(gateways: Gateways, level: str, path: str) -> dict[str, Any]:
    return record_at(gateways[level][1], path)


@pytest.mark.parametrize(("body", "where"), [(r[1], r[3]) for r in PARTS],
                         ids=[r[0] for r in PARTS])  # fmt: skip
def test_an_upload_that_cannot_be_read_is_refused_by_a_personal_data_rule(
    gateways: Gateways, upstream: RawUpstream, body: bytes, where: str
) -> None:
    """Before: 200, forwarded as it was (nothing found, so `content.pii` absent)."""
    path = f"/refused/{where}/{len(upstream.received)}"
    answer = _post(gateways, "full_enforce", path, body)
    assert status_of(answer) == 403
    assert json_body(answer)["rule"] == "guard/no-pii"
    assert path not in upstream.paths()
    assert f"unreadable_encoding at {where}+0" in _record(gateways, "full_enforce", path)["reason"]


def test_at_monitor_it_is_forwarded_and_recorded_as_it_would_have_been_denied(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    _, body, _, where = PARTS[0]
    path = "/monitored/upload"
    assert status_of(_post(gateways, "monitor", path, body)) == 200
    assert path in upstream.paths()
    record = _record(gateways, "monitor", path)
    assert (record["decision"], record["would_outcome"]) == ("allow", "would_deny")
    assert f"unreadable_encoding at {where}+0" in record["reason"]


@pytest.mark.parametrize("level", LEVELS)
def test_an_upload_that_can_be_read_passes(
    gateways: Gateways, upstream: RawUpstream, level: str
) -> None:
    path = f"/clean/{level}"
    assert status_of(_post(gateways, level, path, CLEAN)) == 200
    assert path in upstream.paths()


#: An upstream's multipart answer whose part no reader here reads.
UNREADABLE_ANSWER = http_answer(
    _part("doc", ["Content-Transfer-Encoding: x-gzip"], b"x") + b"--XX--\r\n", FORM_DATA.encode()
)


def test_an_answer_that_cannot_be_read_is_cut_by_an_injection_rule(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    """Before: relayed (``response.injection`` never held it)."""
    path = "/answers/cut"
    upstream.answers[path] = UNREADABLE_ANSWER
    answer = ask(gateways["full_enforce"][0], HOST, path)
    assert status_of(answer) == 502
    assert json_body(answer)["error"] == "response_blocked"
    said = "response cut by rule `guard/cut-injected`: unreadable_encoding at multipart.doc+0"
    assert said in _record(gateways, "full_enforce", path)["reason"]


def test_at_monitor_an_answer_that_cannot_be_read_is_relayed_and_flagged(
    gateways: Gateways, upstream: RawUpstream
) -> None:
    path = "/answers/flagged"
    upstream.answers[path] = UNREADABLE_ANSWER
    answer = ask(gateways["monitor"][0], HOST, path)
    assert status_of(answer) == 200
    assert answer.endswith(UNREADABLE_ANSWER[0].partition(b"\r\n\r\n")[2])
    said = "flagged by rule `guard/cut-injected (monitor: not enforced)`: unreadable_encoding"
    assert f"response {said} at multipart.doc+0" in _record(gateways, "monitor", path)["reason"]
