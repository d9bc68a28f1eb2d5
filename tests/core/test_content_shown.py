"""Masking what an approver is shown of a held request is idempotent: the control plane masks
what a gateway sends once more (an older gateway sent it as it was), and what a gateway
masked must reach the approver as it is. Texts are made of the pieces credentials are
written with (names, assignments, tokens, URLs with a password, escapes, markers)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.content import body_preview, masked, masked_query, shown_target
from agentfirewall.content.shown import _MASKED, _READ
from tests.fuzzscale import examples

TOKEN = "ghp_" + "R8kq2ZbX7pLmW4nV9cT3yJ6hF1dS5gA0eU2i"  # a github_token
AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"
PIECES = ["password", "token", "access_token", "api_key", "user", "Authorization", "Bearer ",
          TOKEN, AWS_KEY, "hunter2", "https://ann:pw@git.example.com/r", "\\u0041",
          "[REDACTED:generic_secret]", "[RED", "true", "null", "=", ": ", '"', "'", "&",
          "?", "/", " ", "\n", "\r", "%2F", "%3D", "+", "{", "}", ",", "\x01", "\\", "#",
          ";"]  # fmt: skip


def _text(pieces: list[str]) -> st.SearchStrategy[str]:
    piece = st.sampled_from(pieces) | st.text(max_size=3)
    return st.lists(piece, max_size=12).map("".join)


@settings(max_examples=examples(200), deadline=None)
@given(_text(PIECES))
def test_masking_a_masked_text_changes_nothing(text: str) -> None:
    once = masked(text)
    assert masked(once) == once
    path, _ = shown_target(text, "")
    assert shown_target(path, "")[0] == path


#: A query whose names and values hold no `&`, `=` or escape: it is shown decoded, and a
#: decoded `&` or `=` would read as other parameters (masked again then: more, never less).
_PLAIN = [p for p in PIECES if not set(p) & set("&=%+")]
_WORD = st.lists(st.sampled_from(_PLAIN) | st.text("ab_-: /?", max_size=3), max_size=4).map("".join)
_QUERY = st.lists(st.tuples(_WORD, st.sampled_from(["=", ""]), _WORD).map("".join), max_size=4)


@settings(max_examples=examples(200), deadline=None)
@given(_QUERY.map("&".join))
@example(f"{TOKEN}=password")  # a marker's name (`github_token`) says nothing of a value
@example(f"password%3D{TOKEN}")  # shown `password=[REDACTED:github_token]`: kept as it is
def test_masking_a_masked_query_changes_nothing(query: str) -> None:
    once = masked_query(query)
    assert masked_query(once) == once


# -- a credential escaped in a path (`ghp%5F…`, which its upstream reads as the token) ----

#: (the path sent, the path shown): masked as its upstream reads it, decoded, and shown as
#: written but for the marker (of a run of escapes a marker cuts, the rest escaped anew)
ESCAPED_PATHS = [
    (f"/repos/acme/api/keys/ghp%5F{TOKEN[4:]}", "/repos/acme/api/keys/[REDACTED:github_token]"),
    (f"/v1/%67hp_{TOKEN[4:]}", "/v1/[REDACTED:github_token]"),
    (f"/v1/token%3D{TOKEN[4:]}", "/v1/token%3D[REDACTED:generic_secret]"),
    (f"/keys/%20%41{AWS_KEY[1:]}/x", "/keys/%20[REDACTED:aws_access_key]/x"),
    # the token as written and, once it is masked, another one decoded beside it
    (f"/k/{TOKEN}%67hp_{TOKEN[4:]}", "/k/[REDACTED:github_token][REDACTED:github_token]"),
    # no credential: byte for byte as sent
    ("/files/a%20b/c%2Fd%5Fe%25%zz%C3%A9", "/files/a%20b/c%2Fd%5Fe%25%zz%C3%A9"),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "shown"), ESCAPED_PATHS)
def test_a_credential_escaped_in_a_path_is_masked_as_its_upstream_reads_it(
    sent: str, shown: str
) -> None:
    assert shown_target(sent, "") == (shown, "")
    assert masked(unquote(shown)) == unquote(shown)


ESCAPES = ["%5F", "%67", "%41", "%25", "%2E", "%2F", "%3D", "%20", "%0A", "%C3", "%A9", "%",
           "%4", "%zz", f"ghp%5F{TOKEN[4:]}", f"%67hp_{TOKEN[4:]}", "token%3D", "https:%2F%2F",
           "u%3Apw%40h", ".", "-"]  # fmt: skip


@settings(max_examples=examples(300), deadline=None)
@given(_text(PIECES + ESCAPES))
@example(f"{TOKEN}%67hp_{TOKEN[4:]}")  # a token found decoded once the one before is masked
def test_a_path_shown_holds_no_credential_once_decoded_and_masking_it_again_changes_nothing(
    path: str,
) -> None:
    shown = shown_target(path, "")[0]
    assert masked(unquote(shown)) == unquote(shown)
    assert shown_target(shown, "")[0] == shown
    if masked(path) == path and masked(unquote(path)) == unquote(path):
        assert shown == path  # no credential: as it was


# -- a body preview: a credential that begins in it is masked whole ----------------------


def _jwt(size: int) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    return f"{head}.eyJ{'a' * size}.sig123"


def test_a_long_secret_masked_pulls_no_part_of_a_credential_into_a_preview() -> None:
    """A 4 KB JWT shrinks to its marker: what follows it, a token that a 4,096-byte masking
    window once cut too short for its detector, comes into the first 512 characters."""
    start = f'{{"doc": "{_jwt(3990)}", "note": "deploy with '
    assert 4056 < len(start) < 4096  # the token runs across byte 4,096
    preview = body_preview(f'{start}{TOKEN}"}}'.encode())
    assert preview == '{"doc": "[REDACTED:jwt]", "note": "deploy with [REDACTED:github_token]"}'


_FILLER = st.text(alphabet="abc xyz,.:;{}[]\"'\n", max_size=40)
#: Secrets of `n` characters and a few, each masked to its marker
_LONG = [
    lambda n: f' "{_jwt(n)}" ',
    lambda n: f' "password": "{"b" * n}", ',
    lambda n: f"\n-----BEGIN PRIVATE KEY-----\n{'QUJD' * (n // 4)}\n",
]


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(st.tuples(_FILLER, st.sampled_from(_LONG)), min_size=1, max_size=3),
    st.one_of(st.integers(0, 30_000), st.sampled_from([_READ, _MASKED]).flatmap(
        lambda cut: st.integers(cut - 60, cut + 5))),
    _FILLER,
)  # fmt: skip
def test_a_preview_shows_no_part_of_a_credential(
    secrets: list[tuple[str, Callable[[int], str]]], at: int, after: str
) -> None:
    """Filler and long secrets up to `at`, then a token (across a cut, most often): no 8
    characters of it are shown (the filler's characters make none of them)."""
    size = max(0, at // len(secrets) - 100)  # (a filler, and a secret's own characters)
    before = "".join(filler + secret(size) for filler, secret in secrets).ljust(at)
    preview = body_preview(f"{before} {TOKEN} {after}".encode())
    text = TOKEN[4:]
    assert not any(text[i : i + 8] in preview for i in range(len(text) - 7))
