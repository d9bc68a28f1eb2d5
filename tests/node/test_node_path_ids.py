"""The Node SDK sends an action id to the action's own route, or nothing at all.

``encodeURIComponent("..")`` leaves dot segments as they are, and the URL resolves them:
``getAction("..")`` was ``GET /api/v1/`` and ``execute("..", token)`` ``POST
/api/v1/execute``. Every method taking an id takes an ``act_...`` id only, one path segment
as written; anything else is a TypeError before anything is sent. Against the live server,
through a ``fetch`` that records each URL (tests/sdk/test_path_ids.py: the Python SDK).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.livesrv import LiveServer
from tests.sdk.liveagent import LiveAgent, new_agent
from tests.sdk.test_path_ids import NOT_IDS, PIECES, WELL_FORMED

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "sdk-node"

pytestmark = [pytest.mark.node, pytest.mark.timeout(240)]

# Calls `method` with each id of CASE.ids; prints, per id, the error and every URL fetched.
SCRIPT = """
const { AgentFirewall } = await import(process.env.SDK);
const env = JSON.parse(process.env.CASE);
let sent = [];
const fetch = (url, init) => {
  sent.push(`${init.method} ${String(url)}`);
  return globalThis.fetch(url, init);
};
const tf = new AgentFirewall({ apiKey: env.key, baseUrl: env.url, fetch, maxRetries: 0 });
const calls = {
  getAction: (id) => tf.getAction(id),
  execute: (id) => tf.execute(id, "t.o.k"),
  waitForApproval: (id) => tf.waitForApproval(id, { timeoutSeconds: 0 }),
  waitForDecision: (id) => tf.waitForDecision(id, { timeoutSeconds: 0 }),
};
const out = [];
for (const id of env.ids) {
  for (const method of env.methods) {
    sent = [];
    const error = await calls[method](id).then(() => null, (e) => e);
    out.push({ id, method, error: error && { name: error.name, message: error.message }, sent });
  }
}
console.log(JSON.stringify(out));
"""


@pytest.fixture
def agent(shared_live_server: LiveServer) -> LiveAgent:
    if shutil.which("node") is None:
        pytest.skip("needs Node.js on PATH (Debian: apt-get install nodejs)")
    return new_agent(shared_live_server, "node-ids")


def outcomes(agent: LiveAgent, ids: list[str], methods: list[str], where: Path) -> list[Any]:
    node = shutil.which("node")
    assert node is not None
    (where / "ids.mjs").write_text(SCRIPT, encoding="utf-8")
    case = {"url": agent.server.api_url, "key": agent.key, "ids": ids, "methods": methods}
    env = {
        "PATH": "/usr/bin:/bin",
        "SDK": (PACKAGE / "dist" / "esm" / "index.js").as_uri(),
        "CASE": json.dumps(case),
    }
    result = subprocess.run(
        [node, "ids.mjs"], cwd=where, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the last line (split on "\n" only: an id may hold U+0085 or U+2028)
    found: list[Any] = json.loads(result.stdout.rstrip("\n").rsplit("\n", 1)[-1])
    return found


def test_every_method_refuses_an_id_that_is_no_act_id_and_sends_nothing(
    agent: LiveAgent, tmp_path: Path
) -> None:
    methods = ["getAction", "execute", "waitForApproval", "waitForDecision"]
    for outcome in outcomes(agent, NOT_IDS, methods, tmp_path):
        error = outcome["error"]
        assert error is not None, outcome
        assert error["name"] == "TypeError", outcome
        assert "is not an action id: pass the `act_...` id" in error["message"], outcome
        assert outcome["sent"] == [], outcome


_IDS = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map("".join),
    st.from_regex(WELL_FORMED, fullmatch=True),
)


@given(ids=st.lists(_IDS, min_size=50, max_size=50))
@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_id_reaches_the_actions_own_route_or_nothing_is_sent(
    agent: LiveAgent, tmp_path: Path, ids: list[str]
) -> None:
    """Sent as one segment of `/api/v1/actions/`, exactly as written, and answered by the
    action route (its 404 names the id, not `no route`); or a TypeError, nothing sent."""
    for outcome in outcomes(agent, ids, ["getAction"], tmp_path):
        action_id, error, sent = outcome["id"], outcome["error"], outcome["sent"]
        if not WELL_FORMED.fullmatch(action_id):
            assert (error["name"], sent) == ("TypeError", []), outcome
            continue
        assert [urlsplit(url.split(" ", 1)[1]).path for url in sent] == [
            f"/api/v1/actions/{action_id}"
        ], outcome
        assert error["name"] == "NotFoundError", outcome
        assert re.search(f"no action request `{re.escape(action_id)}`", error["message"]), outcome
