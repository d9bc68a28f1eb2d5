"""JSON Schema (draft 2020-12) of the policy document, for editors and CI validation.

Generated from the pydantic models, then completed with what the models check in
code: the operator names, the ``requires_approval`` spelling and the list shorthand
for ``conditions``. The loader remains the authority (it also checks field paths,
operator values and regex safety).
"""

from __future__ import annotations

from typing import Any

from agentfirewall.policy.models import Policy
from agentfirewall.policy.operators import OPERATORS

__all__ = ["SCHEMA_ID", "document_schema"]

SCHEMA_ID = "https://agentfirewall.dev/schemas/policy-v1.json"
_DECISIONS = ["allow", "deny", "require_approval", "requires_approval", "redact"]


def document_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document."""
    schema = Policy.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    defs["FieldCondition"]["properties"]["operator"]["enum"] = list(OPERATORS)
    rule = defs["Rule"]["properties"]
    rule["decision"] = {"enum": _DECISIONS, "title": "Decision", "type": "string"}
    condition = rule["conditions"]["anyOf"][0]
    rule["conditions"]["anyOf"].insert(1, {"type": "array", "items": condition, "minItems": 1})
    defs["JsonValue"] = {"description": "any JSON value"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
