"""`tf logs --follow` stops on Ctrl-C through an event, never a KeyboardInterrupt raised
inside the HTTP client (one raised in its connection pool could leave a lock held, and
closing the client then hung: seen once under load in the full suite)."""

from __future__ import annotations

import os
import signal
import threading

from agentfirewall_proxy.cli.monitor import _until_interrupted


def test_ctrl_c_sets_the_event_and_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    with _until_interrupted() as stopped:
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        assert stopped.wait(10)  # woken by the signal, no KeyboardInterrupt raised
        timer.join()
    assert signal.getsignal(signal.SIGINT) is before
