"""The ``time_window`` operator: is a moment inside a daily window?

Value: ``{start: "22:00", end: "06:00", days: [mon, tue, ...], timezone: "UTC"}``.
``start`` is inclusive and ``end`` exclusive. A window whose end is before its start
wraps past midnight; its early-morning part belongs to the day it started on, so
``{start: "22:00", end: "06:00", days: [fri]}`` covers Friday 22:00 to Saturday 06:00.
The moment is the field's value (``context.time`` is EvaluationContext.now): an aware
datetime or an ISO 8601 string with an offset. A naive time never matches.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAYS", "compile_time_window"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: Every spelling of a day a new document's `days` takes (any case): `mon`, `monday`, and
#: `tues`, `thur`, `thurs` (:func:`check_day_names`). The window itself reads a day by its
#: first three letters, as documents stored before this check were accepted.
_DAY_NAMES = {
    **{name: i for i, name in enumerate(DAYS)},
    **{name: i for i, name in enumerate(_FULL)},
    "tues": 1, "thur": 3, "thurs": 3,
}  # fmt: skip
_CLOCK_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_OFFSET_RE = re.compile(r"^(?:UTC)?([+-])([0-9]{2}):?([0-9]{2})$")
_KEYS = frozenset({"start", "end", "days", "timezone"})


def _minutes(value: object, key: str) -> int:
    if isinstance(value, str):
        match = _CLOCK_RE.fullmatch(value.strip())
        if match:
            return int(match.group(1)) * 60 + int(match.group(2))
        if key == "end" and value.strip() == "24:00":  # the end of the day: whole days
            return 24 * 60
    raise ValueError(f"time_window `{key}` must be a time like `22:00`, got `{value}`")


def _zone(name: object) -> tzinfo:
    if not isinstance(name, str) or not name:
        raise ValueError("time_window `timezone` must be a name like `UTC` or `Europe/Paris`")
    if name.upper() in ("UTC", "Z"):
        return UTC
    match = _OFFSET_RE.fullmatch(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(sign * delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone `{name}`") from None


def check_day_names(value: object) -> None:
    """Refuse a `days` entry that is not a day's name (`fridge` and `sunny` read as days by
    their first three letters); a policy document's check, not its stored reading."""
    days = value.get("days") if isinstance(value, dict) else None
    for day in days if isinstance(days, list) else ():
        if not isinstance(day, str) or day.lower() not in _DAY_NAMES:
            raise _unknown_day(day)


def _unknown_day(day: object) -> ValueError:
    return ValueError(
        f"unknown day `{str(day)[:100]}`: expected one of {', '.join(DAYS)} (or a full name)"
    )


def _days(value: object) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError("time_window `days` must be a non-empty list like `[mon, tue]`")
    days = set()
    for day in value:
        key = day[:3].lower() if isinstance(day, str) else None
        if key not in DAYS:
            raise _unknown_day(day)
        days.add(DAYS.index(key))
    return frozenset(days)


def _moment(value: object) -> datetime | None:
    if isinstance(value, str) and len(value) <= 64:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    return None


def compile_time_window(value: object) -> Callable[[object], bool]:
    """Compile a window mapping into a test over a moment; ValueError when malformed."""
    if not isinstance(value, Mapping):
        raise ValueError("time_window needs a mapping like `{start: '22:00', end: '06:00'}`")
    unknown = set(value) - _KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        near = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
        hint = f" (did you mean `{near[0]}`?)" if near else ""
        raise ValueError(
            f"unknown time_window key `{key}`{hint}: expected start, end, days, timezone"
        )
    start = _minutes(value.get("start"), "start")
    end = _minutes(value.get("end"), "end")
    if start == end:
        raise ValueError("time_window `start` and `end` must differ")
    zone = _zone(value.get("timezone", "UTC"))
    days = _days(value.get("days"))
    wraps = end < start

    def test(field_value: object) -> bool:
        moment = _moment(field_value)
        if moment is None:
            return False
        local = moment.astimezone(zone)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if not wraps:
            inside = start <= minute < end
        elif minute >= start:
            inside = True
        elif minute < end:
            inside = True
            weekday = (weekday - 1) % 7  # the morning part belongs to the day before
        else:
            inside = False
        return inside and (days is None or weekday in days)

    return test
