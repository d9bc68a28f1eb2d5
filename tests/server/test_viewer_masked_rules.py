"""The rules a viewer's action specs are masked by (`routes/shownspec.py`), on any input:
any JSON an agent may send is masked without an error (a viewer's read never fails), what
is no secret keeps its place and type, and the card's examples read as the card shows
them (tests/dashboard/test_secret_masking.py runs the same in chromium)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_server.routes.shownspec import WITHHELD, masked_spec

#: What JSON the store holds: no NaN, no infinity (``agentfirewall.jsonlimits``).
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                    st.floats(allow_nan=False, allow_infinity=False))  # fmt: skip
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(parameters=_JSON, hints=st.dictionaries(st.text(), _JSON, max_size=3), target=st.text())
def test_any_spec_is_masked_without_an_error(parameters: Any, hints: Any, target: str) -> None:
    spec = {"type": "a.b", "resource": {"provider": "vault", "target": target},
            "parameters": parameters, "risk_hints": hints}  # fmt: skip
    shown = masked_spec(spec)
    json.dumps(shown, allow_nan=False)  # (what the answer encodes)
    assert shown["type"] == "a.b"
    assert masked_spec(spec) == shown  # the same every time (and remembered)


@given(flags=st.dictionaries(st.sampled_from(["private", "token", "draft", "auth"]),
                             st.none() | st.booleans()))  # fmt: skip
def test_true_false_and_null_are_never_withheld(flags: dict[str, Any]) -> None:
    """Never a secret, and what an approver decides on (`private: false`)."""
    assert masked_spec({"type": "a.b", "parameters": flags})["parameters"] == flags


W = WITHHELD


@pytest.mark.parametrize(
    ("parameters", "shown"),
    [
        ({"password": {"new": "hunter2-plaintext"}}, {"password": {"new": W}}),
        ({"secrets": {"stripe": "rk_live_51Habc", "db": "postgres-pass-123"}},
         {"secrets": {"stripe": W, "db": W}}),
        ({"auth": {"tokens": [{"id": 1, "value": "abc"}, "plain"]}},
         {"auth": {"tokens": [{"id": W, "value": W}, W]}}),
        ({"credentials": {"rotate": True, "pin": 1234}},
         {"credentials": {"rotate": True, "pin": W}}),
        ({"note": "Basic dXNlcjpodW50ZXIy"}, {"note": f"Basic {W}"}),
        ({"note": "Bearer abc.def"}, {"note": f"Bearer {W}"}),
        ({"note": "https://api.example.com/v1?page=2&api_key=plain&sort=asc"},
         {"note": f"https://api.example.com/v1?page=2&api_key={W}&sort=asc"}),
        ({"note": "postgres://admin:s3cr3t@db.internal:5432/app"},
         {"note": f"postgres://admin:{W}@db.internal:5432/app"}),
        ({"note": "client key = 'Zr8q2LmX9vT4kP7wN3bY6cH1' (rotated)"},
         {"note": f"client key = '{W}' (rotated)"}),
        ({"note": "token ghp_AAAAAAAAAAAAAAAA and tfa_Ab12"}, {"note": f"token {W} and {W}"}),
        ({"mykey": "Zr8q2LmX9vT4kP7wN3bY6cH1"}, {"mykey": W}),
    ],
)  # fmt: skip
def test_what_the_card_masks_a_viewer_reads_masked(parameters: Any, shown: Any) -> None:
    assert masked_spec({"type": "a.b", "parameters": parameters})["parameters"] == shown


@pytest.mark.parametrize(
    "parameters",
    [
        {"title": "fix the token refresh bug"},
        {"note": "the bearer of this note", "plan": "Basic plan", "t": "token refresh"},
        {"key": "docs/README.md", "author": "octocat"},
        {"url": "https://api.example.com/v1?page=2&sort=asc", "time": "12:30"},
        {"amount": 12000, "branch": "main", "risk": "task-runner", "max_tokens": 100},
        {"password": "", "token": None, "api_key": "[REDACTED:generic_secret]"},
    ],
)
def test_what_is_no_secret_a_viewer_reads_as_sent(parameters: Any) -> None:
    assert masked_spec({"type": "a.b", "parameters": parameters})["parameters"] == parameters
