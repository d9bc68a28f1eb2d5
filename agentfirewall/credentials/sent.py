"""What each connector sent upstream that may still be valid, and the scrubber that finds it.

An upstream that keeps a request log (most APIs show their recent requests) hands back what
it got before: after an OAuth2 refresh, the previous access token, valid until it expires;
after an admin rotated a static credential, the previous one, valid upstream until it is
revoked. Whoever injects (the gateway into a forwarded request, ``agentfirewall_proxy.
injection``; the control plane into an action it executes, ``agentfirewall_server.
executor``) asks :meth:`SentSecrets.scrubber` with what it sends now, and gets the scrubber
of that and of what it sent before: a token until :data:`RETIRED_MARGIN` past its expiry, a
static secret (no expiry) while the process runs, the :data:`RETIRED` latest of each
connector at most. A scrubber is built again only when these change.

Pure: the clock is passed in, the scrubbers are the core's (``agentfirewall.scrubbing``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from agentfirewall.scrubbing import Scrubber, scrubber_for

__all__ = ["RETIRED", "RETIRED_MARGIN", "SentSecrets", "secret_bytes"]

#: How many secrets sent before the current ones a connector's scrubber finds at most.
RETIRED = 8
#: How long past its expiry (seconds) a token sent is still found: an upstream may accept
#: it a little late, and its clock may differ from ours.
RETIRED_MARGIN = 600.0
#: Connectors remembered at most (those of many configurations: the oldest forgotten).
_CONNECTORS = 1024


def secret_bytes(value: str) -> bytes:
    """`value` as a scrubber searches for it: UTF-8 (a token is ASCII: ``1*VSCHAR``), a lone
    surrogate (valid in JSON, no text) as such, never an error (a scrubber that cannot be
    built fails every request of the connector)."""
    return value.encode("utf-8", "surrogatepass")


class SentSecrets:
    """The secrets each connector sent, by connector id, and their scrubbers."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        #: Connector id -> the secrets sent together -> until when they may be valid (the
        #: latest last).
        self._sent: dict[str, dict[tuple[bytes, ...], float]] = {}
        self._scrubbers: dict[str, tuple[tuple[object, ...], Scrubber | None]] = {}

    def scrubber(
        self,
        connector: str,
        secrets: Iterable[bytes],
        expires_at: float = math.inf,
        also: Scrubber | None = None,
    ) -> Scrubber | None:
        """The scrubber of `secrets`, which `connector` sends now (valid until `expires_at`;
        a static secret never expires), of those it sent before (see the module), and of
        `also`'s (None: nothing to find)."""
        sent = self._sent.pop(connector, None) or {}
        if len(self._sent) >= _CONNECTORS:
            oldest = next(iter(self._sent))
            del self._sent[oldest]
            self._scrubbers.pop(oldest, None)
        self._sent[connector] = sent
        current = tuple(secrets)
        sent.pop(current, None)
        now = self.clock()
        for old, expires in list(sent.items()):  # (the oldest first)
            if len(sent) > RETIRED or expires + RETIRED_MARGIN <= now:
                del sent[old]
        if current:
            sent[current] = expires_at
        key = (also, *sent)
        found = self._scrubbers.get(connector)
        if found is not None and found[0] == key:
            return found[1]
        scrubber = scrubber_for((value for old in sent for value in old), also)
        self._scrubbers[connector] = (key, scrubber)
        return scrubber
