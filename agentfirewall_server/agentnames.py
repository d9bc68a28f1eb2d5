"""The rules of an agent's name: it shows all it holds and reads as no other name or scope.

Agents register under a name (`routes.agents`) and kill switches stop one by it
(`routes.killswitch`); both read names by these rules. :func:`name_problem` says why a
name would read as something else (:func:`shown_problem`: why it would not show all it
holds, also for connector names), :func:`read_as` is a name as a person reads it (to
compare with a scope's words), :func:`name_key` is how it shows (the store keeps one live
agent per key) and :func:`twin_of` finds a live agent's name that shows as the same one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources

from agentfirewall.display import visible

__all__ = ["name_key", "name_problem", "read_as", "shown_problem", "twin_of"]

#: What shows nothing yet is neither a control nor a format character (`visible` escapes
#: those): the rest of Unicode's Default_Ignorable_Code_Point (the combining grapheme
#: joiner, Hangul fillers, Khmer inherent vowels, variation selectors, unassigned ones).
_SHOWS_NOTHING = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2065\u3164\ufe00-\ufe0f\uffa0"
    "\ufff0-\ufff8\U000e0000-\U000e0fff]"
)


def read_as(name: str) -> str:
    """`name` as a person reads it, to compare names: NFKC (a full-width `all` or `*` is
    `all` or `*`), case-folded (`ALL` is `all`), its blanks one space, none at the ends."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _shown_as(name: str) -> str:
    """`name` as it shows, case kept (names are case-sensitive: `Bot` and `bot` are two
    agents): NFKC (a full-width `bot` is `bot`), its blanks one space, none at the ends."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


#: The marks around a right-to-left character in the package's data (it reads the lines'
#: comments, which keep a Hebrew or Arabic letter in place with them): not part of it.
_MARKS = str.maketrans("", "", "\u200e\u200f")


@functools.cache
def _prototypes() -> dict[str, str]:
    """Unicode's confusables (UTS #39's confusables.txt, as `confusable-homoglyphs` ships
    it): each character that shows as another, and the prototype it shows as (NFD).

    The package lists each line of the file both ways. A prototype maps to nothing: it has
    more than one look-alike or stands in a longer one (`m` shows as `rn`); of two that
    name only each other, the source is the one the package wrote first, as the file's line
    reads. A letter whose prototype is its own other case (an insular d, U+A77A, shows as its
    capital) keeps itself: names are case-sensitive (`Bot` and `bot` are two agents). Every
    other letter maps, also where its other case maps to the same prototype: the Cherokee v,
    U+13A5 and U+AB75, both show as `i` (`admin` with either is `admin`) and so share a key,
    as `θ` and `Θ` (both `O̵`) do."""
    shipped = resources.files("confusable_homoglyphs").joinpath("confusables.json")
    links: dict[str, list[str]] = {}
    for char, alikes in json.loads(shipped.read_text("utf-8")).items():
        links.setdefault(char.translate(_MARKS), []).extend(
            a["c"].translate(_MARKS) for a in alikes
        )
    within = {c for text in links if len(text) > 1 for c in text}
    order = {text: at for at, text in enumerate(links)}

    def is_prototype(text: str) -> bool:
        return len(text) != 1 or len(links[text]) > 1 or text in within

    table = {
        char: unicodedata.normalize("NFD", alike)
        for char, (alike, *_) in links.items()
        if not is_prototype(char) and (is_prototype(alike) or order[char] < order[alike])
    }
    return {c: p for c, p in table.items() if p not in (c.upper(), c.lower())}


def _skeleton(text: str) -> str:
    """`text` as it shows: UTS #39's skeleton (each character its prototype, between two
    NFDs), with case kept (`_prototypes`); a character's prototype applies to it composed
    too (NFC first: the data reads `ǵ` as `ģ`, which NFD would take apart first)."""
    table = _prototypes()
    for form in ("NFC", "NFD"):
        text = "".join(table.get(c, c) for c in unicodedata.normalize(form, text))
    return unicodedata.normalize("NFD", text)


def _looks(name: str) -> str:
    """`name` as it shows: as it reads (`_shown_as`), its skeleton, and so again until that
    settles (each character does in two rounds): `%` shows as `º/₀`, which reads as `o/0`,
    which shows as `o/O`, as a `º/₀` typed does."""
    shown = _skeleton(_shown_as(name))
    for _ in range(2):
        shown, before = _skeleton(_shown_as(shown)), shown
        if shown == before:
            break
    return shown


def name_key(name: str) -> str:
    """What `name` shows as, hashed (a skeleton may be many times the name's length): two
    names of one key look alike to a person (`_looks`), in another width or spacing or with
    letters of another script (`Bot` with a Cyrillic o, U+043E); case is kept (`Bot` and
    `bot` are two agents) but for a letter whose two cases show as one (`_prototypes`). The
    store keeps one live agent per key (`agents.name_key`). Stored keys depend on the
    package's data and these rules: pinned, and a change is a migration (0016, 0017)."""
    return hashlib.sha256(_looks(name).encode()).hexdigest()


def twin_of(name: str, others: Iterable[str]) -> str | None:
    """The first of `others` (live agents' names) that shows as `name` but is not it."""
    key = name_key(name)
    return next((o for o in others if o != name and name_key(o) == key), None)


def _misread(char: str) -> bool:
    """Whether `char` reads as one character and shows as another: NFKC reads a long s
    (U+017F) as `s`, and it shows as `f`. No key can stand for both (`s` and `f` are two)."""
    shows = _prototypes().get(char, char)
    return _looks(f"_{char}_") != _looks(f"_{shows}_")  # (`_`: a blank it reads as stays)


def shown_problem(name: str) -> str | None:
    """Why `name` would not show all it holds, if it would not: a blank at either end, a
    control character, one that shows nothing or acts on the display (`" all"` and `all`
    with a U+200B inside read as `all`; U+202E reverses what follows). No agent, connector
    or provider a person names can hold them: kill-switch targets and access rules' names
    are read by it too."""
    if name != name.strip():
        return "a name cannot start or end with a blank (it reads as the name without): remove it"
    hidden = next((c for c in name if visible(c) != c or _SHOWS_NOTHING.match(c)), None)
    if hidden is not None:
        code = f"U+{ord(hidden):04X}"
        return f"a name cannot hold a control or invisible character ({code}): remove it"
    return None


def name_problem(name: str) -> str | None:
    """Why a new agent's name would read as something else, if it would. It must show all
    it holds: no blank at either end, no control character, none that shows nothing or
    acts on the display (`" all"` and `all` with a U+200B inside read as `all`; U+202E
    reverses what follows), none that reads as one character and shows as another (a long
    s, U+017F, reads as `s` and shows as `f`: its key would be the one or the other). As it
    reads (`read_as`: `ALL` and a full-width `all` read as `all`) and as it shows (`all`
    with a Cyrillic a, U+0430, shows as `all`), it is no wildcard, id or kill-switch scope:
    `*` is the wildcard of access rules and policy scopes (a rule for the agent `*` would
    be a rule for every agent), `agt_` starts the ids that `/agents/{id-or-name}` tries
    first, and a kill-switch scope reads `all` as every agent and `agent:` / `connector:`
    as its kind."""
    shown = shown_problem(name)
    if shown is not None:
        return shown
    misread = next((c for c in name if _misread(c)), None)
    if misread is not None:
        code = f"U+{ord(misread):04X}"
        return (
            f"a name cannot hold `{misread}` ({code}): it reads as one character and shows as"
            " another: write the one you mean"
        )
    readings = (read_as(name), read_as(_looks(name)))
    if any("*" in r for r in readings):
        return "`*` is the wildcard of access rules and policy scopes, a name cannot hold it"
    if any(r.startswith("agt_") for r in readings):
        return "`agt_` (in any case or look-alike characters) starts agent ids, a name cannot"
    if "all" in readings:
        return (
            "`all` (in any case or look-alike characters) is the kill-switch scope of every"
            " agent, a name cannot be it"
        )
    if any(r.startswith(("agent:", "connector:")) for r in readings):
        return (
            "`agent:` and `connector:` (in any case or look-alike characters) start kill-switch"
            " scopes, a name cannot"
        )
    return None
