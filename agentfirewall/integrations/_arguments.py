"""A tool's arguments as the firewall decides on them, and the copy the tool runs with.

`snapshot` takes both at once. What the firewall reads is each argument's structure: a
pydantic model (v2 or v1) or a dataclass as an object of its fields, a list, a set or a
tuple as a list, an enum as its value, a date, a UUID or a path as pydantic writes them,
and every number as a number a rule compares. An argument that has no such form is either
a *handle* or refused with ActionSpecError:

- a handle is an object that cannot be copied (a client, a connection, a lock, a file):
  it is sent as its type's name alone (``"<sqlite3.Connection>"``: never its text, which
  may hold a password), passed to the tool as it is, and nothing in it is decided on;
- any other object (a NumPy array, a DataFrame, a class of your own) is refused: its text
  is no structure a rule reads, and may cut values off (``[0 0 ... 0]``).

Everything else the tool gets is a deep copy taken when the firewall was asked: a caller
changing an argument while the action waits for a human changes nothing that runs.

`defaults` adds what a call leaves out: the default of every parameter of the function the
tool runs that the model did not give, which the function would otherwise fill in unseen.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import numbers
import sys
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    ItemsView,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    Set,
    ValuesView,
)
from dataclasses import fields, is_dataclass
from datetime import timedelta
from decimal import Decimal, localcontext
from enum import Enum
from io import IOBase
from typing import Any

from pydantic import BaseModel, JsonValue
from pydantic_core import PydanticSerializationError, to_jsonable_python

from agentfirewall.errors import ActionSpecError, AgentFirewallError

__all__ = ["defaults", "snapshot"]

#: The most digits a policy reads on either side of the point in a number string.
_PLAIN_DIGITS = 100


def _decimal(value: Decimal) -> int | float | str:
    """A Decimal as a number a policy compares, never pydantic's ``"1E+4"`` (an exponent
    string is no number to a rule): an int when whole, else its plain positional form
    (``"0.25"``, which a rule reads as that number); past the digits a rule reads, a float.
    NaN and the infinities become float ones, which the action spec refuses, naming the
    argument: the tool does not run."""
    if value.is_nan():
        return math.nan
    if value.is_infinite():
        return float(value)
    if value.adjusted() >= _PLAIN_DIGITS or int(value.as_tuple().exponent) < -_PLAIN_DIGITS:
        return float(value)
    return int(value) if value == value.to_integral_value() else format(value, "f")


def _number(value: numbers.Number, where: str) -> int | float | str:
    """A number of any kind as one a rule compares (never ``"40001/2"`` or ``"(1+2j)"``):
    an integral one (a NumPy int) an int, a fraction the decimal it is (``"20000.5"``;
    one a decimal cannot end, such as 1/3, to the digits a rule reads), a real one (a
    NumPy float) a float. Any other (a complex number) is refused."""
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Rational):
        with localcontext(prec=_PLAIN_DIGITS):
            return _decimal(Decimal(int(value.numerator)) / Decimal(int(value.denominator)))
    if isinstance(value, numbers.Real):
        return float(value)
    raise ActionSpecError(
        f"argument `{where}` is a {type(value).__name__} number, which no rule compares: "
        "pass a real number",
        field="parameters",
    )


class _Reader:
    """One walk over the arguments: their JSON form, and the handles found on the way."""

    def __init__(self) -> None:
        self.handles: dict[int, object] = {}  # deepcopy's memo: these are not copied

    def read(self, value: object, where: str) -> JsonValue:
        if isinstance(value, Enum):
            return self.read(value.value, where)
        if value is None or isinstance(value, bool | str | int | float):
            return value  # (a subclass is written as its base value)
        if isinstance(value, timedelta):  # (its seconds, not "PT2H")
            value = Decimal(value // timedelta(microseconds=1)).scaleb(-6).normalize()
        if isinstance(value, numbers.Number):
            return _number(value, where)
        if isinstance(value, bytes | bytearray | memoryview):
            return _text(value, where)
        items = _fields(value)
        if items is not None:
            return {self.key(k, where): self.read(v, f"{where}.{k}") for k, v in items.items()}
        if isinstance(value, IOBase):
            return self.handle(value, where)  # (a file iterates, but is no list of values)
        if isinstance(value, Iterator | AsyncIterator):
            raise ActionSpecError(
                f"argument `{where}` is an iterator, which would be used up by the decision: "
                "pass a list",
                field="parameters",
            )
        if isinstance(value, Sequence | Set | KeysView | ValuesView | ItemsView):
            return [self.read(item, f"{where}[{i}]") for i, item in enumerate(value)]
        try:
            known: JsonValue = to_jsonable_python(value)  # a date, a UUID, a path...
        except PydanticSerializationError:
            return self.handle(value, where)
        return known

    def key(self, key: object, where: str) -> str:
        read = self.read(key, where)
        return read if isinstance(read, str) else json.dumps(read)

    def handle(self, value: object, where: str) -> str:
        """An object with no JSON form: a handle when it cannot be copied, else refused."""
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        try:
            copy.deepcopy(value)
        except Exception:  # (whatever the object raises): it is a handle, see the docstring
            self.handles[id(value)] = value
            return f"<{kind}>"
        raise ActionSpecError(
            f"argument `{where}` is a `{kind}`, which the firewall cannot read: pass JSON "
            "values, a pydantic model or a dataclass (what a rule reads must be visible)",
            field="parameters",
        )


def _fields(value: object) -> Mapping[Any, Any] | None:
    """A mapping, or an object of named fields (a pydantic model, v2 or v1, in Python
    form: a Decimal in it stays one; a dataclass) as a mapping, else None."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True)
    v1 = sys.modules.get("pydantic.v1")  # (not loaded: there is no v1 model)
    if v1 is not None and isinstance(value, v1.BaseModel):
        v1_fields: dict[str, Any] = value.dict(by_alias=True)
        return v1_fields
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return None


