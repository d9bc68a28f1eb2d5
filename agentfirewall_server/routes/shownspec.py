"""What a caller reads of an action spec: as sent if it may approve, masked if not.

An approver must see what they approve, so a person or token whose role may approve (a
member and up: ``roles.may_approve``) and the agent that sent the action read its spec as
sent (with each detection replaced when content detectors fired on it:
``actionstore.shown_spec``). A caller whose role cannot approve (a viewer) reads it as the
dashboard's card shows one (``static/js/secrets.js``), by the server's rules
(:func:`masked_spec`):

- every value under a name that says credential (``agentfirewall.content.credential_name``)
  withheld, however deeply nested, but ``true``, ``false``, ``null`` and ``""``;
- a generated-looking text under a name that hints at one (``key``, ``session``) withheld;
- in every name and text, the credential alone: what ``agentfirewall.content.masked``
  finds (a token the detectors know, a value after a secret name, a URL's password), a
  token in a known format however it looks (``ghp_…``, TameFlare's ``aaf_…`` and ``tfa_…``,
  ``whsec_…``), the credential after ``Bearer``, ``Basic`` or ``token``, and a generated
  value after a name that hints at a secret (``key = '…'``);
- every detection of any detector replaced by its marker, personal data too (a card
  number, an email address: ``actionstore.shown_spec``).

Masking reads the spec's text, which an agent may make a megabyte long: a viewer is shown
:data:`SHOWN_TEXT` characters of a spec's names and values, masked; a longer text past
them is withheld with its length, and what of an object or a list lies beyond them is one
marker counting it. A spec is masked once (:data:`REMEMBERED` of them are remembered),
in a worker thread. :func:`shown_to` applies it to an answer: each ``action_spec`` in it,
each ``input`` (a traffic row's stored decision input, :func:`masked_input`), each
``request`` (a request the gateway held: its preview, :func:`masked_request`) and each
``path`` (a traffic row's). The action's hash and ids are its own for every reader.

A held request's texts are masked by the same rules, each as a value of its own (a bound
header's value under its name), as written; or, when what its upstream reads of it
(decoded: a percent-escape, a JSON escape) holds what masking it as written does not
find (``ghp%5F…``, ``\\u0040``), decoded and masked as read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, unquote_plus

from starlette.requests import Request

from agentfirewall.content import SECRETS, credential_name, marker, masked
from agentfirewall.content.locate import body_kind
from agentfirewall.content.reading import Unescaped
from agentfirewall_server.actionstore import shown_spec
from agentfirewall_server.auth import Principal
from agentfirewall_server.roles import may_approve
from agentfirewall_server.routes.policies import off_loop

__all__ = [
    "MORE",
    "REMEMBERED",
    "SHOWN_TEXT",
    "WITHHELD",
    "masked_input",
    "masked_request",
    "masked_spec",
    "sees_as_sent",
    "shown_to",
]

#: What a withheld value reads as.
WITHHELD = marker("generic_secret")
#: How many characters of a spec's names and values a viewer is shown, masked.
SHOWN_TEXT = 16_384
#: How many specs' masked forms are remembered (an answer lists up to 100).
REMEMBERED = 256
#: The name of the marker standing for what of an object is not shown.
MORE = "…"

_MARKER = re.compile(r"\[REDACTED:[a-z0-9_]*\]")
#: A name that hints at a secret (the card's `SECRET_HINT`: the content scanner's names).
_HINT = re.compile(r"key|secret|token|passw|credential|auth|private|session|cookie", re.I)
#: The content scanner's judgement of a generated value (long, random, not a path).
_GENERATED = next(d.check for d in SECRETS if d.name == "generic_secret" and d.check)
#: Tokens by their format alone, however they look (the card's `TOKEN`): the formats the
#: detectors know (which also judge whether one looks random), TameFlare's own keys and
#: tokens, webhook signing secrets.
_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])(?:" + "|".join([
    r"(?:AKIA|ASIA)[A-Z0-9]{12,}", r"gh[pousr]_[A-Za-z0-9_]+", r"github_pat_[A-Za-z0-9_]+",
    r"[sr]k_(?:live|test)_[A-Za-z0-9]+", r"(?:xox[abposre]|xapp)-[A-Za-z0-9-]+",
    r"sk-[A-Za-z0-9_-]{8,}", r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    r"aaf_(?:live|test)_[A-Za-z0-9]+", r"tf[ag]_[A-Za-z0-9]+", r"whsec_[A-Za-z0-9+/=_-]+",
]) + r")")  # fmt: skip
#: A credential after an authorization scheme (RFC 6750's token characters).
_SCHEME = re.compile(r"(?<![A-Za-z0-9_-])(bearer|basic|token)[ \t]+([A-Za-z0-9._~+/-]+=*)", re.I)
#: `name = value`, `name: value`, `"name": "value"`, `?name=value&`: the name and what
#: assigns its value, as the card reads them.
_ASSIGNED = re.compile(r"(?<![A-Za-z0-9_-])([A-Za-z][A-Za-z0-9_-]*)[\"']?[ \t]{0,3}(?:=>|[:=])"
                       r"[ \t]{0,3}(?:(?:bearer|basic|token)[ \t]+)?", re.I)  # fmt: skip
#: The start of a value the scanner may judge generated, and a bare value.
_RUN, _BARE = re.compile(r"[A-Za-z0-9+/_.=~-]{16,256}"), re.compile(r"[^\s\"'&#;,<>]+")

_remembered: OrderedDict[bytes, Any] = OrderedDict()
_remembering = threading.Lock()


def sees_as_sent(who: Principal) -> bool:
    """Whether `who` reads action specs as sent: the agent (its own actions), or a role
    that may approve one (a member and up)."""
    return who.kind == "agent" or may_approve(who.role, ())


async def shown_to(request: Request, who: Principal, answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` as `who` may read it: as it is when :func:`sees_as_sent`, else with each
    ``action_spec``, ``input``, ``request`` and ``path`` in it, at any depth, masked
    (:data:`_MASKED`; in a worker thread, as a policy document is parsed:
    ``policies.off_loop``). What it returns shares parts with other answers: it is
    encoded, never changed."""
    if sees_as_sent(who):
        return answer
    shown = await off_loop(request, lambda: _specs_masked(answer))
    assert isinstance(shown, dict)
    return shown


