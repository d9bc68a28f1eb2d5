"""A decision record withholds a value under a name by the rule approvers are shown by.

``agentfirewall.policy.record`` used to re-derive the secret-name rule of
``agentfirewall.content.shown`` by probing ``masked(f"{name}=x0")``: the probe reads only the
name's last run of letters, digits, ``_`` and ``-`` (what ``masked`` reads as a name in a
text), so a name the rule says credential elsewhere in it was kept: ``token.x``, ``pwd x``,
``secret/id``. Now the record calls the rule itself (``credential_name``), and keeps the probe
only for what the name holds as a query writes it before a value: a detection (``AKIA…``), a
URL's password, and a random run the value after it makes a generic secret
(``tokens=Ab3dEf5hIj7lMn9``; a check of the name alone would keep that one).

The property: a record withholds exactly what it withheld before, and the names the rule
says credential (only more, never less).
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.content import credential_name, masked
from agentfirewall.content.shown import _SECRET_PARTS, _SECRET_WORDS
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import _ALWAYS, record_input
from tests.fuzzscale import examples

NOW = datetime(2026, 12, 7, tzinfo=UTC)
AWS = "AKIA" + "Q7RZ4XMPL2VN5KWD"
TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "Q7r8S9"


def withheld_before(name: str) -> bool:
    """The record's rule before: a name that says body or secret, or the probe."""
    probe = f"{name}=x0"
    return name.lower() in _ALWAYS or masked(probe) != probe


def _record(parameters: dict[str, Any]) -> dict[str, Any]:
    spec = parse_action_spec({"type": "demo.thing.create", "parameters": parameters,
                              "resource": {"provider": "demo"}})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=NOW, connector="demo")
    return record_input(spec, ctx)


def _withholds(name: str) -> bool:
    """Whether a record withholds a short plain value under `name`, at the top and inside an
    object; the name listed as approvers see it, and never kept in clear."""
    flat, nested = _record({name: "v1"}), _record({"config": {name: "v1"}})
    withheld = "p" not in flat
    assert ("p" not in nested) == withheld  # (an object with such a name inside: withheld)
    if withheld:
        assert flat["w"] == [masked(name)]
        assert nested["w"] == ["config"]
    else:
        assert flat["p"] == {name: "v1"}
    return withheld


#: What names are made of: the rule's words and parts, near misses, plain words, what a
#: detector finds, markers, and the characters a text separates a name by.
_PIECES = sorted({*_SECRET_WORDS, *_SECRET_PARTS, "key", "api", "access", "private", "tokens",
                  "max", "bypass", "passengers", "compass", "sessions", "id", "x", "db", "Auth",
                  "OAuth", "API", "ID", "url", "v1", "body", "content", "authority", "tokenizer",
                  AWS, TOKEN, AWS[:-2], "[REDACTED:github_token]", "https://u:pw@h"})  # fmt: skip
_CASES = (str.lower, str.upper, str.title, lambda piece: piece)
_NAME_PARTS = st.one_of(
    st.tuples(st.sampled_from(_PIECES), st.sampled_from(_CASES)).map(lambda t: t[1](t[0])),
    st.sampled_from(["_", "-", ".", "", " ", ":", "=", "/", "[", "]", '"', "@", "é", "\u212a"]),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=16),  # runs
    st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=4),
)
NAMES = st.lists(_NAME_PARTS, min_size=1, max_size=5).map("".join)


@settings(max_examples=examples(300), deadline=None)
@given(NAMES)
@example("token.x")
@example("pwd x")
@example("secret/id")
@example("tokens=Ab3dEf5hIj7lMn9")
@example(AWS)
@example(f"x {AWS}")
@example("max_tokens")
def test_a_record_withholds_what_it_did_and_what_the_rule_says_credential(name: str) -> None:
    """Exactly: withheld before, or the name says credential by the rule approvers are
    shown by; nothing withheld before is kept now."""
    assert _withholds(name) == (withheld_before(name) or credential_name(name))


@pytest.mark.parametrize("name", ["token.x", "pwd x", "secret/id", "auth.type", "x-pass."])
def test_a_name_the_rule_says_credential_is_withheld_wherever_the_word_is(name: str) -> None:
    """Before: kept, with its value, as the probe read only the name's last word."""
    assert credential_name(name)
    assert not withheld_before(name)
    assert _withholds(name)
    assert "v1" not in json.dumps(_record({name: "v1"}))


@pytest.mark.parametrize("name", ["tokens=Ab3dEf5hIj7lMn9", "authority: Xy7Qw3Er9Tz1Ka", AWS])
def test_a_name_masked_as_a_query_writes_it_is_still_withheld(name: str) -> None:
    """No word of these says credential; as a query writes them before a value, approvers
    see the value masked (a random run the value makes a generic secret, a key id): still
    withheld, the name listed as approvers see it."""
    assert not credential_name(name)
    assert masked(f"{name}=v1") != f"{name}=v1"
    assert _withholds(name)


@pytest.mark.parametrize("name", ["max_tokens", "bypass_review", "passengers", "model", "n"])
def test_a_name_that_only_holds_the_letters_of_a_secret_word_is_kept(name: str) -> None:
    """As approvers see it: the value is what they decide on."""
    assert not _withholds(name)
