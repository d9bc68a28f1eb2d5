"""The dashboard's forms send what the API takes: a number field's limits are the API's, and
a person's password is sent as typed (its spaces are part of it), a pasted credential
trimmed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Le
from pydantic import BaseModel

import agentfirewall_server.dashboard as dashboard
from agentfirewall_server.grants import GrantBody
from agentfirewall_server.routes.agents import AgentPatch
from agentfirewall_server.routes.settings import SettingsPatch
from tests.dashboard.conftest import run_module

TEMPLATES = Path(dashboard.__file__).parent / "templates"

#: (template, the input's id, the body model of the API call the form makes, its field)
NUMBER_FIELDS = [
    ("settings.html", "s-timeout", SettingsPatch, "approval_timeout_seconds"),
    ("agent.html", "enf-rate", AgentPatch, "rate_limit_per_minute"),
    ("approvals.html", "g-uses", GrantBody, "max_uses"),
]


def _input_attributes(template: str, ident: str) -> dict[str, str]:
    text = (TEMPLATES / template).read_text()
    tag = re.search(rf'<input[^>]*(?:id|class)="{ident}"[^>]*>', text)
    assert tag is not None, f"no input `{ident}` in {template}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(0)))


def _bounds(model: type[BaseModel], field: str) -> tuple[int, int]:
    metadata = model.model_fields[field].metadata
    low = next(m.ge for m in metadata if isinstance(m, Ge))
    high = next(m.le for m in metadata if isinstance(m, Le))
    return int(low), int(high)


@pytest.mark.parametrize(("template", "ident", "model", "field"), NUMBER_FIELDS)
def test_number_fields_take_the_apis_bounds(
    template: str, ident: str, model: type[BaseModel], field: str
) -> None:
    """A value the API accepts (and may already hold) can be saved from the form again."""
    attributes = _input_attributes(template, ident)
    assert (int(attributes["min"]), int(attributes["max"])) == _bounds(model, field)


_FORM = """
const form = document.createElement("form");
for (const [name, type, value] of arg) {
  const input = document.createElement("input");
  Object.assign(input, { name, type, value });
  form.append(input);
}
return m.formToObject(form);
"""


@pytest.mark.browser
def test_password_fields_keep_their_spaces(module_page: Any) -> None:
    fields = [
        ["email", "email", "  carol@example.com "],
        ["password", "password", "  my long passphrase  "],
        ["password2", "password", "  my long passphrase  "],
        ["note", "text", "  incident 42  "],
        ["token", "password", " ghp_pasted_with_a_newline\n"],  # a credential: trimmed
    ]
    out = run_module(module_page, "dom.js", _FORM, fields)
    assert out == {
        "email": "carol@example.com",
        "password": "  my long passphrase  ",
        "password2": "  my long passphrase  ",
        "note": "incident 42",
        "token": "ghp_pasted_with_a_newline",
    }