def _text(value: bytes | bytearray | memoryview, where: str) -> str:
    try:
        return bytes(value).decode()
    except UnicodeDecodeError:
        raise ActionSpecError(
            f"argument `{where}` is bytes that are not UTF-8 text, which the firewall cannot "
            "read: pass text (base64, say)",
            field="parameters",
        ) from None


def snapshot(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, JsonValue]]:
    """The arguments a tool runs with (a deep copy, handles excepted) and their JSON form,
    the firewall's parameters, taken together (see the module docstring). An iterator
    argument (``Iterable[int]``, which pydantic validates lazily) is read into a list
    first, which the tool then gets: read by the decision, it would reach the tool empty
    (a file, though it iterates, is a handle)."""
    streams = {n for n, v in args.items() if isinstance(v, Iterator) and not isinstance(v, IOBase)}
    args = {name: list(value) if name in streams else value for name, value in args.items()}
    reader = _Reader()
    try:
        read = {name: reader.read(value, name) for name, value in args.items()}
    except RecursionError:
        raise ActionSpecError(
            "the tool's arguments nest too deep (or contain themselves)", field="parameters"
        ) from None
    data: dict[str, JsonValue] = json.loads(json.dumps(read))
    try:
        copied: dict[str, Any] = copy.deepcopy(args, dict(reader.handles))
    except Exception as exc:  # an object of the user's that refuses copying: refuse the call
        raise ActionSpecError(
            f"the tool's arguments cannot be copied, and the tool must run with the ones "
            f"decided on: {type(exc).__name__}: {exc}",
            field="parameters",
        ) from exc
    return copied, data


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def defaults(
    body: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    tool: str,
    skip: Collection[str] = (),
) -> dict[str, Any]:
    """The parameters of `body` (the function `tool` runs) that a call with `args` and
    `kwargs` leaves out, with the defaults Python gives them (``bind_partial``, then
    ``apply_defaults``): the tool runs with those, so the firewall decides on them too.
    ``*args``, ``**kwargs`` and the parameters in `skip` (what the framework passes
    besides the model's arguments: a run manager, a config, injected arguments) are not
    arguments. Nothing is validated: a call `body` cannot take raises the TypeError that
    calling it would, before the firewall is asked; a body whose parameters cannot be read
    is refused (its defaults would run unseen)."""
    try:
        signature = inspect.signature(body)
    except (TypeError, ValueError) as exc:
        raise AgentFirewallError(
            f"the parameters of tool `{tool}`'s function cannot be read ({exc}), so its "
            "defaults would run without being decided on: wrap it in a `def`"
        ) from None
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"tool `{tool}` cannot take these arguments: {exc}") from None
    given = set(bound.arguments)
    bound.apply_defaults()
    return {
        name: value
        for name, value in bound.arguments.items()
        if name not in given
        and name not in skip
        and signature.parameters[name].kind not in _VARIADIC
    }
