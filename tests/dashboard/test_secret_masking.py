"""An approval card masks what looks like a secret (static/js/secrets.js, run in chromium):
a value under a secret name however nested, and the credential inside a longer text, by
the names and token formats of the server's content scanning (agentfirewall/content/),
which these tests hold the dashboard's rules to."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentfirewall.content import locate, shown
from agentfirewall.content.detectors import SECRETS
from agentfirewall.content.scanner import Scanner
from agentfirewall_server.bootstrap import new_token
from agentfirewall_server.identity import new_agent_key
from tests.dashboard.conftest import run_module
from tests.fuzzscale import examples

pytestmark = pytest.mark.browser

MASK = "••••••"
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


def masked(page: Any, value: object) -> Any:
    return run_module(page, "secrets.js", "return m.maskSecrets(arg);", value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"password": {"new": "hunter2-plaintext"}}, {"password": {"new": MASK}}),
        ({"secrets": {"stripe": "rk_live_51Habc", "db": "postgres-pass-123"}},
         {"secrets": {"stripe": MASK, "db": MASK}}),
        ({"auth": {"tokens": [{"id": 1, "value": "abc"}, "plain"]}},
         {"auth": {"tokens": [{"id": MASK, "value": MASK}, MASK]}}),
        ({"outer": {"client_secret": {"a": {"b": {"c": "deep"}}}}},
         {"outer": {"client_secret": {"a": {"b": {"c": MASK}}}}}),
        ({"credentials": {"rotate": True, "pin": 1234}},
         {"credentials": {"rotate": True, "pin": MASK}}),
    ],
)  # fmt: skip
def test_a_value_under_a_secret_name_is_masked_however_nested(
    module_page: Any, value: object, shown: object
) -> None:
    assert masked(module_page, value) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"token {GITHUB}", MASK),
        ("Basic dXNlcjpodW50ZXIy", MASK),
        ("Bearer abc.def", MASK),
        ("https://api.example.com/v1?api_key=sk_live_abcdefgh1234",
         f"https://api.example.com/v1?api_key={MASK}"),
        ("https://api.example.com/v1?page=2&api_key=plain&sort=asc",
         f"https://api.example.com/v1?page=2&api_key={MASK}&sort=asc"),
        ("postgres://admin:s3cr3t@db.internal:5432/app",
         f"postgres://admin:{MASK}@db.internal:5432/app"),
        ("curl -H 'Authorization: Bearer eyJhbGciOi.x.y' https://x",
         f"curl -H 'Authorization: Bearer {MASK}' https://x"),
        ("curl -u u -H 'X-Trace: Basic dXNlcjpodW50ZXIy'", f"curl -u u -H 'X-Trace: Basic {MASK}'"),
        (f"deploy with {GITHUB} then tell #ops", f"deploy with {MASK} then tell #ops"),
        ('{"user": "bob", "password": "two words"}', f'{{"user": "bob", "password": "{MASK}"}}'),
        ("client key = 'Zr8q2LmX9vT4kP7wN3bY6cH1' (rotated)", f"client key = '{MASK}' (rotated)"),
    ],
)  # fmt: skip
def test_the_credential_inside_a_text_is_masked(module_page: Any, text: str, shown: str) -> None:
    assert masked(module_page, {"note": text}) == {"note": shown}


@pytest.mark.parametrize(
    "value",
    [
        {"title": "fix the token refresh bug"},
        {"note": "the bearer of this note", "plan": "Basic plan", "t": "token refresh"},
        {"key": "docs/README.md", "author": "octocat"},  # a hinting name, a value no secret
        {"url": "https://api.example.com/v1?page=2&sort=asc", "time": "12:30"},
        {"private": False, "draft": True},  # never a secret, and what the approver decides on
        {"amount": 12000, "branch": "main", "risk": "task-runner"},
    ],
)
def test_what_is_no_secret_is_shown(module_page: Any, value: object) -> None:
    assert masked(module_page, value) == value


def test_masking_changes_nothing_sent(module_page: Any) -> None:
    """Only the card's copy is masked: the parameters (as the API gave them) stay."""
    body = "m.maskSecrets(arg); return JSON.stringify(arg);"
    params = {"password": {"new": "x"}, "n": f"t {GITHUB}"}
    assert json.loads(run_module(module_page, "secrets.js", body, params)) == params


