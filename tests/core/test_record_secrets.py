"""A decision's replayable input never keeps a secret (``agentfirewall.policy.record``).

The review's probe: a `redact` rule kept a GitHub token from the upstream, yet the decision
input stored the title that held it in clear, and a signed-in viewer read it back from
``GET /api/v1/traffic`` (``input.p.title``). Now a value whose name says secret is withheld
whatever it looks like, and when the decision's content detectors fired, every value holding
a detection; records stored before are shown with the same values withheld.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import parse_action_spec
from agentfirewall.content import masked
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input, restore_input, shown_input
from tests.fuzzscale import examples

TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "Q7r8S9"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _record(parameters: dict[str, Any], attributes: dict[str, Any] | None = None) -> Any:
    spec = parse_action_spec({"type": "github.issue.create", "parameters": parameters,
                              "resource": {"provider": "github"}})  # fmt: skip
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=NOW, connector="github",
                            attributes=attributes or {})  # fmt: skip
    return record_input(spec, ctx)


def test_a_detected_secret_is_withheld_and_the_rest_kept() -> None:
    record = _record({"title": f"deploy key {TOKEN}", "repo": "acme/api"},
                     {"content.secrets": ["github_token"]})  # fmt: skip
    assert TOKEN not in json.dumps(record)
    assert record["p"] == {"repo": "acme/api"}
    assert record["w"] == ["title"]
    spec, _ = restore_input(record, "Bot")
    assert "title" not in spec.parameters  # a replayed rule sees it absent (partial)


def test_a_secret_name_is_withheld_whatever_its_value() -> None:
    record = _record({"access_token": "plain", "clientSecret": "x", "max_tokens": 5})
    assert record["p"] == {"max_tokens": 5}
    assert sorted(record["w"]) == ["access_token", "clientSecret"]


def test_a_record_stored_before_is_shown_without_its_secrets() -> None:
    legacy = {"v": 1, "t": "github.issue.create", "m": "proxy", "n": 1.0,
              "p": {"title": f"deploy key {TOKEN}", "repo": "acme/api", "apiKey": "k"},
              "h": {"session": "s1"}, "a": {"content.secrets": ["github_token"]}}  # fmt: skip
    shown = shown_input(legacy)
    assert TOKEN not in json.dumps(shown)
    assert shown["p"] == {"repo": "acme/api"}
    assert sorted(shown["w"]) == ["apiKey", "risk_hints.session", "title"]
    assert "h" not in shown
    clean = {"v": 1, "t": "x.y", "m": "sdk", "n": 1.0, "p": {"repo": "acme/api"}}
    assert shown_input(clean) == clean


_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from([TOKEN, f"key: {TOKEN}", "4111 1111 1111 1111", "AKIAQ3V7WZ2MXK4PLRTY"]),
    st.lists(st.sampled_from(["a", TOKEN]), max_size=3),
)


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(st.sampled_from(["title", "body2", "repo", "note", "q"]), _VALUES,
                       max_size=4))  # fmt: skip
def test_no_kept_value_holds_what_a_detector_finds(parameters: dict[str, Any]) -> None:
    record = _record(parameters, {"content.pii": ["card_number"]})
    for value in (record.get("p") or {}).values():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        assert masked(text) == text
    assert sorted([*(record.get("p") or {}), *(record.get("w") or [])]) == sorted(parameters)
