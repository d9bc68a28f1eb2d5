"""A decision's replayable input never keeps a secret (``agentfirewall.policy.record``).

The review's probe: a `redact` rule kept a GitHub token from the upstream, yet the decision
input stored the title that held it in clear, and a signed-in viewer read it back from
``GET /api/v1/traffic`` (``input.p.title``). Now a value whose name says secret is withheld
whatever it looks like, and when the decision's content detectors fired, every value holding
a detection; records stored before are shown with the same values withheld.

The second review's probes: a detection only a *shadow* policy's detectors made was stored in
clear (the context holds the live policies' findings; the caller now says `detected`); a
resource field (`r.target`, built from the path at the gateway) kept the secret; a parameter
or risk-hint name that is a secret was withheld and then listed in clear under `"w"`; and a
secret name inside an object or a list (`{"config": {"password": ...}}`) was kept when no
detector fired, though approvers see a marker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.content import SECRETS, default_scanner, masked
from agentfirewall.policy import EvaluationContext
from agentfirewall.policy.record import record_input, restore_also, restore_input, shown_input
from tests.fuzzscale import examples

TOKEN = "ghp_" + "A1b2C3d4E5" * 3 + "Q7r8S9"
AWS = "AKIA" + "Q7RZ4XMPL2VN5KWD"
AWS_SHOWN = "[REDACTED:aws_access_key]"
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


def _spec(data: dict[str, Any]) -> ActionSpec:
    return parse_action_spec({"type": "github.issue.create", **data})


def _context(attributes: dict[str, Any] | None = None) -> EvaluationContext:
    return EvaluationContext(agent="Bot", mode="sdk", now=NOW, connector="github",
                             attributes=attributes or {})  # fmt: skip


def test_a_detection_the_context_does_not_hold_is_withheld() -> None:
    """A content rule in shadow only: the live context holds no finding, the caller does."""
    spec = _spec({"parameters": {"title": f"deploy key {AWS}", "repo": "api"}})
    record = record_input(spec, _context(), detected=True)
    assert AWS not in json.dumps(record)
    assert record["p"] == {"repo": "api"}
    assert record["w"] == ["title"]


def test_a_detected_resource_field_is_withheld_and_the_record_partial() -> None:
    """probe_1 (gateway): the path's key in `r.target` and `r.account`, the path masked."""
    spec = _spec({"resource": {"provider": "github", "account": AWS, "target": f"{AWS}/x",
                               "environment": "prod"}})  # fmt: skip
    record = record_input(spec, _context({"content.secrets": ["aws_access_key"]}))
    assert AWS not in json.dumps(record)
    assert record["r"] == {"provider": "github", "environment": "prod"}
    assert record["w"] == ["resource.account", "resource.target"]  # counted partial
    restored, _ = restore_input(record, "Bot")
    assert restored.resource.target is None  # a replayed rule sees it absent, not a marker


def test_a_withheld_name_is_listed_as_approvers_see_it() -> None:
    """probe_2 (SDK): a parameter or risk-hint name that is itself a secret, listed masked,
    whether or not a detector fired."""
    spec = _spec({"parameters": {AWS: "x", "issue_number": 1, "access_token": "t"},
                  "risk_hints": {f"hint-{AWS}": 1}})  # fmt: skip
    for attributes in ({}, {"content.secrets": ["aws_access_key"]}):
        record = record_input(spec, _context(attributes))
        assert AWS not in json.dumps(record)
        assert record["p"] == {"issue_number": 1}
        assert record["w"] == [AWS_SHOWN, "access_token", f"risk_hints.hint-{AWS_SHOWN}"]


def test_each_action_of_a_request_decided_as_several_is_withheld_alike() -> None:
    spec = _spec({"resource": {"provider": "github", "target": "acme/api"}})
    other = _spec({"resource": {"provider": "github", "target": f"acme/{AWS}"},
                   "parameters": {AWS: 1, "title": f"key {AWS}", "n": 2}})  # fmt: skip
    record = record_input(spec, _context({"content.secrets": ["aws_access_key"]}),
                          also=[(other, "high")])  # fmt: skip
    assert AWS not in json.dumps(record)
    assert record["x"] == [{"t": "github.issue.create", "k": "high", "r": {"provider": "github"},
                            "p": {"n": 2}}]  # fmt: skip
    assert record["w"] == [f"x0.{AWS_SHOWN}", "x0.title", "x0.resource.target"]
    ((restored, _),) = restore_also(record, *restore_input(record, "Bot"))
    assert restored.resource.target is None  # not `spec`'s target either


