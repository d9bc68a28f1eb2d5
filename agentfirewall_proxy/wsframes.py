"""WebSocket frames from an upstream, scrubbed of injected secrets and re-framed.

Pure byte logic, no sockets. When the gateway injects a credential into a WebSocket
upgrade it strips ``Sec-WebSocket-Extensions`` (so nothing is compressed) and reads the
upstream's frames with :class:`FrameScrubber`: each data message is scrubbed as one
stream (a secret split across frames is still found), control frames whole.

RFC 6455 section 5.4 lets an intermediary split and join frames when no extension is in
use, so the scrubbed output is framed afresh: what is safe to send goes out at once as a
fragment (opcode of the message first, then continuations) and the end of a message
always carries ``FIN``. Masked, reserved-bit, oversized control or out-of-order frames
from the upstream are a protocol error (:class:`ScrubError`): the connection is cut.
"""

from __future__ import annotations

from agentfirewall_proxy.scrub import Scrubber, ScrubError, ScrubStream

__all__ = ["FrameScrubber", "encode_frame"]

_CONTINUATION, _CLOSE = 0x0, 0x8


def encode_frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    """An unmasked frame (as a server sends it)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size))
    elif size < 1 << 16:
        head = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + size.to_bytes(8, "big")
    return head + payload


class FrameScrubber:
    """Feed the upstream's bytes, get the frames the client may see; counts in `count`."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self._count = 0
        self._buffer = b""
        self._left = 0  # payload bytes of the current frame still to come
        self._frame: tuple[bool, int] | None = None  # (fin, opcode) of the current frame
        self._control = b""
        self._message: ScrubStream | None = None
        self._opcode = 0  # the message's opcode while none of it was sent yet, else 0
        self.closed = False

    @property
    def count(self) -> int:
        """Secrets replaced so far (in the message under way too)."""
        return self._count + (self._message.count if self._message is not None else 0)

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out: list[bytes] = []
        while self._buffer:
            if self._frame is None:
                if not self._read_head():
                    break
                if self._left:
                    continue
            else:
                piece = self._buffer[: self._left]
                self._buffer = self._buffer[len(piece) :]
                self._left -= len(piece)
                self._payload(piece, out)
            if self._left == 0 and self._frame is not None:
                self._end_frame(out)
        return b"".join(out)

    def _read_head(self) -> bool:
        buf = self._buffer
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise ScrubError("websocket frame with reserved bits (an extension was not asked)")
        if second & 0x80:
            raise ScrubError("masked websocket frame from the upstream")
        size, offset = second & 0x7F, 2
        if size == 126:
            offset = 4
        elif size == 127:
            offset = 10
        if len(buf) < offset:
            return False
        if offset > 2:
            size = int.from_bytes(buf[2:offset], "big")
        fin, opcode = bool(first & 0x80), first & 0x0F
        if opcode >= _CLOSE:
            if not fin or size > 125:
                raise ScrubError("fragmented or oversized websocket control frame")
        elif opcode == _CONTINUATION:
            if self._message is None:
                raise ScrubError("websocket continuation frame outside a message")
        elif self._message is not None:
            raise ScrubError("websocket data frame inside an unfinished message")
        else:
            self._message, self._opcode = self.scrubber.stream(), opcode
        self._buffer = buf[offset:]
        self._frame, self._left = (fin, opcode), size
        return True

    def _payload(self, piece: bytes, out: list[bytes]) -> None:
        assert self._frame is not None
        if self._frame[1] >= _CLOSE:
            self._control += piece
            return
        assert self._message is not None
        safe = self._message.feed(piece)
        if safe:
            out.append(encode_frame(False, self._opcode, safe))
            self._opcode = _CONTINUATION

    def _end_frame(self, out: list[bytes]) -> None:
        assert self._frame is not None
        fin, opcode = self._frame
        self._frame = None
        if opcode >= _CLOSE:
            payload, found = self.scrubber.scrub(self._control)
            self._count += found
            self._control = b""
            out.append(encode_frame(True, opcode, payload))
            self.closed = self.closed or opcode == _CLOSE
            return
        if not fin:
            return
        assert self._message is not None
        self._count += self._message.count
        out.append(encode_frame(True, self._opcode, self._message.finish()))
        self._message, self._opcode = None, _CONTINUATION
