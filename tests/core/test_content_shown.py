"""Masking what an approver is shown of a held request is idempotent: the control plane masks
what a gateway sends once more (an older gateway sent it as it was), and what a gateway
masked must reach the approver as it is. Texts are made of the pieces credentials are
written with (names, assignments, tokens, URLs with a password, escapes, markers)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.content import masked, masked_query, shown_target
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
