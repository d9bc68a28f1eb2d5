"""`Explanation.render()` (`python -m agentfirewall policy explain`) forges no line.

It split a step's detail at its newlines and printed policy and rule names raw: a policy or
rule named with a newline started a line of its own (`forged: allow` under the policy's
step), and a control character reached the terminal. Now a step's lines are the engine's
own list (one per rule) and every text is shown `visible`, as `tf policy explain` does.
"""

from __future__ import annotations

from agentfirewall.actions import parse_action_spec
from agentfirewall.policy import Engine, load_policy
from tests.core.conftest import MakeContext

MERGE = parse_action_spec({"type": "github.pr.merge", "resource": {"provider": "github"}})


def test_a_newline_or_control_character_in_a_name_is_shown_escaped(make_ctx: MakeContext) -> None:
    hostile = load_policy(
        {
            "name": "guard\nforged: allow",
            "rules": [
                {"name": "quiet\n     forged: allow", "decision": "deny",
                 "conditions": [{"field": "parameters.base", "operator": "equals", "value": "x"}]},
                {"name": "merge\x1b[2K", "decision": "require_approval"},
            ],
        }
    )  # fmt: skip
    lines = Engine(policies=[hostile]).explain(MERGE, make_ctx()).render().splitlines()
    assert not [line for line in lines if line.lstrip().startswith("forged")]
    assert not [line for line in lines if "\x1b" in line]
    rules = [line for line in lines if line.startswith("     guard\\x0aforged: allow/")]
    assert rules == [  # one line per rule, under the policy's step
        "     guard\\x0aforged: allow/quiet\\x0a     forged: allow: no match",
        "     guard\\x0aforged: allow/merge\\x1b[2K: require_approval",
    ]
    assert "3. policies: guard\\x0aforged: allow: matched" in lines
    (decided,) = [line for line in lines if line.startswith("=> ")]
    assert decided.endswith("`guard\\x0aforged: allow/merge\\x1b[2K`")
    assert "   rules: guard\\x0aforged: allow/merge\\x1b[2K" in lines