def _specs_masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _MASKED[k](v) if k in _MASKED else _specs_masked(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_specs_masked(v) for v in value]
    return value


def masked_spec(spec: Any) -> Any:
    """An action spec as a viewer reads it (the module's rules), remembered by its text."""
    return _remembered_as("spec", spec, _masked)


def _masked(spec: Any) -> Any:
    shown = _Masking().value(spec, secret=False, hinted=False)  # (a URL's password first:
    return shown_spec(shown) if isinstance(shown, dict) else shown  # its host is no email)


def _remembered_as(kind: str, value: Any, mask: Callable[[Any], Any]) -> Any:
    """`mask(value)`, remembered by `kind` and the text of `value`."""
    text = json.dumps([kind, value], sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).digest()
    with _remembering:
        if key in _remembered:
            _remembered.move_to_end(key)
            return _remembered[key]
    shown = mask(value)
    with _remembering:
        _remembered[key] = shown
        while len(_remembered) > REMEMBERED:
            _remembered.popitem(last=False)
    return shown


def masked_request(request: Any) -> Any:
    """A request the gateway held as a viewer reads it (an approval's ``request``, as
    ``routes.gateway.shown_request`` stored it): its path, query and body preview, and each
    bound header's name and value, masked (the module's rules); its method, host, sizes
    and digests as they are. Remembered by its text."""
    if not isinstance(request, dict):
        return request
    return _remembered_as("request", request, _masked_request)