NESTED = {
    "config": {"password": "hunter2-supersecret"},
    "headers": {"Authorization": "Bearer abcdefabcdef123456"},
    "items": [{"api_key": "k-1234567890abcdef"}],
    "deep": [[{"x": {"clientSecret": "s3cr3t-value"}}]],
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_a_secret_name_inside_an_object_or_a_list_withholds_it(name: str) -> None:
    """probe_rec: no detector fired, and approvers see a marker for each of these."""
    record = record_input(_spec({"parameters": {name: NESTED[name], "n": 1}}), _context())
    assert record["p"] == {"n": 1}
    assert record["w"] == [name]


def test_objects_and_lists_without_a_secret_name_are_kept() -> None:
    parameters = {"labels": ["bug", "p1"], "meta": {"team": "core", "max_tokens": 3}}
    assert record_input(_spec({"parameters": parameters}), _context())["p"] == parameters


def test_an_older_record_is_shown_without_its_secrets_anywhere() -> None:
    legacy = {"v": 1, "t": "github.issue.create", "m": "proxy", "n": 1.0,
              "r": {"provider": "github", "target": f"{AWS}/x"},
              "p": {"config": {"password": "hunter2"}, "n": 1}, "w": [AWS, f"risk_hints.{AWS}"],
              "x": [{"t": "github.issue.get", "k": "low", "r": {"target": f"acme/{AWS}"},
                     "p": {"note": f"key {AWS}"}}, "junk"],
              "a": {"content.secrets": ["aws_access_key"]}}  # fmt: skip
    shown = shown_input(legacy)
    assert AWS not in json.dumps(shown)
    assert "hunter2" not in json.dumps(shown)
    assert shown["r"] == {"provider": "github"}
    assert shown["p"] == {"n": 1}
    assert shown["x"] == [{"t": "github.issue.get", "k": "low", "r": {}}, "junk"]
    assert shown["w"] == [AWS_SHOWN, f"risk_hints.{AWS_SHOWN}", "config", "resource.target",
                          "x0.note", "x0.resource.target"]  # fmt: skip
    assert legacy["r"]["target"] == f"{AWS}/x"  # (the stored record is left as it was)


_SECRET_NAMES = frozenset(d.name for d in SECRETS)
#: What a secret detector finds: alone, in a sentence, in a name, after a secret name.
_FOUND = st.sampled_from([TOKEN, AWS, f"deploy key {TOKEN}", f"{AWS}/files",
                          "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "password=hunter2"])  # fmt: skip
_TEXT = st.text(st.sampled_from('ab /:=-_\\"é'), max_size=6)
_FOUND_IN = st.tuples(_TEXT, _FOUND, _TEXT).map("".join)
_LEAF = st.one_of(st.none(), st.integers(), _TEXT, _FOUND, _FOUND_IN)
_KEYS = st.one_of(st.sampled_from(["title", "n", "password", "meta"]), _TEXT, _FOUND)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)
_FIELD = st.one_of(_TEXT.filter(bool), _FOUND, _FOUND_IN)
_RESOURCE = st.fixed_dictionaries(
    {"provider": st.just("github")}, optional={"account": _FIELD, "target": _FIELD}
)
_SPECS = st.builds(
    lambda resource, parameters, hints: _spec(
        {"resource": resource, "parameters": parameters, "risk_hints": hints}
    ),
    _RESOURCE,
    st.dictionaries(_KEYS, _VALUE, max_size=4),
    st.dictionaries(_KEYS, _LEAF, max_size=2),
)


def _detections(value: object) -> set[str]:
    """What the secret detectors (those :func:`masked` masks) find in each string of `value`,
    names included."""
    if isinstance(value, dict):
        return set().union(*(_detections(k) | _detections(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*map(_detections, value))
    if isinstance(value, str):
        hits = default_scanner().scan(value)
        return {value[h.start : h.end] for h in hits if h.detector in _SECRET_NAMES}
    return set()


@settings(max_examples=examples(100), deadline=None)
@given(_SPECS, st.lists(_SPECS, max_size=2), st.booleans())
def test_no_detection_in_a_spec_is_shown_from_its_record(
    spec: ActionSpec, others: list[ActionSpec], in_context: bool
) -> None:
    """When detectors fired (said by the context, or by the caller: the shadow policies'),
    nothing they find anywhere in the action or the others decided with it is shown."""
    attributes = {"content.secrets": ["github_token"]} if in_context else {}
    record = record_input(spec, _context(attributes), also=[(o, "low") for o in others],
                          detected=not in_context)  # fmt: skip
    shown = shown_input(record)
    assert not _detections(shown)  # in no string of it, no name either
    assert shown == record  # a new record is shown as stored
