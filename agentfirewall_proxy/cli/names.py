"""Names and ids people type: "did you mean …?" for typos, unique prefixes for ids.

A name that matches nothing known is refused with the closest known names (compared
case-insensitively), unless the command was told that naming the future is intended
(``--create`` / ``--force``). An id may be given by any unique prefix, as git accepts
abbreviated commit ids; tables show the short form (:func:`short_ids`).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from agentfirewall.policy.globs import compile_glob
from agentfirewall_proxy.cli.output import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from agentfirewall_proxy.cli.client import AdminClient

__all__ = [
    "MIN_PREFIX",
    "catalogue_actions",
    "close_matches",
    "connector_type",
    "connector_types",
    "did_you_mean",
    "listed_by",
    "one_typo_apart",
    "resolve_prefix",
    "short_ids",
    "unknown_action",
]

#: The fewest characters after an id's type prefix (``apv_``) accepted as an abbreviation.
MIN_PREFIX = 4
#: Characters after the type prefix a short id shows at least: an id's first 10 are its
#: creation time in milliseconds, the next two are random (1 in 1024 to share them).
SHORT_ID = 12
_FALLBACK_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def close_matches(word: str, known: Iterable[str], *, cutoff: float = 0.6) -> list[str]:
    """The known names closest to `word`, best first, compared case-insensitively: those
    one typo away (:func:`one_typo_apart`) at any `cutoff`, then those difflib rates at
    `cutoff` or above. (difflib's ratio alone misses a typo in a short name: `Bto` rates
    0.67 against `Bot`.)"""
    by_folded: dict[str, str] = {}
    for name in known:
        by_folded.setdefault(name.casefold(), name)
    folded = word.casefold()
    if folded in by_folded:
        return [by_folded[folded]]
    typos = [f for f in by_folded if one_typo_apart(folded, f)] if len(folded) > 1 else []
    similar = difflib.get_close_matches(folded, list(by_folded), n=3, cutoff=cutoff)
    found = [*typos, *(f for f in similar if f not in typos)]
    return [by_folded[f] for f in found[:3]]


def one_typo_apart(a: str, b: str) -> bool:
    """Whether `b` is `a` with one typo: two neighbouring characters swapped, or one
    character changed, added or left out (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if len(a) != len(b):  # one added or left out: the rest of the longer one, after it
        short, long = (a, b) if len(a) < len(b) else (b, a)
        return short[at:] == long[at + 1 :]
    swapped = a[at : at + 2] == b[at : at + 2][::-1] and a[at + 2 :] == b[at + 2 :]
    return a[at + 1 :] == b[at + 1 :] or swapped


def did_you_mean(matches: Sequence[str]) -> str:
    """`: did you mean `A` or `B`?` (empty when nothing is close)."""
    if not matches:
        return ""
    quoted = [f"`{m}`" for m in matches]
    shown = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f": did you mean {shown}?"


def connector_types() -> list[str]:
    """Every connector type the gateway parses (the registry loads every connector, so it
    is imported when a command needs it, not when `tf` starts)."""
    from agentfirewall.connectors import connector_types as registered

    return registered()


def catalogue_actions(connector: str) -> list[str]:
    """Every action name the catalogue knows for a connector type (``*``: every type),
    with the fallback ``<type>.<method>`` names and the generic connector's aliases."""
    from agentfirewall.connectors import ConnectorError, get_connector

    types = connector_types() if connector == "*" else [connector]
    names: list[str] = []
    for kind in types:
        try:
            actions = get_connector(kind).actions()
        except ConnectorError:  # a documented type without a parser module: no catalogue
            actions = []
        names.extend(info.type for info in actions)
        names.extend(f"{kind}.{method}" for method in _FALLBACK_METHODS)
        if kind == "generic":
            names.extend(f"generic.{method}" for method in _FALLBACK_METHODS)
    return sorted(set(names))


def _covers(pattern: str, name: str) -> bool:
    """Whether the action glob `pattern` matches the catalogue row `name`; a row with a
    placeholder (``mcp.tools.<name>``) stands for every name with its literal prefix."""
    head, placeholder, _ = name.partition("<")
    if placeholder:
        literal = pattern.split("*", 1)[0]
        return literal.startswith(head) or head.startswith(literal)
    return compile_glob(pattern).matches(name)


_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def unknown_action(pattern: str, connector: str) -> CliError | None:
    """None when `pattern` matches an action of `connector`'s catalogue, else the error."""
    known = catalogue_actions(connector)
    if not known:
        return None  # nothing to check against (an SDK provider, a future type)
    candidates = [n for n in known if "<" not in n]
    # what no route names: `<connector>.unknown.<method>`, granted only by a rule naming it
    kinds = {name.split(".", 1)[0] for name in known}
    unnamed = [f"{kind}.unknown.{method}" for kind in kinds for method in _METHODS]
    try:
        if any(_covers(pattern, name) for name in [*known, *unnamed]):
            return None
    except ValueError as exc:  # not an action glob at all (upper case, spaces...)
        return CliError(str(exc) + did_you_mean(close_matches(pattern, candidates)),
                        code=EXIT_USAGE)  # fmt: skip
    where = "any connector" if connector == "*" else f"the `{connector}` catalogue"
    return CliError(
        f"action `{pattern}` matches nothing in {where}"
        + did_you_mean(close_matches(pattern, candidates)),
        hint="the names are in docs/connectors.md (and the dashboard's Connectors page); "
        "add --force to keep the pattern as written",
        code=EXIT_USAGE,
    )


def resolve_prefix(kind: str, text: str, ids: Iterable[str]) -> str:
    """The one id in `ids` that is `text` or starts with it; else a usage error."""
    known = list(ids)
    if text in known:
        return text
    matches = sorted(i for i in known if i.startswith(text))
    if len(matches) == 1 and len(text) - text.find("_") - 1 >= MIN_PREFIX:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(short_ids(matches)[:5])
        raise CliError(
            f"`{text}` is ambiguous: {len(matches)} {kind}s start with it ({shown})",
            hint="give more characters of the id",
            code=EXIT_USAGE,
        )
    if matches:
        raise CliError(f"`{text}` is too short: give at least {MIN_PREFIX} characters after `_`",
                       code=EXIT_USAGE)  # fmt: skip
    raise CliError(f"no {kind} `{text}`", hint=f"list them with `tf {kind}s list`")


@contextlib.contextmanager
def listed_by(lister: str, what: str = "them") -> Iterator[None]:
    """A "not found" answer from the server inside, with the command that lists what
    exists as its hint (`tf approvals list`), not the client's "the `list` command"."""
    try:
        yield
    except CliError as exc:
        if not exc.message.startswith("not found"):
            raise
        raise CliError(exc.message, hint=f"`{lister}` lists {what}", code=exc.code) from None


def short_ids(ids: Sequence[str], *, minimum: int = SHORT_ID) -> list[str]:
    """For each id the shortest prefix (at least `minimum` characters after its type
    prefix) that no other id in `ids` starts with — what a person can copy back."""
    shown: list[str] = []
    for value in ids:
        length = min(len(value), value.find("_") + 1 + minimum)
        while length < len(value) and any(
            other != value and other.startswith(value[:length]) for other in ids
        ):
            length += 1
        shown.append(value[:length])
    return shown


def connector_type(client: AdminClient, name: str) -> str:
    """The connector type `name` stands for (a type, or a configured connector's name)."""
    if name == "*" or name in connector_types():
        return name
    configured = client.get("/v1/connectors").get("connectors", [])
    for found in configured:
        if name in (found.get("type"), found.get("name")):
            return str(found["type"])
    known = sorted(set(connector_types()) | {str(c.get("name")) for c in configured})
    raise CliError(
        f"unknown connector `{name}`" + did_you_mean(close_matches(name, known)),
        hint="connector types are " + ", ".join(connector_types()) + "; an SDK provider or a "
        "future connector: add --force",
        code=EXIT_USAGE,
    )