def _masked_request(request: dict[str, Any]) -> dict[str, Any]:
    form = body_kind(str(request.get("content_type") or "")) == "form"
    readings: dict[str, Callable[[str], str]] = {
        "path": unquote, "query": unquote_plus, "headers": unquote,
        "body_preview": unquote_plus if form else _unescaped,
    }  # fmt: skip
    shown = dict(request)
    for name, read in readings.items():
        value = request.get(name)
        if name == "headers" and isinstance(value, list):
            shown[name] = _masked_headers(value, read)
        elif isinstance(value, str):
            shown[name] = _masked_read(value, read)
    return shown


def _masked_headers(headers: list[Any], read: Callable[[str], str]) -> list[Any]:
    """Bound headers, ``[name, value]`` each, masked as one-member objects (a value under
    its name: withheld under one that says credential); what of them is past
    :data:`SHOWN_TEXT` is one ``[MORE, marker]``."""
    pairs = [{str(h[0]): h[1]} if isinstance(h, list | tuple) and len(h) == 2 else h
             for h in headers]  # fmt: skip
    shown = _masked_read(pairs, read)
    return [list(next(iter(p.items()))) if isinstance(p, dict) and p else [MORE, p] for p in shown]


def masked_path(path: Any) -> Any:
    """A traffic row's path as a viewer reads it: masked as a held request's. Remembered
    by its text."""
    if not isinstance(path, str):
        return path
    return _remembered_as("path", path, lambda text: _masked_read(text, unquote))


def _masked_read(value: Any, read: Callable[[str], str]) -> Any:
    """`value` (a text, or a list of one-member objects: headers) masked as a spec's value
    under a name that says nothing, as written; when what `read` reads of its texts (not of
    its names) is masked otherwise, as read."""
    written = _masked({"": value})[""]
    decoded = _read(value, read)
    if decoded == value:
        return written
    as_read = _masked({"": decoded})[""]
    return written if _read(written, read) == as_read else as_read


