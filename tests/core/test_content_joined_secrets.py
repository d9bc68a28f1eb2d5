"""A secret joined to a word is masked: what the detectors find alone, they find joined.

Known gap, closed: a token joined to the word before it by a character its own random part
may hold (`x-amz-meta-sk-proj-…`, `meta_github_pat_…`, `x-xoxb-…`, `id-eyJ…`), by an escaped
character (`meta%2Dghp_…`, `meta\\u002dxoxb-…`), or followed by `_` and a word
(`ghp_…_meta`, `sk_live_…_v1`) was shown to an approver and a viewer as written. Now
every secret the detectors find standing alone is masked wherever it is written after or
before any joining character and a word (:func:`agentfirewall.content.masked`, and so
what ``agentfirewall_server.routes.shownspec`` shows a viewer), as written and as its
upstream reads it; ordinary words (`x-amz-meta-data`, a uuid, a commit SHA, `sk-learn`)
stay as they are.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.content import masked
from agentfirewall.content.scanner import default_scanner
from agentfirewall.content.shown import masked_query, shown_path
from tests.fuzzscale import examples

#: One secret of each kind the detectors find standing alone (checked below).
SECRETS = {
    "github_token": "ghp_" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4",
    "github_pat": "github_pat_11ABCDEFG0" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hJ2k"
    "L4mN6pQ8rS0",
    "stripe_key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe_restricted": "rk_test_" + "9fK2LmQ7xW3nB8vR5tY1zH6c",
    "slack_token": "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "openai_key": "sk-" + "Ab3De5Fg7Hj9Kl1Mn2Pq4Rs6Tu8Vw0Xy2Za4Bc6De8",
    "openai_project_key": "sk-proj-" + "Ab3De5Fg7Hj9Kl1Mn2Pq4Rs6Tu8Vw0Xy2Za4Bc6De8_Qz7-Wk",
    "anthropic_key": "sk-ant-api03-" + "Ab3De5Fg7Hj9Kl1Mn2Pq4Rs6Tu8Vw0Xy2Za4Bc6De8-Jx3",
    "aws_access_key": "AKIA" + "Z7Q2M4N6P3R5T7V2",
    "aws_session_key": "ASIA" + "Q3V7WZ2MXK4PLRTY",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}
#: What joins a secret to a word: punctuation, and escapes of it (percent, JSON).
JOINERS = ["-", "_", ".", "/", "=", ":", "+", "~", ",", ";", "@", "|", "*", "!", "$", "'",
           "%2D", "%2d", "%5F", "%2E", "%2F", "%3A", "%3D", "%20", "%7C",
           "\\u002d", "\\u005f", "\\u002e"]  # fmt: skip
#: Words a secret is joined to (a header's prefix, a version, an id).
WORDS = st.one_of(
    st.sampled_from(["x-amz-meta", "meta", "token", "key", "v1", "data", "ref", "X", "id9",
                     "aws", "stripe", "x-goog-meta", "b2", "api_key", "2026"]),
    st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True),
)  # fmt: skip
#: Where the secret is joined: after a word, before one, between two.
PLACES = ["after", "before", "between"]
#: A secret of each kind joined to words by each joiner at each place (`_joined`'s arguments).
JOINED = {
    "kind": st.sampled_from(sorted(SECRETS)),
    "joiner": st.sampled_from(JOINERS),
    "place": st.sampled_from(PLACES),
    "word": WORDS,
    "other": WORDS,
}


def _joined(word: str, joiner: str, secret: str, place: str, other: str) -> str:
    if place == "after":
        return f"{word}{joiner}{secret}"
    if place == "before":
        return f"{secret}{joiner}{word}"
    return f"{word}{joiner}{secret}{joiner}{other}"


def _readings(text: str) -> list[str]:
    return [text, unquote(text), unquote_plus(text)]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_secret_is_found_standing_alone(kind: str) -> None:
    secret = SECRETS[kind]
    hits = default_scanner().scan(f" {secret} ")
    assert [(h.start, h.end) for h in hits] == [(1, 1 + len(secret))], kind
    assert secret not in masked(secret)


@settings(max_examples=examples(300), deadline=None)
@given(**JOINED)
def test_a_joined_secret_is_never_shown(
    kind: str, joiner: str, place: str, word: str, other: str
) -> None:
    """As a text (a spec's value, a header's), a path segment, a query's value and name."""
    secret = SECRETS[kind]
    text = _joined(word, joiner, secret, place, other)
    texts = {"text": masked(text), "path": shown_path(f"/v1/objects/{text}/x"),
             "query": masked_query(f"q={quote(text)}&{quote(text)}=1"),
             "escaped path": shown_path(f"/v1/{quote(text)}")}  # fmt: skip
    shown = [where for where, out in texts.items()
             if any(secret in reading for reading in _readings(out))]  # fmt: skip
    assert shown == [], (text, texts)


#: Ordinary words joined as secrets are: shown as they are.
ORDINARY = [
    "x-amz-meta-data", "x-amz-meta-sk-learn", "meta_sk-learn", "pip-install-sk-learn",
    "x-amz-meta-ghp_short", "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "commit-9fceb02d0ae598e95dc970b74767f19372d61af8", "refs/heads/sk-feature-branch",
    "x-eyJ-not-a-token", "build_AKIA_docs", "release-xoxb-notes", "my_github_pat_notes",
    "x-amz-meta-sk-your-key-here-please-replace-it-now",
]  # fmt: skip


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_joined_words_stay_readable(text: str) -> None:
    assert masked(text) == text
    assert shown_path(f"/v1/{text}") == f"/v1/{text}"
