"""The dashboard's JavaScript helpers, run in chromium: secret masking, the diff, the chart."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.cli.budget_cmd import parse_duration
from agentfirewall_proxy.cli.output import CliError
from tests.dashboard.conftest import run_module as _run
from tests.fuzzscale import examples

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(module_page: Any) -> Any:
    return module_page


@pytest.mark.parametrize(
    ("key", "value", "masked"),
    [
        ("api_token", "x", True),
        ("Authorization", "Basic abc", True),
        ("password", 1234, True),
        ("note", "Bearer abc.def", True),
        ("note", "sk_live_abcdefghijkl", True),
        ("note", "ghp_0123456789abcdef", True),
        ("note", "xoxb-1-2-3", True),
        ("note", "aaf_live_0123456789abcdef0123456789abcdef", True),
        ("amount", 12000, False),
        ("branch", "main", False),
        ("title", "fix the token refresh bug", False),
    ],
)
def test_secrets_are_masked(page: Any, key: str, value: object, masked: bool) -> None:
    out = _run(
        page,
        "secrets.js",
        "return m.maskSecrets({outer: {[arg.k]: arg.v}});",
        {"k": key, "v": value},
    )
    assert (out["outer"][key] == "••••••") is masked


def test_secrets_are_masked_inside_lists(page: Any) -> None:
    out = _run(
        page, "secrets.js", "return m.maskSecrets({headers: [{token: 'a'}, 'sk-abcdefghijkl']});"
    )
    assert out == {"headers": [{"token": "••••••"}, "••••••"]}


def test_line_diff(page: Any) -> None:
    ops = _run(page, "diff.js", "return m.diffLines('a\\nb\\nc', 'a\\nB\\nc\\nd');")
    assert [(o["op"], o["line"]) for o in ops] == [
        (" ", "a"),
        ("-", "b"),
        ("+", "B"),
        (" ", "c"),
        ("+", "d"),
    ]


def test_chart_adds_up_the_servers_hours(page: Any) -> None:
    """`GET /api/v1/stats/hourly`'s counts: both sources added, kill-switch refusals denies."""
    hours = [
        {"start": "2026-11-25T09:00:00Z",
         "sdk": {"allow": 2, "deny": 0, "require_approval": 1},
         "proxy": {"allow": 5, "deny": 1, "require_approval": 0, "killed": 3}},
        {"start": "2026-11-25T10:00:00Z",
         "sdk": {"allow": 0, "deny": 4, "require_approval": 0},
         "proxy": {"allow": 0, "deny": 0, "require_approval": 2, "killed": 0}},
    ]  # fmt: skip
    buckets = _run(page, "chart.js", "return m.fromHourly(arg.hours);", {"hours": hours})
    assert buckets == [
        {"start": 1795597200000, "allow": 7, "require_approval": 1, "deny": 4},
        {"start": 1795600800000, "allow": 0, "require_approval": 2, "deny": 4},
    ]


def test_chart_draws_one_bar_per_non_empty_series(page: Any) -> None:
    count = _run(
        page,
        "chart.js",
        """
        const box = document.createElement('div');
        const buckets = [{start: Date.now(), allow: 1, deny: 1, require_approval: 0}];
        m.drawChart(box, buckets);
        return box.querySelectorAll('rect').length;""",
    )
    assert count == 2


def test_text_helper_never_parses_html(page: Any) -> None:
    html = _run(
        page,
        "dom.js",
        "const n = m.el('td', {text: arg}); return [n.innerHTML, n.children.length];",
        "<img src=x onerror=alert(1)>",
    )
    assert html == ["&lt;img src=x onerror=alert(1)&gt;", 0]


_DURATION_JS = """return arg.map((text) => {
    try { return m.parseDuration(text); }
    catch (e) { return e instanceof m.GrantInputError ? null : String(e); }
});"""


def _cli_seconds(text: str) -> int | None:
    try:
        return parse_duration(text)
    except CliError:
        return None


@settings(max_examples=examples(8), deadline=None)
@given(texts=st.lists(st.from_regex(r"\A ?[0-9]{0,8} ?[smhdSMHDwx]? ?\Z"), max_size=40))
def test_grant_duration_reads_as_the_cli_does(page: Any, texts: list[str]) -> None:
    """The approvals page's `For how long` parses exactly as `tf approvals approve --for`."""
    texts = [*texts, "1h", "30m", "2d", "90", "0", "1w", "", "10000000s"]
    got = _run(page, "grant-form.js", _DURATION_JS, texts)
    assert got == [_cli_seconds(t) for t in texts]


_SUMMARIES = [
    ({"total": 0, "changed": 0, "changes": {}}, "No recorded traffic in the last 7 days:"),
    ({"total": 4210, "changed": 0, "changes": {}},
     "would not have changed any of the last 4,210 calls (last 7 days)"),
    ({"total": 4210, "changed": 15,
      "changes": {"allow->deny": 10, "require_approval->deny": 2, "allow->require_approval": 3}},
     "This change would have denied 12 and held 3 of the last 4,210 calls (last 7 days)."),
    ({"total": 9, "changed": 3,
      "changes": {"deny->allow": 1, "allow->deny": 1, "deny->require_approval": 1}},
     "This change would have denied 1, held 1 and allowed 1 of the last 9 calls (last 7 days)."),
]  # fmt: skip


def test_replay_summary_counts_what_the_change_would_do(page: Any) -> None:
    texts = _run(
        page,
        "replay-preview.js",
        "return arg.map((report) => m.replaySummary(report, 604800));",
        [report for report, _ in _SUMMARIES],
    )
    for text, (_, summary) in zip(texts, _SUMMARIES, strict=True):
        assert summary in text


def test_traffic_row_marks_a_shadow_divergence_only(page: Any) -> None:
    body = (
        "return arg.map((r) => m.trafficRow({agent: 'Bot', decision: 'allow', ...r})"
        ".querySelector('.shadow-marker')?.textContent ?? null);"
    )
    rows = [
        {"shadow_decision": "deny", "shadow_rule": "p/r", "shadow_diverged": True},
        {"shadow_decision": "allow", "shadow_rule": "default", "shadow_diverged": False},
        {"shadow_decision": None, "shadow_diverged": None},
    ]
    assert _run(page, "traffic-row.js", body, rows) == [" shadow: deny", None, None]


def test_traffic_row_labels_an_sdk_action(page: Any) -> None:
    body = (
        "return arg.map((r) => m.trafficRow({agent: 'Bot', decision: 'allow', ...r})"
        ".querySelectorAll('td')[4].textContent);"
    )
    rows = [
        {"source": "sdk", "action": "crm.contact.update", "shadow_diverged": True},
        {"source": "proxy", "method": "GET", "host": "api.stripe.com", "path": "/v1/balance"},
    ]
    assert _run(page, "traffic-row.js", body, rows) == ["sdk", "GET api.stripe.com /v1/balance"]


def test_traffic_row_links_the_agent_that_made_the_request(page: Any) -> None:
    """By id: a removed agent's row opens its own page, not a new agent's of that name."""
    body = (
        "return arg.map((r) => new URL(m.trafficRow({decision: 'allow', ...r})"
        ".querySelector('a').href).search);"
    )
    rows = [{"agent": "Bot", "agent_id": "agt_old"}, {"agent": "Bot", "agent_id": None}]
    assert _run(page, "traffic-row.js", body, rows) == ["?id=agt_old", ""]
