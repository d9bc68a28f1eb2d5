"""A secret joined to a word is found by policy detection, as it is masked for a person.

Known gap, closed: a token joined to the word before it by a character its own random part
may hold (``x-amz-meta-sk-proj-…``, ``meta_github_pat_…``, ``x-xoxb-…``, ``id-eyJ…``) or by
an escaped character (``meta%2Dghp_…``, ``meta\\u002dAKIA…``) was masked for an approver
(``locate.unglued``) but not found by the detectors a ``content.secrets`` rule reads: a
request body or a query holding ``"x-amz-meta-sk-proj-<key>"`` went through a deny rule that
refuses the same key alone. Now every secret the detectors find standing alone is found
wherever it is joined to a word, as written and under every decoding the guard applies
(percent, JSON escapes, a form, a base64 field, a MIME part, an SDK action's parameters),
its hit the token alone; the scan stays linear in the text (many joins, many prefixes, long
runs: counted as ``test_content_adversarial`` counts them).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings

from agentfirewall.actions import ActionSpec
from agentfirewall.content import (
    SECRETS as DETECTORS,
)
from agentfirewall.content import (
    body_pieces,
    content_attributes,
    decoded_pieces,
    default_scanner,
    describe,
    encoded_body_pieces,
    redact_body,
    request_pieces,
    scan_pieces,
    value_pieces,
)
from agentfirewall.content.locate import Piece
from agentfirewall.policy import Engine, EvaluationContext, load_policy
from agentfirewall.policy.permissions import AccessRule
from tests.core.test_content_adversarial import PER_CHAR, PROSE, SIZE, _counted, _Tally
from tests.core.test_content_injection import ROOT, _constants
from tests.core.test_content_joined_secrets import (
    JOINED,
    ORDINARY,
    SECRETS,
    _joined,
)
from tests.fuzzscale import examples

SCANNER = default_scanner()
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MIME_FIELD = "form.RawMessage.Data"
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _detector(secret: str) -> str:
    """The detector that finds `secret` standing alone."""
    (hit,) = SCANNER.scan(f" {secret} ")
    return hit.detector


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _mail(text: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content(f"see {text} here")
    return message.as_bytes()


#: Each way a request carries a text to the guard, as the gateway and the SDK read it.
READINGS: dict[str, Callable[[str], list[Piece]]] = {
    "text body": lambda t: body_pieces(f"the value is {t}.".encode(), "text/plain"),
    "json body": lambda t: body_pieces(json.dumps({"meta": t}).encode(), JSON),
    "json body, escapes as written": lambda t: body_pieces(f'{{"meta": "{t}"}}'.encode(), JSON),
    "json key": lambda t: body_pieces(json.dumps({t: 1}).encode(), JSON),
    "form body": lambda t: body_pieces(f"a=1&meta={quote_plus(t)}".encode(), FORM),
    "query value": lambda t: request_pieces("/v1/x", f"q={quote(t)}", []),
    "query name": lambda t: request_pieces("/v1/x", f"{quote(t)}=1", []),
    "query as written": lambda t: request_pieces("/v1/x", f"q={t}", []),
    "path": lambda t: request_pieces(f"/v1/objects/{quote(t)}/x", "", []),
    "header": lambda t: request_pieces("/", "", [("X-Meta", t)]),
    "base64 field": lambda t: encoded_body_pieces(
        json.dumps({"content": _b64(t)}).encode(), JSON, ("body.content",)
    ),
    "mime part": lambda t: decoded_pieces(
        [(MIME_FIELD, _b64(_mail(t).decode()))], (MIME_FIELD + ":mime",)
    ),
    "sdk parameters": lambda t: value_pieces({"body": {"text": t}}, "parameters"),
}


@settings(max_examples=examples(300), deadline=None)
@given(**JOINED)
def test_a_joined_secret_is_found_by_policy_detection(
    kind: str, joiner: str, place: str, word: str, other: str
) -> None:
    """kind x joiner x place, in every reading: ``content.secrets`` names its detector, and
    no location names the secret (a reason and a log carry locations)."""
    secret = SECRETS[kind]
    detector = _detector(secret)
    text = _joined(word, joiner, secret, place, other)
    missed = {}
    for reading, pieces in READINGS.items():
        findings = scan_pieces(SCANNER, pieces(text))
        found = content_attributes(findings).get("content.secrets", [])
        if detector not in found or secret[4:24] in describe(findings, 100):
            missed[reading] = (found, describe(findings))
    assert missed == {}, text


@settings(max_examples=examples(200), deadline=None)
@given(**JOINED)
def test_the_hit_is_the_token_alone(
    kind: str, joiner: str, place: str, word: str, other: str
) -> None:
    """As written: the hit begins where the token does, never in the word before it; after
    a word, it ends where the token does (before one, a key whose random part holds the
    joiner runs on through it, as it does standing alone)."""
    secret = SECRETS[kind]
    text = _joined(word, joiner, secret, place, other)
    at = text.index(secret)
    hits = [h for h in SCANNER.scan(text, joined=True) if h.kind == "secret"]
    spans = [(h.start, h.end) for h in hits]
    assert hits, text
    assert all(h.start >= at for h in hits), (text, spans)
    assert any(h.start == at and h.end >= at + len(secret) for h in hits), (text, spans)
    if place == "after":
        assert spans == [(at, len(text))], text


@pytest.mark.parametrize("kind", sorted(SECRETS))
@pytest.mark.parametrize(
    "text", ["x-amz-meta-{}", "meta_{}", "meta%2D{}", "meta\\u002d{}", "id-{}_v1"]
)
def test_a_deny_rule_refuses_a_joined_secret_as_it_refuses_it_alone(kind: str, text: str) -> None:
    """Through the policy: the SDK's view of an action (its parameters scanned), decided
    by a ``content.secrets`` deny rule."""
    secret = SECRETS[kind]
    allow = AccessRule(agent="*", connector="*", action_pattern="*", decision="allow")
    deny = {"name": "no-secrets", "decision": "deny",
            "conditions": [{"field": "content.secrets", "operator": "exists"}]}  # fmt: skip
    engine = Engine([allow], [load_policy({"name": "guard", "rules": [deny]})])

    def decided(value: str) -> str:
        findings = scan_pieces(SCANNER, value_pieces({"meta": value}, "parameters"))
        ctx = EvaluationContext(agent="bot", mode="sdk", now=NOW, connector="slack",
                                attributes=content_attributes(findings))  # fmt: skip
        spec = ActionSpec(type="slack.message.send", parameters={"text": value})
        return engine.evaluate(spec, ctx).outcome

    assert decided(secret) == "deny"
    assert decided(text.format(secret)) == "deny"
    assert decided(text.format("data")) == "allow"


@pytest.mark.parametrize("kind", sorted(SECRETS))
@pytest.mark.parametrize("ctype", [JSON, FORM, "text/plain"])
def test_a_redact_rule_redacts_a_joined_secret_and_leaves_nothing_to_find(
    kind: str, ctype: str
) -> None:
    """What detection finds, redaction replaces (a rescan finds nothing: not refused)."""
    secret = SECRETS[kind]
    text = f"x-amz-meta-{secret}"
    body = {JSON: json.dumps({"meta": text}).encode(), FORM: f"meta={quote_plus(text)}".encode(),
            "text/plain": f"see {text}".encode()}[ctype]  # fmt: skip
    redacted, count = redact_body(SCANNER, body, ctype, SCANNER.names)
    assert count >= 1
    assert secret[4:] not in redacted.decode()
    assert b"x-amz-meta-" in redacted
    assert not [f for f in scan_pieces(SCANNER, body_pieces(redacted, ctype)) if f.kind == "secret"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("openai_project_key", "slack_token"), ("anthropic_key", "jwt"), ("jwt", "openai_key"),
     ("openai_key", "github_pat"), ("slack_token", "openai_key")],
)  # fmt: skip
def test_a_secret_joined_after_another_is_found_too(first: str, second: str) -> None:
    """A key whose random part holds the join runs on over the next token as written
    (``sk-…-xoxb-…``): the one joined after it is found as well."""
    joiner = "_" if second == "github_pat" else "-"
    text = f"x {SECRETS[first]}{joiner}{SECRETS[second]} y"
    found = {h.detector for h in SCANNER.scan(text, joined=True)}
    assert {_detector(SECRETS[first]), _detector(SECRETS[second])} <= found, found


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_joined_words_are_no_detection(text: str) -> None:
    for reading, pieces in READINGS.items():  # (the e-mail's addresses are found: pii)
        found = [f for f in scan_pieces(SCANNER, pieces(text)) if f.kind == "secret"]
        assert found == [], reading


def test_fixture_bodies_carry_no_joined_secret() -> None:
    """The connectors' own fixture bodies, read joined too: no secret detector fires."""
    fixtures = sorted((ROOT / "tests" / "connectors").glob("*.py"))
    fixtures += sorted((ROOT / "tests" / "fakes").glob("*.py"))
    kinds = {h.detector for text in _constants(fixtures) for h in SCANNER.scan(text, joined=True)}
    assert kinds <= {"email"}


def test_a_join_outside_a_secret_costs_one_reading() -> None:
    """A text without a join the detectors refuse is scanned once, as it is."""
    text = "x-amz-meta-data and 50% of a\\u0041 ghp_short " * 100
    assert SCANNER.scan(text, joined=True) == SCANNER.scan(text)


# -- adversarial: many joins, many prefixes, long runs ---------------------------------

_KEY = SECRETS["openai_project_key"]
#: Units repeated to the size: each a join before a prefix, or a joined secret.
_UNITS = [
    "-sk-", "x-sk-", "_sk-", "-sk-proj-", "x-amz-meta-sk-proj-", "-sk-ant-", "-eyJ", "_eyJ",
    "-xoxb-", "-xapp-", "_github_pat_", "%2D", "%2Dghp_", "%2DAKIA", "\\u002d", "\\u002dAKIA",
    "%2D%2D%2Dsk-", "-sk-" + "a1" * 20, "-sk-" + "Ab3De5Fg7Hj9" * 3 + "-", "id-eyJhbGci.eyJ",
    "-sk--sk-", "a-" * 40 + "sk-", "-" + _KEY, "%2D" + SECRETS["github_token"],
    "x-" + SECRETS["slack_token"] + "-", "-" + SECRETS["jwt"],
]  # fmt: skip


