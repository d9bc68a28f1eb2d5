"""What `tf` prints: rich tables for people, ``--json`` for scripts, errors that say what next.

Everything printed goes through `Output`, which shows data as text: never as rich markup,
and never as terminal commands (`agentfirewall.display.visible`: an agent-chosen target or
path holding an escape sequence, a newline or a bidirectional control is printed as its
escape, so what an approver reads is what the agent sent).

Exit codes (the same for every command)::

    0  ok
    1  error (server unreachable, bad answer, invalid file...)
    2  usage (bad flags; argparse's own code)
    3  denied (a deny decision, or the server refused for lack of role)
    4  approval required (`policy test` / `policy explain` decided require_approval)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text

from agentfirewall.display import json_visible, visible
from agentfirewall_proxy.options import shown_urls

__all__ = [
    "EXIT_DENIED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_PENDING",
    "EXIT_USAGE",
    "CliError",
    "Output",
    "short_time",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_PENDING = 4


class CliError(Exception):
    """A failure the user can act on: `message` says what, `hint` says what to do next."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def _console(stream: IO[str], *, stderr: bool = False) -> Console:
    tty = stream.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "160"))
    return Console(
        file=stream,
        stderr=stderr,
        width=width,
        no_color=not tty or "NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=not tty,
    )


class Output:
    """One per command run; ``json_mode`` switches every answer to one JSON document."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.out = _console(stdout or sys.stdout)
        self.err = _console(stderr or sys.stderr, stderr=True)

    # answers ---------------------------------------------------------------------------

    def result(self, payload: object, render: Callable[[], None]) -> None:
        """`payload` as JSON with ``--json``, else whatever `render` prints."""
        if self.json_mode:
            self.json(payload)
        else:
            render()

    def json(self, payload: object) -> None:
        """`payload` as one JSON document (indented, coloured on a terminal); a string's
        hidden or display-controlling characters are written as JSON escapes."""
        document = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
        text = JSONHighlighter()(json_visible(document))
        text.no_wrap, text.overflow = True, None
        self.out.print(text, soft_wrap=True)

    def json_line(self, payload: object) -> None:
        """`payload` as one compact JSON line (JSON Lines, for a stream such as `tf logs
        --follow --json`), flushed at once; hidden characters escaped as in `json`."""
        line = json_visible(json.dumps(payload, ensure_ascii=False, default=str))
        self.out.file.write(line + "\n")
        self.out.file.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
    ) -> None:
        materialised = [[_cell(v) for v in row] for row in rows]
        if not materialised:
            self.info(empty)
            return
        table = Table(title=title, title_justify="left", header_style="bold")
        for index, column in enumerate(columns):
            if column == "id":  # ids are copied back: never wrapped, never cut
                widest = max(len(row[index]) for row in materialised)
                table.add_column(column, no_wrap=True, min_width=widest)
            else:
                table.add_column(column, overflow="fold")
        for row in materialised:
            table.add_row(*(Text(cell) for cell in row))  # cells are data, never markup
        self.out.print(table)

    def progress(self, text: str) -> contextlib.AbstractContextManager[object]:
        """A spinner on a terminal's stderr while slow work runs (nothing when piped)."""
        if self.err.is_terminal and not self.json_mode:
            return self.err.status(_text(text), spinner="dots")
        return contextlib.nullcontext()

    def note(self, text: str) -> None:
        """A dim line on stderr (progress, context), kept out of piped output."""
        self.err.print(_text(text, "dim"), soft_wrap=True)

    def line(self, text: str, style: str | None = None) -> None:
        self.out.print(_text(text, style or ""), soft_wrap=True)

    def fields(self, pairs: Iterable[tuple[str, object]]) -> None:
        for key, value in pairs:
            self.out.print(Text.assemble((f"{key}: ", "bold"), _cell(value)), soft_wrap=True)

    def success(self, text: str) -> None:
        if not self.json_mode:
            self.out.print(_text("✓ " + text, "green"), soft_wrap=True)

    def info(self, text: str) -> None:
        if not self.json_mode:
            self.out.print(_text(text, "dim"), soft_wrap=True)

    # problems (always on stderr) ---------------------------------------------------------

    def warn(self, text: str) -> None:
        self.err.print(_text("warning: " + shown_urls(text), "yellow"), soft_wrap=True)

    def error(self, message: str, hint: str | None = None) -> None:
        """`message` and what to do next (`hint`), a URL's password in either shown as
        `***` (a mistyped ``--server`` or ``TF_PROXY`` is echoed)."""
        self.err.print(_text("error: " + shown_urls(message), "bold red"), soft_wrap=True)
        if hint:
            self.err.print(_text("  → " + shown_urls(hint)), soft_wrap=True)


def _text(text: str, style: str = "") -> Text:
    """A message (its lines kept) as text, never markup nor terminal commands."""
    return Text(visible(text, keep="\n"), style=style)


def _cell(value: object) -> str:
    """One datum on one line: a newline or escape sequence in it is printed as its escape."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return visible(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return visible(str(value))


def short_time(value: Any) -> str:
    """``2026-11-25T09:00:00.123Z`` → ``09:00:00`` when that is today (UTC, as the server
    writes times), else ``2026-11-25 09:00:00``."""
    text = str(value or "")
    if "T" not in text:
        return text or "-"
    date, _, clock = text.partition("T")
    if date == datetime.now(UTC).date().isoformat():
        return clock[:8]
    return f"{date} {clock[:8]}"