#: One secret the server's content scanning finds per detector, as it could be sent.
FOUND_BY_THE_SERVER = {
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": GITHUB,
    "stripe_key": "rk_live_51HabcD3fGh1jKlMn0pQr5tUv",
    "slack_token": "xoxb-123456789012-1234567890123-AbCdEfGh1jKlMnOpQrStUvWx",
    "slack_webhook": "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/abcDEF123ghiJKL456mnoPQR",
    "anthropic_key": "sk-ant-api03-Xq7Lm2Np9Rt4Vw8Yz1Bc5Df3Gh6Jk0Mn2Pq4Rs7Tu9Vw",
    "openai_key": "sk-proj-Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0Kk1Ll2Mm3Nn4",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v3s\n"
                   "-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "generic_secret": "api_key = 'Zr8q2LmX9vT4kP7wN3bY6cH1'",
}  # fmt: skip


def test_every_secret_the_content_scanner_finds_is_masked(module_page: Any) -> None:
    """One example per detector of agentfirewall/content/detectors.py (a new detector needs
    one here, and the dashboard's rule for it), inside a text: what the server finds is
    not on the card. TameFlare's own keys too."""
    assert set(FOUND_BY_THE_SERVER) == {detector.name for detector in SECRETS}
    scanner = Scanner(SECRETS)
    texts, found = [], []
    for name, secret in FOUND_BY_THE_SERVER.items():
        text = f"see {secret} (sent by the agent)"
        hits = [text[hit.start : hit.end] for hit in scanner.scan(text) if hit.detector == name]
        assert hits, f"the scanner no longer finds {name} in {text!r}"
        texts.append(text)
        found.append(hits)
    ours = [new_agent_key("live"), new_agent_key("test"), new_token("tfa_"), new_token("tfg_")]
    texts += [f"see {key} (sent by the agent)" for key in ours]
    found += [[key] for key in ours]
    shown = masked(module_page, texts)
    for text, secrets, out in zip(texts, found, shown, strict=True):
        expected = text
        for secret in secrets:
            expected = expected.replace(secret, MASK)
        assert out == expected, text


def test_secret_names_are_the_content_scanners(module_page: Any) -> None:
    """The names the card masks a generated-looking value under are the scanner's."""
    source, flags = run_module(
        module_page, "secrets.js", "return [m.SECRET_HINT.source, m.SECRET_HINT.flags];"
    )
    assert source == locate._CONTEXT_RE.pattern
    assert ("i" in flags) == bool(locate._CONTEXT_RE.flags & re.IGNORECASE)


_CHARS = string.ascii_letters + string.digits + "+/=_-.~ "
_VALUES = st.one_of(
    st.text(alphabet=_CHARS, max_size=40),
    st.text(alphabet="aA1b/", min_size=14, max_size=24),  # near the thresholds
    st.sampled_from(["Zr8q2LmX9vT4kP7wN3bY6cH1", "aaaaaa1bcdefghijklmn", "a1/b2/c3/d4e5f6g7h8i9"]),
)


@settings(max_examples=examples(60), deadline=None)
@given(values=st.lists(_VALUES, min_size=1, max_size=30))
def test_generated_looking_is_judged_as_the_scanner_judges(
    module_page: Any, values: list[str]
) -> None:
    """`looksGenerated` is locate.py's `_generic`: the same values, masked under a name
    that hints at a secret (`{"client_key": ...}`)."""
    body = "return arg.map((v) => m.looksGenerated(v));"
    got = run_module(module_page, "secrets.js", body, values)
    assert got == [locate._generic(v) for v in values]


_NAMES = ["api_key", "X-Api-Key", "client_secret", "authToken", "passwd", "access-key", "note"]
_SEPARATORS = ["=", ": ", " = ", "=>", '": "', "='", ":\t"]


