"""`python -m agentfirewall_server` holds its port from the moment it binds it.

The socket is bound before the database and the keys are checked, and handed to uvicorn
after: bound only, it holds nothing, and another socket with SO_REUSEADDR could take the
same port in between (and a client would be refused). It listens at once, as the sockets
of `tf up` do (``agentfirewall_proxy.up``).
"""

from __future__ import annotations

import errno
import socket

import pytest

from agentfirewall_server.main import listen


def test_the_servers_port_is_held_from_the_bind() -> None:
    with listen("127.0.0.1", 0) as sock:
        address = sock.getsockname()
        with socket.socket() as rival:
            rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as taken:
                rival.bind(address)
        assert taken.value.errno == errno.EADDRINUSE
        with socket.create_connection(address, timeout=5):
            pass  # queued by the kernel until uvicorn accepts: not refused
