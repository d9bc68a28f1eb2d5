"""SDK tests: each gets its own agent on the shared live server."""

from __future__ import annotations

import pytest

from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent


@pytest.fixture
def agent(shared_live_server: LiveServer) -> LiveAgent:
    """A new agent on the session's live server."""
    return new_agent(shared_live_server)