@settings(max_examples=examples(60), deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.text(alphabet=string.ascii_letters + " .,;&?:=\"'", max_size=8),
            st.sampled_from(_NAMES),
            st.sampled_from(_SEPARATORS),
            st.sampled_from(["", "Bearer ", "basic "]),
            st.text(
                alphabet=string.ascii_letters + string.digits + "+/_.=~-!@)\"' ",
                min_size=8,
                max_size=40,
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_what_the_scanner_finds_after_a_name_is_masked(
    module_page: Any, parts: list[tuple[str, ...]]
) -> None:
    """Texts of `name=value` pairs: every secret the server's scanner finds in one is masked."""
    text = " ".join("".join(part) for part in parts)
    hits = [text[hit.start : hit.end] for hit in Scanner(SECRETS).scan(text)]
    assume(all(text.count(hit) == 1 for hit in hits))  # (so that its absence says it is masked)
    out = masked(module_page, text)
    assert not [hit for hit in hits if hit in out], (text, out)


#: An agent's parameters an approver decides on: no name here says secret to the server
#: (words, not letters inside them: `max_tokens`, `bypass_review`), so none is masked.
DECIDED_ON = {
    "model": "gpt-4o", "max_tokens": 5000000, "tokens_used": 120, "bypass_review": "skip it",
    "passengers": 300, "private_repo": "acme/internal", "compass": "north", "sessions_open": 3,
    "note": "max_tokens: 5000000, bypass_review=yes, private_repo: acme/internal",
}  # fmt: skip
#: The names of credentials: a value under one, or after one in a text, stays masked.
CREDENTIAL_NAMES = [
    "api_key",
    "password",
    "client_secret",
    "x-api-key",
    "authorization",
    "access_token",
    "refresh_token",
    "private_key",
    "sessionId",
    "X-Auth",
]


def test_a_name_that_only_holds_the_letters_of_a_secret_word_is_shown(module_page: Any) -> None:
    """The approver sees `max_tokens: 5000000` (it is what they approve), in a card's
    parameters and inside a text (a note, a body preview): the server's judgement of names."""
    assert masked(module_page, DECIDED_ON) == DECIDED_ON
    assert not any(shown._secret_name(name) for name in DECIDED_ON)


def test_a_credential_name_still_masks_its_value(module_page: Any) -> None:
    params = {name: "plain-value-1" for name in CREDENTIAL_NAMES}
    assert masked(module_page, params) == dict.fromkeys(CREDENTIAL_NAMES, MASK)
    texts = [f"{name}: plain-value-1 then more" for name in CREDENTIAL_NAMES]
    assert masked(module_page, texts) == [f"{name}: {MASK} then more" for name in CREDENTIAL_NAMES]


def test_secret_name_words_and_parts_are_the_servers(module_page: Any) -> None:
    words, parts = run_module(module_page, "secrets.js", "return [m.SECRET_WORDS, m.SECRET_PARTS];")
    assert frozenset(words) == shown._SECRET_WORDS
    assert tuple(parts) == shown._SECRET_PARTS


#: What names are made of: the server's words and parts, their near misses, plain words.
_PIECES = sorted(
    {*shown._SECRET_WORDS, *shown._SECRET_PARTS, "key", "api", "access", "refresh", "private",
     "tokens", "max", "bypass", "passengers", "repo", "used", "sessions", "signatures", "id",
     "x", "db", "new", "Auth", "OAuth", "JWT", "API", "ID", "url", "2", "v1",
     "[REDACTED:github_token]", "[REDACTED:]"}
)  # fmt: skip
_CASES = (str.lower, str.upper, str.title, str.capitalize, lambda piece: piece)
_NAME_PARTS = st.one_of(
    st.tuples(st.sampled_from(_PIECES), st.sampled_from(_CASES)).map(lambda t: t[1](t[0])),
    st.sampled_from(["_", "-", ".", "", " ", ":", "/", "[", "]", "0"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=4),
    st.sampled_from(["é", "İ", "\u212a", "ß", "ﬁ"]),  # (lowercased to ASCII, or near it)
)
_NAME = st.lists(_NAME_PARTS, min_size=1, max_size=6).map("".join)


@settings(max_examples=examples(60), deadline=None)
@given(names=st.lists(_NAME, min_size=1, max_size=50))
def test_a_name_says_secret_to_the_card_as_it_does_to_the_server(
    module_page: Any, names: list[str]
) -> None:
    """`secretName` is shown.py's `_secret_name`, on names built of its words and parts (and
    of near misses), joined by separators, in every case."""
    got = run_module(module_page, "secrets.js", "return arg.map((n) => m.secretName(n));", names)
    assert got == [shown._secret_name(name) for name in names]
