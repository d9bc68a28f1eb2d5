"""CSV injection past a separator: no reading of the audit CSV export starts a formula.

A spreadsheet does not always split the file on commas: Excel splits a `.csv` on its
locale's list separator (`;` in much of Europe), LibreOffice's import has Tab ticked, a
paste splits on tabs and line breaks. Anyone can put text in the log (a failed sign-in
records the email typed, with no account), so a cell `attacker;=2+3` read on `;` gives a
cell `=2+3`, which runs. The export quotes every cell (a reader that honours quotes keeps
it one cell, whatever it splits on) and puts a `'` before a formula's first character
(`=`, `+`, `-`, `@`) wherever a cell could start: at the start of the value, and after a
separator (`,`, `;`, `|`, a tab, a line break), spaces or quotes between (OWASP, CSV
injection). A value starting with a tab or a line break is written behind a `'` too.

Every reading tried here: Python's CSV reader splitting on each separator (quotes
honoured, and read on when a cell goes on past its closing quote, as spreadsheets do), and
a plain split of each line on each separator (quotes ignored, as a paste).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentfirewall_server.audit import export_csv
from tests.server.conftest import Harness

#: What a spreadsheet may split a line on.
DELIMITERS = [",", ";", "\t", "|"]
#: What a spreadsheet runs as a formula when a cell starts with it.
FORMULA = ("=", "+", "-", "@")
#: Every character the guard reads, and text around them.
ALPHABET = "ab2 =+-@,;|\t\r\n\"'"
COLUMNS = ["event_type", "actor", "agent", "subject", "prev_hash", "hash", "created_at"]
HEADER = "id,created_at,event_type,actor,agent,subject,data,prev_hash,hash\r\n"


def _readings(text: str) -> Iterator[str]:
    """Every cell every reading of the export makes."""
    for delimiter in DELIMITERS:
        yield from (cell for row in csv.reader(io.StringIO(text, newline=""),
                                                delimiter=delimiter) for cell in row)  # fmt: skip
        for line in re.split(r"\r\n|\r|\n", text):
            yield from line.split(delimiter)


def _runs(cell: str) -> bool:
    """A cell a spreadsheet would read as a formula (after spaces, tabs or quotes, which
    an import may trim)."""
    return cell.lstrip(' \t\r\n"').startswith(FORMULA)


def _quoted_throughout(text: str) -> bool:
    """The rows are every cell quoted: written again that way, they are the same text."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    again = io.StringIO()
    csv.writer(again, quoting=csv.QUOTE_ALL).writerows(rows[1:])
    return text == HEADER + again.getvalue()


@given(st.lists(st.text(alphabet=ALPHABET, max_size=12), min_size=1, max_size=4))
def test_no_reading_of_any_separator_starts_a_formula(values: list[str]) -> None:
    events: list[dict[str, Any]] = [
        {"id": i, "data": {"email": value}, **dict.fromkeys(COLUMNS, value)}
        for i, value in enumerate(values)
    ]
    text = export_csv(events)
    ran = [cell for cell in _readings(text) if _runs(cell)]
    assert ran == [], (values, text)
    assert _quoted_throughout(text), text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row, value in zip(rows, values, strict=True):  # only `'` added, nothing lost
        for column in COLUMNS:
            assert row[column].replace("'", "") == value.replace("'", ""), column
        assert row["data"].replace("'", "") == json.dumps({"email": value}).replace("'", "")


#: The hunter's cells, and one with each separator before each formula start (a failed
#: sign-in costs a password hash, about a second here: one cell holds them all).
EVERY = (
    "x"
    + "".join(
        f"{sep}{start}1" for sep in [",", ";", "|", "\t", "\r", "\n", "\r\n"] for start in FORMULA
    )
    + "".join(f";{between}{start}1" for between in [" ", '"', ' "'] for start in FORMULA)
)
PAYLOADS = ["attacker;=2+3;", "attacker\t=20+3\t", "=2+3", EVERY]


def test_a_visitors_failed_sign_ins_export_as_text_whatever_the_separator(
    harness_factory: Any,
) -> None:
    """Through the server: failed sign-ins (no account needed), then the admin's export."""
    h: Harness = harness_factory(login_free_failures=1000)
    for payload in PAYLOADS:
        answer = h.call("POST", "/v1/auth/login", json={"email": payload, "password": "x"})
        assert answer.status_code == 401, answer.text
    export = h.admin("GET", "/v1/audit/export", params={"format": "csv"})
    assert export.status_code == 200, export.text
    text = export.text
    subjects = {row["subject"] for row in csv.DictReader(io.StringIO(text, newline=""))}
    assert "attacker;'=2+3;" in subjects  # recorded, guarded: checked for real
    assert "attacker\t'=20+3\t" in subjects
    assert "'=2+3" in subjects
    assert len(EVERY) <= 200  # (the subject keeps 200 characters)
    [every] = [s for s in subjects if s.startswith("x,")]
    assert every.replace("'", "") == EVERY
    assert [cell for cell in _readings(text) if _runs(cell)] == []
    assert _quoted_throughout(text)
