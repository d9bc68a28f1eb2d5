"""`GET /api/v1/stats/hourly`: the overview chart's counts, made by the database.

The dashboard counted the newest 1,000 traffic rows and audit events itself, so at more
than 1,000 decisions a day its chart showed only the last part of the day. Both engines:
the hour is `floor` on PostgreSQL (its CAST rounds) and a truncating CAST on SQLite.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.server.conftest import SPEC, Harness

HOUR = 3600


def _traffic(h: Harness, *records: tuple[str, float]) -> None:
    body = {"records": [{"request_id": f"req_{i}", "agent": "Bot", "connector": "github",
                         "decision": decision, "created_at": at}
                        for i, (decision, at) in enumerate(records)]}  # fmt: skip
    assert h.gateway("POST", "/v1/gateway/traffic", json=body).status_code == 200


def _hours(h: Harness, **query: Any) -> list[dict[str, Any]]:
    answer = h.admin("GET", "/v1/stats/hourly", params=query)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["hours"]
    return found


def test_every_decision_of_each_hour_is_counted(harness: Harness) -> None:
    h = harness
    now = time.time()
    end = (now // HOUR + 1) * HOUR
    if end - now < 60:  # the hour turns during the test: wait for the next one
        time.sleep(end - now + 1)
        now, end = time.time(), (time.time() // HOUR + 1) * HOUR
    start = end - 24 * HOUR
    this_hour = end - HOUR + 1  # (an instant of the current hour, not past `now`)
    _traffic(h, *[("allow", this_hour)] * 1500, ("killed", this_hour - HOUR),
             ("require_approval", start), ("deny", start - 1))  # fmt: skip
    key = h.create_agent("Bot")
    for _ in range(3):
        assert h.agent(key, "POST", "/v1/actions", json={"action_spec": SPEC}).status_code == 200

    hours = _hours(h)
    assert len(hours) == 24
    assert hours[0]["start"].endswith(":00:00.000Z")
    assert hours[-1]["proxy"] == {"allow": 1500, "deny": 0, "require_approval": 0, "killed": 0}
    assert hours[-1]["sdk"] == {"allow": 3, "deny": 0, "require_approval": 0}
    assert hours[-2]["proxy"]["killed"] == 1
    assert hours[0]["proxy"]["require_approval"] == 1  # the first instant counts
    assert sum(x["proxy"]["deny"] for x in hours) == 0  # a second before: not
    assert [x["proxy"]["allow"] for x in _hours(h, hours=1)] == [1500]


@pytest.mark.parametrize("hours", ["0", "169", "1.5", "-1", "x", "", "9" * 5000])
def test_hours_out_of_range_are_400(harness: Harness, hours: str) -> None:
    answer = harness.admin("GET", "/v1/stats/hourly", params={"hours": hours})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "hours"
    assert harness.call("GET", "/v1/stats/hourly").status_code == 401
