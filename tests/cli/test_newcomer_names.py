"""A name one typo away from a known agent is refused, however short it is.

`tf enforcement set --gateway Bto monitor` created a new agent `Bto` (and left `Bot`
enforced) while `Boot` was refused: the check rated names by difflib's ratio alone, which
gives a swap of two letters in a three-letter name 0.67, under the 0.8 the agent check asks.
Every command that checks an agent name shares `close_matches`, so one typo (two neighbours
swapped, a letter changed, added or left out) counts as close at any cutoff.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agentfirewall_proxy.cli.names import close_matches, one_typo_apart
from tests.cli.conftest import Project

#: what people name agents: letters, digits, spaces and dashes, short ones included
NAME = st.text(string.ascii_letters + string.digits + " -_", min_size=2, max_size=24)
#: the strictest cutoff a caller asks (the new-agent check of every command)
STRICT = 0.8


@given(NAME, st.data())
def test_two_neighbours_swapped_are_close(name: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(name) - 2))
    typed = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
    assume(typed.casefold() != name.casefold())
    assert close_matches(typed, [name], cutoff=STRICT) == [name]


@given(NAME, st.data(), st.sampled_from(string.ascii_lowercase + string.digits))
def test_one_letter_changed_added_or_left_out_is_close(
    name: str, data: st.DataObject, letter: str
) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(name) - 1))
    typed = data.draw(
        st.sampled_from(
            [
                name[:at] + letter + name[at + 1 :],  # changed
                name[:at] + letter + name[at:],  # added
                name[:at] + name[at + 1 :],  # left out
            ]
        )
    )
    assume(len(typed) > 1 and typed.casefold() != name.casefold())
    assert close_matches(typed, [name], cutoff=STRICT) == [name]


def _distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment), the textbook table."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@given(st.text("abc", max_size=6), st.text("abc", max_size=6))
def test_one_typo_apart_is_distance_one(a: str, b: str) -> None:
    assert one_typo_apart(a, b) == (_distance(a, b) == 1)


@pytest.mark.parametrize(
    ("typed", "known"),
    [("Cat", "Bot"), ("Bob", "Alice"), ("ops", "Bot"), ("a1b2", "b1a2"), ("x", "y")],
)
def test_two_typos_or_more_in_a_short_name_are_a_new_name(typed: str, known: str) -> None:
    assert close_matches(typed, [known], cutoff=STRICT) == []


def test_the_one_typo_is_named_first() -> None:
    assert close_matches("Bto", ["Botany", "Bot", "Bots"])[0] == "Bot"


def _refused(project: Project, *args: str) -> str:
    done = project.tf(*args, check=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    return done.stderr


def test_every_command_that_names_an_agent_refuses_a_swapped_short_name(
    bare_project: Project,
) -> None:
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
       "--action", "github.pr.*", "--decision", "allow")  # fmt: skip
    rule = ("--connector", "github", "--action", "github.pr.*", "--decision", "deny")
    for args in (
        ("enforcement", "set", "--gateway", "Bto", "monitor"),
        ("permissions", "set", "--gateway", "Bto", *rule),
        ("permissions", "set", "--gateway", "oBt", *rule),
        ("agent", "add", "Bto"),
    ):
        stderr = _refused(bare_project, *args)
        assert "unknown agent" in stderr
        assert "did you mean `Bot`?" in stderr
    agents = json.loads(tf("agent", "list", "--json").stdout)["agents"]
    assert [(a["name"], a["enforcement_level"]) for a in agents] == [("Bot", "full_enforce")]
    # meant: the flag each command names
    tf("enforcement", "set", "--gateway", "Bto", "monitor", "--create")
    names = {a["name"] for a in json.loads(tf("agent", "list", "--json").stdout)["agents"]}
    assert names == {"Bot", "Bto"}


@pytest.mark.slow
def test_tf_run_and_budgets_refuse_a_swapped_short_name(bare_project: Project) -> None:
    tf = bare_project.tf
    tf("init", "--port", "0", "--proxy-port", "0")
    bare_project.up()
    tf("agent", "add", "Bot")
    stderr = _refused(bare_project, "run", "--name", "Bto", "true")
    assert "did you mean `Bot`?" in stderr
    assert "--create" in stderr
    stderr = _refused(bare_project, "budget", "set", "daily", "--agent", "oBt",
                      "--connector", "github", "--limit", "5")  # fmt: skip
    assert "did you mean `Bot`?" in stderr
    names = [a["name"] for a in json.loads(tf("agent", "list", "--json").stdout)["agents"]]
    assert names == ["Bot"]
    assert json.loads(tf("budget", "list", "--json").stdout)["budgets"] == []
