# ruff: noqa: RUF001, RUF002, RUF003  (look-alike characters are what this file is about)
"""A new agent's name shows what it is: nothing in it reads as something else.

Names were compared as typed: a full-width `ａｌｌ` or `＊`, `" all"`, `all` with a
zero-width space in it, a right-to-left override, were registered, and a person reading the
dashboard, `tf agent list` or a kill-switch scope saw `all`, `*` or another agent's name.
Now a name with a blank at either end, a control, format or other invisible character is
422, the rules (`*`, `agt_`, `all`, `agent:` / `connector:`) apply to the name as it reads
(NFKC, case-folded) and as it shows (`аll` with a Cyrillic `а`), and a name that shows as
a live agent's (`Ｂｏｔ`, or `Bоt` with a Cyrillic `о`, when `Bot` exists: Unicode's
confusables, UTS #39; names stay case-sensitive: `bot` is another agent) is 409, by every
route that registers an agent. A kill-switch scope reads names the same way. Agents stored
under such names before keep working.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import update

from agentfirewall_server.agentnames import name_key, name_problem
from agentfirewall_server.store.schema import agents
from tests.server.conftest import Harness

_ROUTES = ("/v1/agents", "/v1/agents/ensure")


def _width(char: str) -> list[str]:
    """`char` as typed, in the other case, and full width (U+FF01..U+FF5E)."""
    forms = {char, char.upper(), char.lower()}
    return sorted(forms | {chr(ord(c) + 0xFEE0) for c in forms if "!" <= c <= "~"})


def _reading_as(word: str) -> st.SearchStrategy[str]:
    """`word` spelled in any mix of cases and widths."""
    return st.tuples(*(st.sampled_from(_width(c)) for c in word)).map("".join)


_ORDINARY = st.sampled_from(["Bot", "ボット", "Агент-1", "bot_2", "Finance Bot", "x"])
_TAIL = st.sampled_from(["", "Bot", "x", "ボット"])
_STAR = st.sampled_from(["*", "＊", "﹡"])  # (the last: SMALL ASTERISK)
#: Blanks (at the ends); controls, format characters (zero-width, bidirectional, BOM, tags)
#: and the other characters that show nothing (Hangul fillers, variation selectors, CGJ).
_BLANK = st.characters(categories=["Zs"]) | st.sampled_from(["\t", "\n", "\u3000", "\u00a0"])
_HIDDEN = (
    st.characters(categories=["Cc", "Cf", "Zl", "Zp"])
    | st.sampled_from(["\u200b", "\u202e", "\ufeff", "\u2066", "\U000e0041", "\u00ad"])
    | st.sampled_from(["\u3164", "\uffa0", "\u115f", "\u034f", "\ufe0f", "\U000e0100"])
)


@st.composite
def _confusable(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["all", "scope", "id", "star", "blank", "hidden"]))
    if kind == "all":
        return draw(_reading_as("all"))
    if kind == "scope":
        return draw(_reading_as(draw(st.sampled_from(["agent:", "connector:"])))) + draw(_TAIL)
    if kind == "id":
        return draw(_reading_as("agt_")) + draw(_TAIL)
    name = draw(_ORDINARY)
    at = draw(st.integers(0, len(name)))
    if kind == "star":
        return name[:at] + draw(_STAR) + name[at:]
    if kind == "hidden":
        return name[:at] + draw(_HIDDEN) + name[at:]
    before, after = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return draw(_BLANK) * before + draw(st.sampled_from([name, "all"])) + draw(_BLANK) * after


@given(_confusable())
def test_a_name_that_reads_as_something_else_is_refused(name: str) -> None:
    assert name_problem(name) is not None


_LETTERS = "abcxyzBCXYZ0123456789-_.ボットデータАгентЖжΔδ"


@given(
    st.sampled_from(["Bot", "ボット", "Агент", "데이터", "Δ", "عميل", "all", "agent"]),
    st.lists(st.text(_LETTERS, min_size=1, max_size=8), max_size=3),
)
def test_an_ordinary_name_in_any_script_is_accepted(first: str, words: list[str]) -> None:
    name = " ".join([first, *words])
    if name in ("all", "agent"):  # (`agent` alone is a name; `agent:` starts a scope)
        name += " 1"
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "alike"),
    [
        ("Bot", "Bоt"),  # a Cyrillic `о`
        ("Bot", "Βot"),  # a Greek capital beta
        ("Bot", "Βοt"),  # and a Greek omicron
        ("BOT", "ВОТ"),  # all Cyrillic capitals
        ("paypal", "раураl"),  # Cyrillic `р`, `а`, `у`
        ("ops", "орs"),
        ("Bot", "Ｂｏｔ"),  # full width
        ("Finance  Bot", "Finance\u3000Bot"),  # spacing
    ],
)
def test_a_name_with_look_alike_letters_has_the_names_key(name: str, alike: str) -> None:
    assert alike != name
    assert name_key(alike) == name_key(name)


@given(st.text(min_size=1, max_size=12))
@example("Bot")
@example("Θeta")  # `θ` and `Θ` are confusables of one prototype, and each other's case
@example("Ƃar")
@example("ΣΑΣ")
def test_case_twins_never_share_a_key(name: str) -> None:
    """Names are case-sensitive (`Bot` and `bot` are two agents): no case variant of a name
    shows as it, even where Unicode's confusables would map a letter and its other case to
    one prototype."""
    for twin in {name.swapcase(), name.lower(), name.upper()} - {name}:
        assert name_key(twin) != name_key(name), (name, twin)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("аll", "is the kill-switch scope of every agent"),  # a Cyrillic `а`
        ("ΑLL", "is the kill-switch scope of every agent"),  # a Greek capital alpha
        ("∗", "is the wildcard"),  # ASTERISK OPERATOR
        ("аgt_x", "starts agent ids"),
        ("agent꞉Bot", "start kill-switch scopes"),  # MODIFIER LETTER COLON
    ],
)
def test_a_name_that_shows_as_a_scope_or_id_is_refused(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert why in problem, problem


def _refused(answer: Any, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["field"] == "name", body
    assert all(w in body["message"] for w in words), body


def test_every_route_refuses_such_a_name_and_a_live_agents_twin(harness: Harness) -> None:
    h = harness
    refused = {
        "ａｌｌ": "is the kill-switch scope of every agent",
        "＊": "is the wildcard",
        " all": "start or end with a blank",
        "Bot ": "start or end with a blank",
        "a\u200bll": "(U+200B): remove it",
        "\u202etoB": "(U+202E): remove it",
        "\ufeffBot": "(U+FEFF): remove it",
        "Bot\x1b[2J": "(U+001B): remove it",
        "all\u3164": "(U+3164): remove it",
        "ＡＧＥＮＴ：x": "start kill-switch scopes",
        "ＡＧＴ＿x": "starts agent ids",
    }
    for path in _ROUTES:
        for name, why in refused.items():
            _refused(h.admin("POST", path, json={"name": name}), 422, why)
    shown = h.admin("POST", "/v1/agents", json={"name": "\u202etoB"}).json()["message"]
    assert "`\\u202etoB`" in shown  # the name as it is, never reversing the message
    for name in ("ボット", "Агент-1", "bot_2", "all hands", "Finance  Bot"):
        h.create_agent(name)

    h.create_agent("Bot")
    for path in _ROUTES:  # `tf agent add`, the dashboard; `tf run --name`, `tf mcp`
        for twin in (
            "Ｂｏｔ",
            "Bоt",
            "Βot",
            "Finance Bot",
            "Ｆｉｎａｎｃｅ Bot",
            "Finance\u3000Bot",
        ):
            _refused(h.admin("POST", path, json={"name": twin}), 409, "reads the same")
    names = {a["name"] for a in h.admin("GET", "/v1/agents").json()["agents"]}
    assert names == {"ボット", "Агент-1", "bot_2", "all hands", "Finance  Bot", "Bot"}
    h.create_agent("bot")  # names are case-sensitive: `Bot` and `bot` are two agents
    h.create_agent("BOT")
    assert h.admin("POST", "/v1/agents/Bot/revoke").status_code == 200
    h.create_agent("Ｂｏｔ")  # a removed agent's name, and those reading as it, are free


def test_agents_stored_so_before_keep_working_and_scopes_read_names_alike(
    harness: Harness,
) -> None:
    h = harness
    h.create_agent("Bot")
    h.create_agent("old")
    h.state.db.write_sync(
        lambda c: c.execute(update(agents).where(agents.c.name == "old").values(name=" all"))
    )
    h.client.portal.call(h.state.reload)  # type: ignore[union-attr]
    ensured = h.admin("POST", "/v1/agents/ensure", json={"name": " all"})
    assert ensured.status_code == 200, ensured.text  # `tf run --name " all"` still runs it

    def kill(scope: str) -> Any:
        return h.admin("POST", "/v1/kill-switch", json={"active": True, "scope": scope})

    meant = {
        "ａｌｌ": "write `all` to stop every agent",
        "agent:ＡＬＬ": "write `all` to stop every agent",
        "Ａｇｅｎｔ：Bot": "write `agent:Bot`",
        "agent:Ｂｏｔ": "while `Bot` reads the same: write `agent:Bot`",
        "Ｂｏｔ": "while `Bot` reads the same: write `agent:Bot`",
        "agent:Bоt": "while `Bot` reads the same: write `agent:Bot`",  # a Cyrillic `о`
        "agent:Bot\u200b": "(U+200B): remove it",
    }
    for scope, hint in meant.items():
        answer = kill(scope)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "scope"
        assert hint in answer.json()["message"], answer.json()
    assert h.admin("GET", "/v1/kill-switch").json()["active"] == []
    assert kill("agent: all").status_code == 200  # the stored agent, by its exact name
    active = h.admin("GET", "/v1/kill-switch").json()["active"]
    assert [(s["scope"], s["target"]) for s in active] == [("agent", " all")]
