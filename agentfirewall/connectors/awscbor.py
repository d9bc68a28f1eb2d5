"""The top-level fields of a CBOR body (RFC 8949), as AWS's RPCv2-CBOR protocol sends them.

Only what naming needs: the body is one map with text-string keys; each key's value is kept
when it is a text string (``TableName``, ``RoleArn``: the fields the aws connector takes
its parameters from) and skipped otherwise, read through to its end whatever it holds. The
reader is strict, so that it reads the fields the upstream reads or refuses: a key given
twice, a key that is not a text string, invalid UTF-8, a reserved or malformed head, a
``break`` outside an indefinite-length item, a chunk of another type inside an
indefinite-length string, nesting deeper than :data:`~agentfirewall.jsonlimits.MAX_DEPTH`,
a truncated item and bytes after the map are :class:`ConnectorError`. Pure.
"""

from __future__ import annotations

from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import MAX_DEPTH

__all__ = ["cbor_fields"]

_CONNECTOR = "aws"
_TEXT, _BYTES, _ARRAY, _MAP, _TAG, _SIMPLE = 3, 2, 4, 5, 6, 7
_BREAK = 0xFF
#: What an item that is no text string reads as.
_OTHER = None


def cbor_fields(body: bytes) -> dict[str, str | None]:
    """Each top-level key of the CBOR map `body` and its value when that is a text string
    (None otherwise); an empty body is no fields. Refused: see the module docstring."""
    if not body:
        return {}
    major, count, at = _head(body, 0)
    if major != _MAP:
        raise _refused("the cbor body is not a map")
    fields: dict[str, str | None] = {}
    while count is None or len(fields) < count:
        if count is None and _at_break(body, at):
            at += 1
            break
        key, at = _item(body, at, 1)
        if not isinstance(key, str):
            raise _refused("a cbor map key that is not a text string")
        if key in fields:
            raise _refused("the same cbor field twice")
        fields[key], at = _item(body, at, 1)
    if at != len(body):
        raise _refused("bytes after the cbor body's map")
    return fields


def _item(data: bytes, at: int, depth: int) -> tuple[str | None, int]:
    """The item at `at` (a text string as str, any other item as None) and where it ends."""
    if depth > MAX_DEPTH:
        raise _refused(f"the cbor body nests deeper than {MAX_DEPTH} levels")
    major, argument, at = _head(data, at)
    if major in (_TEXT, _BYTES):
        raw, at = _string(data, at, major, argument)
        return (raw.decode("utf-8") if major == _TEXT else _OTHER), at
    if major in (_ARRAY, _MAP):
        per_entry = 2 if major == _MAP else 1
        read = 0
        while argument is None or read < argument * per_entry:
            if argument is None and _at_break(data, at):
                if read % per_entry:
                    raise _refused("a cbor map with a key and no value")
                return _OTHER, at + 1
            at = _item(data, at, depth + 1)[1]
            read += 1
        return _OTHER, at
    if major == _TAG:
        return _OTHER, _item(data, at, depth + 1)[1]
    if major == _SIMPLE and argument is None:
        raise _refused("a cbor break outside an indefinite-length item")
    return _OTHER, at  # an integer, a float or a simple value: its head was all of it


def _string(data: bytes, at: int, major: int, length: int | None) -> tuple[bytes, int]:
    """The bytes of a byte or text string (text: each chunk valid UTF-8 on its own)."""
    if length is not None:
        if at + length > len(data):
            raise _refused("a truncated cbor body")
        raw = data[at : at + length]
        if major == _TEXT:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _refused("invalid utf-8 in a cbor text string") from None
        return raw, at + length
    chunks = []  # indefinite length: definite strings of the same type, then a break
    while not _at_break(data, at):
        chunk_major, size, at = _head(data, at)
        if chunk_major != major or size is None:
            raise _refused("an invalid chunk in a cbor indefinite-length string")
        chunk, at = _string(data, at, major, size)
        chunks.append(chunk)
    return b"".join(chunks), at + 1


def _head(data: bytes, at: int) -> tuple[int, int | None, int]:
    """(major type, argument: None for an indefinite length or a break, where it ends)."""
    if at >= len(data):
        raise _refused("a truncated cbor body")
    major, info = data[at] >> 5, data[at] & 0x1F
    at += 1
    if info < 24:
        return major, info, at
    if info == 31:
        if major in (0, 1, _TAG):
            raise _refused("an invalid cbor head")
        return major, None, at
    if info > 27:
        raise _refused("a reserved cbor head")
    size = 1 << (info - 24)
    if at + size > len(data):
        raise _refused("a truncated cbor body")
    return major, int.from_bytes(data[at : at + size], "big"), at + size


def _at_break(data: bytes, at: int) -> bool:
    if at >= len(data):
        raise _refused("a truncated cbor body")
    return data[at] == _BREAK


def _refused(message: str) -> ConnectorError:
    return ConnectorError(message, connector=_CONNECTOR)
