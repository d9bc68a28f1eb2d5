"""A lock for what test files running at once share on one machine.

The suite runs two test files at a time, each in its own process (pytest-xdist workers); two
checkouts on one machine may run at once too. What they share outside their temporary
directories (a ``node_modules`` that ``npm ci`` deletes and remakes, the default ports of
`tf up`) is used under ``machine_lock(resource)``: an exclusive ``flock`` on a file in the
system temp directory, named after the resource. A shell takes the same lock with
``flock`` (util-linux) on ``lock_file(resource)``.

The lock files are never removed (a waiter would then hold a lock on a file a newcomer no
longer sees); the kernel drops a lock when its process dies, so a killed test holds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["lock_file", "machine_lock"]


def lock_file(resource: str) -> Path:
    """The lock file of `resource` (any text naming what is shared, a path included)."""
    digest = hashlib.sha256(resource.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tameflare-tests-{digest}.lock"


@contextmanager
def machine_lock(resource: str) -> Iterator[None]:
    """Hold `resource` alone on this machine for the block: wait while another process has it."""
    with open(lock_file(resource), "a") as handle:  # (not inherited by processes started here)
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock
