"""What an approver is shown of a held action: no detection survives in a parameter's
value or in its name (`{"AKIA…": 1}` used to show the key id)."""

from __future__ import annotations

from agentfirewall.content import default_scanner
from agentfirewall_proxy.guard import redacted_spec

KEY_ID = "AKIAQ3V7WZ2MXK4PLRTY"


def test_a_secret_in_a_parameter_name_or_value_is_not_shown() -> None:
    spec = {
        "type": "http.post",
        "parameters": {KEY_ID: 1, "nested": [{"note": f"id {KEY_ID}"}, {KEY_ID: "v"}]},
    }
    shown = repr(redacted_spec(default_scanner(), spec))
    assert KEY_ID not in shown
    assert "[REDACTED:aws_access_key]" in shown
    assert "'type': 'http.post'" in shown
