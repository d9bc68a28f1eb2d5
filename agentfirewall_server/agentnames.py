"""The rules of an agent's name: it shows all it holds and reads as no other name or scope.

Agents register under a name (`routes.agents`) and kill switches stop one by it
(`routes.killswitch`); both read names by these rules. :func:`name_problem` says why a
name would read as something else, :func:`read_as` is a name as a person reads it (to
compare with a scope's words) and :func:`twin_of` finds a live agent's name that shows as
the same one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from agentfirewall.display import visible

__all__ = ["name_problem", "read_as", "twin_of"]

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


def twin_of(name: str, others: Iterable[str]) -> str | None:
    """The first of `others` (live agents' names) that shows as `name` but is not it."""
    shown = _shown_as(name)
    return next((o for o in others if o != name and _shown_as(o) == shown), None)


def name_problem(name: str) -> str | None:
    """Why a new agent's name would read as something else, if it would. It must show all
    it holds: no blank at either end, no control character, none that shows nothing or
    acts on the display (`" all"` and `all` with a U+200B inside read as `all`; U+202E
    reverses what follows). As it reads (`read_as`: `ALL` and a full-width `all` read as
    `all`), it is no wildcard, id or kill-switch scope: `*` is the wildcard of access rules
    and policy scopes (a rule for the agent `*` would be a rule for every agent), `agt_`
    starts the ids that `/agents/{id-or-name}` tries first, and a kill-switch scope reads
    `all` as every agent and `agent:` / `connector:` as its kind."""
    if name != name.strip():
        return "a name cannot start or end with a blank (it reads as the name without): remove it"
    hidden = next((c for c in name if visible(c) != c or _SHOWS_NOTHING.match(c)), None)
    if hidden is not None:
        code = f"U+{ord(hidden):04X}"
        return f"a name cannot hold a control or invisible character ({code}): remove it"
    folded = read_as(name)
    if "*" in folded:
        return "`*` is the wildcard of access rules and policy scopes, a name cannot hold it"
    if folded.startswith("agt_"):
        return "`agt_` (in any case) starts agent ids, a name cannot"
    if folded == "all":
        return "`all` (in any case) is the kill-switch scope of every agent, a name cannot be it"
    if folded.startswith(("agent:", "connector:")):
        return "`agent:` and `connector:` (in any case) start kill-switch scopes, a name cannot"
    return None
