"""The gateway's cheap per-request paths give exactly what the plain definitions give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall_proxy.pipeline import created_at

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 253370764800 * 10**9), st.integers(0, 3))
def test_created_at_equals_strftime(ns: int, again: int) -> None:
    moment = EPOCH + timedelta(microseconds=ns // 1000)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert created_at(ns) == expected
    # the same second again (the cached part) and the next one
    assert created_at(ns + again * 1000) == (moment + timedelta(microseconds=again)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
