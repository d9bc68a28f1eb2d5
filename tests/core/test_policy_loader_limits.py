"""What the loader refuses so a document can neither hide a rule nor stall whoever loads it.

A YAML merge key (`<<`) read like a second copy of a key: `decision: allow` then
`<<: {decision: deny}` loaded as allow, past the duplicate-key refusal. A document of
260,000 one-letter list items (512 KB) took ten seconds of pure-Python parsing, twice, on
the control plane's event loop; now it is refused after `MAX_NODES` nodes."""

from __future__ import annotations

import pytest
import yaml

from agentfirewall.errors import PolicyError
from agentfirewall.policy import load_policy, validate_policy_text
from agentfirewall.policy.loader import MAX_NODES, YamlLoader

RULE = (
    "name: g\nrules:\n  - name: block-deletes\n"
    '    conditions: [{field: action_spec.type, operator: glob, value: "*.delete"}]\n'
)
VALUE = "[{field: parameters.p, operator: equals, value: {a: 1, <<: {a: 2}}}]"
#: (what, document, line of the merge key)
MERGES = [
    ("a key then a merge", f"{RULE}    decision: allow\n    <<: {{decision: deny}}\n", 6),
    ("a list of merges", f"{RULE}    <<: [{{decision: allow}}, {{decision: deny}}]\n", 5),
    ("an explicit tag", f"{RULE}    decision: deny\n    !!merge x: {{decision: allow}}\n", 6),
    ("at the top", "name: g\n<<: {enabled: false}\nrules:\n  - {name: r, decision: deny}\n", 2),
    ("in a value", f"name: g\nrules:\n  - {{name: r, decision: deny, conditions: {VALUE}}}\n", 3),
]


@pytest.mark.parametrize(("text", "line"), [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_a_merge_key_is_refused_like_a_duplicate_key(text: str, line: int) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="guard.yaml")
    assert "merge keys (`<<`) are not allowed" in caught.value.message
    assert (caught.value.file, caught.value.line) == ("guard.yaml", line)
    assert [e.message for e in validate_policy_text(text)] == [caught.value.message]


def test_a_stored_document_is_read_as_it_was_accepted_merge_keys_included() -> None:
    """A control plane's stored policy is enforced: refusing it on reload would deny every
    action, so it reads as PyYAML read it when it was accepted (the key written wins)."""
    policy = load_policy(MERGES[0][1], stored=True)
    assert policy.rules[0].decision == "allow"


def test_a_quoted_merge_name_is_an_ordinary_unknown_key() -> None:
    """JSON's `"<<"` is a string, never a merge: refused as a key no policy has."""
    text = (
        '{"name": "guard", "<<": {"enabled": false}, "rules": [{"name": "r", "decision": "deny"}]}'
    )
    errors = validate_policy_text(text)
    assert [e.message for e in errors] == ["unknown field"]


def _listing(items: int) -> str:
    """A policy whose one rule lists `items` one-letter action types (4 + 2 + ... nodes)."""
    return (
        "name: p\nrules:\n  - name: r\n    conditions: [{field: action_spec.type, operator: in,"
        f" value: [{','.join(['a'] * items)}]}}]\n    decision: deny\n"
    )


def test_a_document_of_more_than_max_nodes_is_refused_with_its_line() -> None:
    big = _listing(MAX_NODES)
    with pytest.raises(PolicyError) as caught:
        load_policy(big, source="big.yaml")
    assert caught.value.message == (
        f"more than {MAX_NODES:,} keys, values and list items: split the policy"
    )
    assert (caught.value.file, caught.value.line) == ("big.yaml", 4)
    assert [e.message for e in validate_policy_text(big)] == [caught.value.message]


def test_the_attack_document_is_refused_without_being_read_whole() -> None:
    """The reviewed attack: 512 KB of one-letter items. Composing stops at the cap."""
    text = _listing((512 * 1024 - len(_listing(0))) // 2)
    loader = YamlLoader(text)
    with pytest.raises(PolicyError, match="more than"):
        loader.get_single_node()
    assert loader.nodes == MAX_NODES + 1  # nothing beyond the cap was composed
    loader.dispose()


def test_a_long_list_under_the_cap_loads_and_a_stored_one_over_it_too() -> None:
    """10,000 values fit; a document accepted before the cap existed is still read."""
    assert len(load_policy(_listing(10_000)).rules[0].conditions.all[0].value) == 10_000  # type: ignore[union-attr,arg-type]
    stored = load_policy(_listing(MAX_NODES), stored=True)
    assert stored.rules[0].decision == "deny"


def test_libyaml_parses_when_pyyaml_has_it() -> None:
    """The events come from LibYAML (C) when present: the loader's speed depends on it."""
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without LibYAML")
    from yaml._yaml import CParser

    assert issubclass(YamlLoader, CParser)
    assert yaml.load("a: [1, no, 22:00]", Loader=YamlLoader) == {"a": [1, "no", "22:00"]}  # noqa: S506