@pytest.mark.parametrize("unit", _UNITS)
def test_joined_text_tries_a_bounded_number_of_starts(unit: str) -> None:
    """Every expression call, search position and checked character, counted, at most
    ``PER_CHAR`` per character of the text, both readings together."""
    worst = []
    for size in (SIZE, 4 * SIZE):
        for lead in ("", PROSE[: 1 << 16]):
            text = lead + (unit * (size // len(unit) + 1))[:size]
            tally = _Tally()
            _counted(DETECTORS, tally).scan(text, joined=True)
            worst.append(tally.work / len(text))
    assert max(worst) <= PER_CHAR, (unit, worst)


def test_many_joined_secrets_are_each_found() -> None:
    """Thousands of joins in one text: each secret found once, at its place."""
    units = [f"x-amz-meta-{_KEY} ", f"meta%2D{SECRETS['github_token']} ",
             f"id-{SECRETS['jwt']} ", f"x-{SECRETS['slack_token']} "]  # fmt: skip
    text = "".join(units * 500)
    hits = [h for h in SCANNER.scan(text, joined=True) if h.kind == "secret"]
    assert len(hits) == 2000
    assert {text[h.start : h.end].split("-")[0][:3] for h in hits} == {"sk", "ghp", "eyJ", "xox"}
