"""A viewer never reads a secret joined to a word, wherever the server shows it them.

A token the detectors find standing alone (``tests/core/test_content_joined_secrets.py``:
GitHub, Stripe, Slack, OpenAI, Anthropic, AWS, a JWT), joined to a word before or after it
by any joining character or an escape of one (``x-amz-meta-sk-proj-…``, ``meta%2Dghp_…``,
``ghp_…_v1``), held in an action spec's field, in the path, query or a header of a request
the gateway held, or in a traffic row's path: a viewer (its API token) reads none of it, in
any reading of any text of the answer (as written, percent- or plus-decoded, JSON-unescaped),
through a live server. Before, ``x-amz-meta-sk-proj-…``, ``meta_github_pat_…``,
``x-xoxb-…`` and ``ghp_…_meta`` were shown as written.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.core.test_content_joined_secrets import JOINED, JOINERS, PLACES, SECRETS, _joined
from tests.livesrv import LiveServer
from tests.server.test_viewer_held_request import SPEC, _leaked
from tests.server.test_viewer_masked import HELD, HOLD, _reader, _stored_token, _user


@dataclass
class Site:
    server: LiveServer
    agent_key: str
    viewer: httpx.Client
    made: itertools.count[int]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = LiveServer.start(tmp_path_factory.mktemp("viewer-joined") / "tf")
    viewer: httpx.Client | None = None
    try:
        assert server.admin("POST", "/v1/policies", {"document": HOLD}).status_code == 201
        uid = _user(server, "viewer@example.com", "viewer")
        viewer = _reader(server, _stored_token(server, uid, "viewer"))
        key = server.create_agent("Bot", sdk_default="allow", rate_limit_per_minute=100_000)
        yield Site(server, key, viewer, itertools.count(1))
    finally:
        if viewer is not None:
            viewer.close()
        server.stop()


def _read(site: Site, path: str) -> Any:
    answer = site.viewer.get(path)
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


def _shown_spec(site: Site, texts: list[str]) -> list[Any]:
    """What a viewer reads of an action spec holding `texts` (held for approval)."""
    spec = {"type": HELD, "resource": {"provider": "vault", "target": texts[0]},
            "parameters": {"joined": texts, "note": f"see {texts[-1]} then"}}  # fmt: skip
    made = site.server.agent(site.agent_key, "POST", "/v1/actions", {"action_spec": spec})
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "pending_approval", made.text
    approval, action = made.json()["approval"]["id"], made.json()["action_request_id"]
    return [_read(site, f"/api/v1/approvals/{approval}"), _read(site, f"/api/v1/actions/{action}")]


def _shown_request(site: Site, text: str) -> list[Any]:
    """What a viewer reads of a request the gateway held, and its traffic row, with `text`
    in its path (as written and escaped), its query and a bound header."""
    n = next(site.made)
    path = f"/v1/objects/{text}/{quote(text, safe='')}"
    request = {"method": "PUT", "host": "reports.s3.amazonaws.com", "path": path,
               "query": f"page=2&ref={quote(text, safe='')}&q={text}",
               "headers": [["x-amz-meta-ref", text], ["x-amz-acl", "private"]],
               "digest": f"{n:064x}"}  # fmt: skip
    held = {"agent": "Bot", "connector": "aws", "action_spec": SPEC.to_dict(),
            "action_hash": SPEC.action_hash, "reason": "held", "request": request}  # fmt: skip
    made = site.server.gateway("POST", "/v1/gateway/approvals", held)
    assert made.status_code == 200, made.text
    record = {"request_id": f"req-joined-{n}", "agent": "Bot", "connector": "aws",
              "method": "PUT", "host": "reports.s3.amazonaws.com",
              "path": f"{path}?{request['query']}", "action": SPEC.type,
              "decision": "require_approval"}  # fmt: skip
    sent = site.server.gateway("POST", "/v1/gateway/traffic", {"records": [record]})
    assert sent.status_code == 200, sent.text
    rows = _read(site, "/api/v1/traffic?limit=20")["traffic"]
    row = [r for r in rows if r.get("request_id") == record["request_id"]]
    assert row, rows
    return [_read(site, f"/api/v1/approvals/{made.json()['id']}")["request"], row[0]["path"]]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_a_viewer_reads_no_joined_secret_of_any_joiner_in_a_spec(site: Site, kind: str) -> None:
    """Every joiner and place at once, in one spec per kind."""
    secret = SECRETS[kind]
    texts = [_joined("x-amz-meta", joiner, secret, place, "v1")
             for joiner in JOINERS for place in PLACES]  # fmt: skip
    shown = _shown_spec(site, texts)
    assert _leaked(shown, {kind: secret}) == [], shown
    assert "x-amz-meta" in str(shown)  # (the word it is joined to is shown)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**JOINED)
def test_a_viewer_reads_no_joined_secret_anywhere(
    site: Site, kind: str, joiner: str, place: str, word: str, other: str
) -> None:
    secret = SECRETS[kind]
    text = _joined(word, joiner, secret, place, other)
    shown = [*_shown_spec(site, [text]), *_shown_request(site, text)]
    assert _leaked(shown, {kind: secret}) == [], (text, shown)


def test_ordinary_joined_words_stay_readable_to_a_viewer(site: Site) -> None:
    words = ["x-amz-meta-data", "x-amz-meta-sk-learn", "f47ac10b-58cc-4372-a567-0e02b2c3d479",
             "commit-9fceb02d0ae598e95dc970b74767f19372d61af8"]  # fmt: skip
    shown = str(_shown_spec(site, words))
    assert all(word in shown for word in words), shown
