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

import functools
import json
import string
import unicodedata
from collections import defaultdict
from importlib import resources
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
        ("admin-bot", "admꭵn-bot"),  # a Cherokee small v, U+AB75 (its capital shows as `i` too)
        ("finance-agent", "fᎥnance-agent"),  # a Cherokee capital v, U+13A5
        ("b\u0304ar", "Ƃar"),  # B WITH TOPBAR, as its small letter, shows as a b with a macron
        ("Θeta", "θeta"),  # case twins, but both letters show as `O̵`: one key (see below)
    ],
)
def test_a_name_with_look_alike_letters_has_the_names_key(name: str, alike: str) -> None:
    assert alike != name
    assert name_key(alike) == name_key(name)


@functools.cache
def _alikes() -> dict[str, frozenset[str]]:
    """Unicode's confusables as `confusable-homoglyphs` ships them, read here on their own:
    each text and the texts the package lists it with (each line of confusables.txt, both
    ways; the marks that keep a right-to-left letter in place in a comment dropped)."""
    marks = dict.fromkeys((0x200E, 0x200F))
    shipped = resources.files("confusable_homoglyphs").joinpath("confusables.json")
    alikes: dict[str, set[str]] = defaultdict(set)
    for text, listed in json.loads(shipped.read_text("utf-8")).items():
        alikes[text.translate(marks)] |= {a["c"].translate(marks) for a in listed}
    return {text: frozenset(listed) for text, listed in alikes.items()}


def _case_pair(text: str, other: str) -> bool:
    """`other` is `text` in another case (`ꝺ` and `Ꝺ`)."""

    def nfd(t: str) -> str:
        return unicodedata.normalize("NFD", t)

    def cases(t: str) -> set[str]:
        return {nfd(t.upper()), nfd(t.lower())} - {nfd(t)}

    return nfd(other) in cases(text) or nfd(text) in cases(other)


def _misread(name: str) -> bool:
    """`name` is refused for a character that reads as one and shows as another (`ſ`)."""
    return "it reads as one character and shows as another" in (name_problem(name) or "")


def _look_alike(name: str, twin: str) -> bool:
    """`twin` shows as `name` (both hold a look-alike of each other's character, in turn)
    and is no case twin: so it has `name`'s key, or one of the two is refused."""
    return name_key(name) == name_key(twin) or _misread(name) or _misread(twin)


def test_every_look_alike_unicode_lists_shares_a_key_but_a_case_pair() -> None:
    """Every pair of Unicode's confusables, each in a name: the two names share a key (or one
    is refused: it reads as one character and shows as another, as `ſ`, which reads as `s`
    and shows as `f`), but a letter and its own other case (`ꝺ` shows as `Ꝺ`), which never
    do: names are case-sensitive. A letter whose other case shows as the same prototype is
    mapped too (`admꭵn` with a Cherokee v, U+AB75, is `admin`, as is U+13A5)."""
    apart, missed = [], []
    for text, listed in _alikes().items():
        for alike in listed:
            name, twin = f"ab{text}cd", f"ab{alike}cd"
            if _case_pair(text, alike):
                apart.append(text)
                if name_key(name) == name_key(twin):
                    missed.append((text, alike, "case twins share a key"))
            elif not _look_alike(name, twin):
                missed.append((text, alike, "look-alikes with two keys"))
    assert missed == []
    assert apart  # (the data has such a pair: this test reads it)


#: ASCII, and every character the data lists with a look-alike.
_SOURCES = st.sampled_from(string.ascii_letters + string.digits + "-_ ") | st.deferred(
    lambda: st.sampled_from(sorted(t for t in _alikes() if len(t) == 1))
)


@given(st.lists(_SOURCES, min_size=1, max_size=8), st.data())
def test_a_name_and_any_look_alike_of_it_share_a_key(letters: list[str], data: Any) -> None:
    """A name of letters with look-alikes, and the name with any of them (and any number)
    replaced by one that the data lists with it, no case twin: one key, or one is refused."""

    def alike(char: str) -> st.SearchStrategy[str]:
        listed = sorted(a for a in _alikes().get(char, ()) if not _case_pair(char, a))
        return st.sampled_from([char, *listed])

    name = "".join(letters)
    twin = "".join(data.draw(alike(c)) for c in letters)
    assert _look_alike(name, twin), (name, twin)


@given(st.text(min_size=1, max_size=12))
@example("Bot")
@example("ΣΑΣ")
@example("Θeta")  # `θ` and `Θ` both show as `O̵`: one key
@example("ꝺ")  # shows as its capital, and is its case twin: two keys
def test_case_twins_share_a_key_only_where_both_cases_show_as_one(name: str) -> None:
    """Names are case-sensitive (`Bot` and `bot` are two agents): a case variant of a name
    has another key, but where each letter it changes and its other case both show as one
    third (the Cherokee v, U+13A5 and U+AB75, both as `i`): those must share `i`'s key, so
    they share each other's."""

    def shown_alike(a: str, b: str) -> bool:
        return a == b or bool(_alikes().get(a, set()) & _alikes().get(b, set()))

    for twin in {name.swapcase(), name.lower(), name.upper()} - {name}:
        if name_key(twin) == name_key(name):
            assert len(twin) == len(name), (name, twin)
            assert all(shown_alike(a, b) for a, b in zip(name, twin, strict=True)), (name, twin)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("аll", "is the kill-switch scope of every agent"),  # a Cyrillic `а`
        ("ΑLL", "is the kill-switch scope of every agent"),  # a Greek capital alpha
        ("∗", "is the wildcard"),  # ASTERISK OPERATOR
        ("аgt_x", "starts agent ids"),
        ("agent꞉Bot", "start kill-switch scopes"),  # MODIFIER LETTER COLON
        # reads as one character and shows as another: no key could stand for both
        ("ſinance-agent", "`ſ` (U+017F): it reads as one character and shows as another"),
        ("ボット－1", "(U+FF0D): it reads as one"),  # reads as `-`, shows as `ー`
        ("agent①", "(U+2460): it reads as one"),  # reads as `1`, shows as `➀`
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
