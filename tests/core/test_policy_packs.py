"""Built-in packs: every pack loads, validates against the schema, and is documented."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from agentfirewall.errors import PolicyError
from agentfirewall.policy import list_packs, load_pack
from agentfirewall.policy.schema import document_schema

EXPECTED = {
    "github-safe-defaults",
    "stripe-safe-defaults",
    "slack-safe-defaults",
    "openai-safe-defaults",
    "read-only",
    "maintenance-window",
}
DOCS = Path(__file__).parents[2] / "docs" / "policy-packs.md"


def test_every_pack_is_listed_and_loads() -> None:
    packs = list_packs()
    assert {p.name for p in packs} == EXPECTED
    for pack in packs:
        policy = load_pack(pack.name)
        assert policy.name == pack.name
        assert pack.description == policy.description
        assert pack.description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pack_files_match_the_json_schema(name: str) -> None:
    text = resources.files("agentfirewall.policy.packs").joinpath(f"{name}.yaml").read_text()
    jsonschema.validate(yaml.safe_load(text), document_schema())


def test_unknown_pack() -> None:
    with pytest.raises(PolicyError, match="unknown policy pack `nope`"):
        load_pack("nope")


def test_every_pack_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"`{name}`" in text


def test_schema_is_valid_and_accepts_both_spellings() -> None:
    schema = document_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = {"name": "p", "rules": [{"name": "r", "decision": "requires_approval"}]}
    jsonschema.validate(doc, schema)
    doc["rules"][0]["decision"] = "perhaps"  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
