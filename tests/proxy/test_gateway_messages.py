"""The gateway's own messages go through its message path (``Gateway.say``: one JSON
line each under ``--log-format json``), never straight to stderr as plain text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentfirewall_proxy import connection
from agentfirewall_proxy.budgetlease import Leases, Slice
from agentfirewall_proxy.budgets import Budgets
from agentfirewall_proxy.control import ControlError, StaticControl
from agentfirewall_proxy.gateway import Gateway
from agentfirewall_proxy.snapshot import compile_snapshot
from tests.proxy.support import connector, gateway_options, rule, snapshot


class _Said:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append((level, message))


class _Refusing:
    """A control plane that answers every budget call with a 400."""

    async def settle_budgets(self, _payloads: Any) -> None:
        raise ControlError("bad request", status=400)

    async def report_leases(self, _reports: Any) -> None:
        raise ControlError("bad request", status=400)


class _Connection:
    """What ``connection._run`` reads of a client connection that failed."""

    parked = False
    writer = SimpleNamespace(transport=SimpleNamespace(is_closing=lambda: False))
    deadline = SimpleNamespace(cancel=lambda: None)

    def abort(self) -> None:
        pass


def test_an_unexpected_connection_error_is_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    json_gateway = SimpleNamespace(options=SimpleNamespace(log_format="json"))
    gateway = SimpleNamespace(
        connections=set(),
        stats={"errors": 0},
        say=lambda message, level="info": Gateway.say(json_gateway, message, level),  # type: ignore[arg-type]
    )
    conn = _Connection()

    async def fails() -> bool:
        raise RuntimeError("unexpected\nsecond line")

    asyncio.run(connection._run(gateway, conn, fails()))  # type: ignore[arg-type]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "error"
    assert "RuntimeError: unexpected\nsecond line" in record["message"]
    assert gateway.stats["errors"] == 1


def test_budget_and_config_messages_go_to_the_gateways_say(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said = _Said()
    budgets = Budgets(_Refusing(), said)  # type: ignore[arg-type]
    asyncio.run(budgets._settle([{"reservation": "r1"}]))
    leases = Leases(_Refusing(), ControlError, said)
    spent = {"Bot": 1.0}
    leases._open["l1"] = Slice("b1", "l1", 2.0, deadline=0.0, left=1.0, last_debit=0.0, spent=spent)

    async def report() -> None:
        await leases.flush(everything=True)

    asyncio.run(report())
    compile_snapshot({"connectors": [{"id": "conn_broken"}]}, say=said)
    assert capsys.readouterr().err == ""
    assert [level for level, _ in said.lines] == ["warning"] * 3
    assert "1 budget reservation(s) not settled" in said.lines[0][1]
    assert "budget lease report failed" in said.lines[1][1]
    assert "connector `conn_broken` skipped" in said.lines[2][1]


def test_a_json_gateway_says_a_skipped_connector_as_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wiring: the gateway hands its own `say` to budgets and to the config compiler."""
    options = gateway_options(tmp_path, None, log_format="json")
    broken = connector("generic", domains=["api.example.com"], auth_type="oauth2",
                       credential="not a credential document")  # fmt: skip
    gateway = Gateway(options, StaticControl(snapshot([rule("*", "allow")], connectors=[broken])))
    try:
        assert gateway.budgets.say == gateway.say
        gateway.apply(gateway.control.snapshot)  # type: ignore[attr-defined]
    finally:
        gateway.certs.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines
    said = [json.loads(line) for line in lines]  # every line JSON
    assert any("skipped" in entry["message"] for entry in said), said