def _read(value: Any, read: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return read(value)
    if isinstance(value, dict):
        return {name: _read(inner, read) for name, inner in value.items()}
    if isinstance(value, list):
        return [_read(inner, read) for inner in value]
    return value


def _unescaped(text: str) -> str:
    """`text` with its JSON escapes decoded (as a JSON reader reads a body's strings)."""
    return Unescaped(text).text if "\\" in text else text


#: The parts of a stored decision input that hold an action's (``policy.record``).
_RECORD_PARTS = {"r": "resource", "p": "parameters", "h": "risk_hints"}


def masked_input(record: Any) -> Any:
    """A stored decision input (a traffic row's ``input``: ``agentfirewall.policy.record``)
    as a viewer reads it: the resource, parameters and risk hints it kept of its action,
    and of each other action of its request (``x``), masked as a spec's."""
    if not isinstance(record, dict):
        return record
    shown = _masked_action(record)
    if isinstance(members := record.get("x"), list):
        shown["x"] = [_masked_action(m) if isinstance(m, dict) else m for m in members]
    return shown


def _masked_action(action: dict[str, Any]) -> dict[str, Any]:
    kept = {name: action[key] for key, name in _RECORD_PARTS.items() if key in action}
    shown = masked_spec({"type": action.get("t", ""), **kept})
    return {**action, **{key: shown[name] for key, name in _RECORD_PARTS.items() if key in action}}


#: What :func:`shown_to` masks for a viewer, by the name it has in an answer.
_MASKED: dict[str, Callable[[Any], Any]] = {
    "action_spec": masked_spec,
    "input": masked_input,
    "request": masked_request,
    "path": masked_path,
}


class _Masking:
    """One spec masked within :data:`SHOWN_TEXT` characters of its names and values (each
    value or name costs one more: so many empty ones cost too)."""

    def __init__(self) -> None:
        self.left = SHOWN_TEXT

    def _fits(self, text: str) -> bool:
        """Whether `text` is shown (then counted); one that is not costs one."""
        fits = len(text) < self.left
        self.left -= len(text) + 1 if fits else 1
        return fits

    def value(self, value: Any, *, secret: bool, hinted: bool) -> Any:
        if isinstance(value, dict):
            return self._object(value, secret=secret, hinted=hinted)
        if isinstance(value, list):
            return self._array(value, secret=secret, hinted=hinted)
        return self._scalar(value, secret=secret, hinted=hinted)

    def _object(self, value: dict[str, Any], *, secret: bool, hinted: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, (name, inner) in enumerate(value.items()):
            if not self._fits(name):
                out[MORE] = f"{WITHHELD} ({len(value) - index} more)"
                break
            out[_masked_text(name)] = self.value(
                inner, secret=secret or credential_name(name),
                hinted=hinted or _HINT.search(name) is not None,
            )  # fmt: skip
        return out

    def _array(self, value: list[Any], *, secret: bool, hinted: bool) -> list[Any]:
        out: list[Any] = []
        for index, inner in enumerate(value):
            if self.left <= 0:
                out.append(f"{WITHHELD} ({len(value) - index} more)")
                break
            out.append(self.value(inner, secret=secret, hinted=hinted))
        return out

    def _scalar(self, value: Any, *, secret: bool, hinted: bool) -> Any:
        if value is None or isinstance(value, bool):
            self.left -= 1
            return value
        text = value if isinstance(value, str) else json.dumps(value)
        if secret:  # (withheld whatever its length, which is not shown)
            self.left -= 1
            return value if text == "" or _MARKER.fullmatch(text) else WITHHELD
        if not self._fits(text):
            return f"{WITHHELD} (length {len(text)})"
        if not isinstance(value, str):
            return value  # (a number holding a detection: its marker, by `shown_spec`)
        if hinted and _GENERATED(text.strip()):
            return WITHHELD
        return _masked_text(text)


def _masked_text(text: str) -> str:
    """`text` with each credential in it replaced (the module's rules for a text)."""
    text = masked(text)
    spans = [m.span() for m in _TOKEN.finditer(text)]
    spans += [m.span(2) for m in _SCHEME.finditer(text) if _scheme_credential(text, m)]
    spans += _hinted_values(text)
    joined: list[tuple[int, int]] = []  # (overlapping spans made one)
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    out: list[str] = []
    at = 0
    for start, end in joined:
        out += [text[at:start], WITHHELD]
        at = end
    return "".join([*out, text[at:]])


def _scheme_credential(text: str, found: re.Match[str]) -> bool:
    """Whether what follows a scheme is a credential (the card's rule): after ``Bearer``,
    at the start of the text, or long or not a word (`the bearer of` is prose); after
    ``Basic``, base64 of `user:password`; after ``token``, a generated value."""
    scheme, credential = found[1].lower(), found[2]
    if scheme == "bearer":
        alone = not text[: found.start()].strip()
        return alone or len(credential) >= 16 or re.search(r"[^A-Za-z]", credential) is not None
    if scheme == "basic":
        try:
            padded = credential + "=" * (-len(credential) % 4)
            return b":" in base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return False
    return _GENERATED(credential)


def _hinted_values(text: str) -> list[tuple[int, int]]:
    """Where in `text` a generated value after a name that hints at a secret is: to its
    closing quote (the end of the text when there is none), or a bare one whole. Linear:
    a value is judged by its first 256 characters and read to its end only when withheld
    (another is read on as text, for names of its own: `?next=/x?key=…`)."""
    spans: list[tuple[int, int]] = []
    at = 0
    while (named := _ASSIGNED.search(text, at)) is not None:
        at = named.end()
        if _HINT.search(named[1]) is None:
            continue
        quote = text[at] if text[at : at + 1] in ('"', "'") else ""
        start = at + len(quote)
        run = _RUN.match(text, start)
        if run is None or not _GENERATED(run[0]):
            continue
        if quote:
            end = text.find(quote, start)
            end = len(text) if end < 0 else end
        else:
            bare = _BARE.match(text, start)
            end = bare.end() if bare is not None else run.end()
        spans.append((start, end))
        at = end
    return spans
