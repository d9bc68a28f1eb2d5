"""What every command handler receives: parsed flags, output, project, server target."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agentfirewall_proxy.cli.client import AdminClient, open_client
from agentfirewall_proxy.cli.output import EXIT_USAGE, CliError, Output
from agentfirewall_proxy.cli.state import Project, Target, find_project, resolve_target

__all__ = ["Context", "Handler", "add_command"]

#: Where a server named by the user comes from (never sent the project's own token).
_NAMED = ("--server", "TF_SERVER")


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    cwd: Path
    env: dict[str, str]
    _project: Project | None = field(default=None, init=False)
    _looked: bool = field(default=False, init=False)

    def flag(self, name: str, default: object = None) -> object:
        return getattr(self.args, name, default)

    @property
    def project(self) -> Project | None:
        if not self._looked:
            self._project = find_project(self.cwd)
            self._looked = True
        return self._project

    def forget_project(self) -> None:
        self._looked = False

    def target(self) -> Target:
        server = self.flag("server")
        target = resolve_target(self.project, str(server) if server else None, self.env)
        if target.source in _NAMED:
            parts = urlsplit(target.server_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise CliError(
                    f"{target.source} `{target.server_url}` is not a server URL",
                    hint="e.g. --server https://tameflare.example.com (the control plane)",
                    code=EXIT_USAGE,
                )
        return target

    @contextlib.contextmanager
    def client(self, *, offline: bool = False) -> Iterator[AdminClient]:
        target = self.target()
        if not target.admin_token and target.source in _NAMED:
            raise CliError(
                f"no admin token for {target.server_url}: a server named by {target.source} "
                "never gets a project's `.tf/admin.token`",
                hint="set TF_ADMIN_TOKEN=tfa_... (an owner creates one with "
                "POST /api/v1/tokens), or drop --server/TF_SERVER to use this project's server",
            )
        if not target.admin_token:
            raise CliError(
                f"no admin token for {target.server_url}",
                hint="run `tf init` in this directory, or set TF_ADMIN_TOKEN (tfa_...)",
            )
        with open_client(target, offline=offline) as client:
            yield client


Handler = Callable[[Context], int]

_FORMATTER = argparse.RawDescriptionHelpFormatter


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: str,
    common: argparse.ArgumentParser,
    handler: Handler | None = None,
    aliases: tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    """A subcommand whose --help teaches: one line, a paragraph, then examples."""
    parser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples.strip("\n"),
        formatter_class=_FORMATTER,
        parents=[common],
        aliases=list(aliases),
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser
