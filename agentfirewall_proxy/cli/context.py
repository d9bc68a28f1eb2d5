"""What every command handler receives: parsed flags, output, project, server target."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentfirewall_proxy.cli.client import AdminClient, open_client
from agentfirewall_proxy.cli.output import CliError, Output
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
        return resolve_target(self.project, str(server) if server else None, self.env)

    def gateway_token(self, target: Target, *, also: str | None = None) -> str | None:
        """The gateway token for `target`, by the rule of the admin token: a server the user
        named (or, outside a project, the default one) gets ``TF_GATEWAY_TOKEN`` (or the
        variable `also`); the project's own server gets the project's token, which unlocks
        every vaulted credential, and only when it is on this machine."""
        if target.project is None or target.source in _NAMED:
            return self.env.get("TF_GATEWAY_TOKEN") or (self.env.get(also) if also else None)
        return target.project.read_token("gateway.token") if target.local else None

    @contextlib.contextmanager
    def client(self, *, offline: bool = False) -> Iterator[AdminClient]:
        target = self.target()
        if not target.admin_token:
            raise _no_token(target)
        with open_client(target, offline=offline) as client:
            yield client


def _no_token(target: Target) -> CliError:
    """Why `target` gets no admin token, and what to do."""
    url, project = target.server_url, target.project
    if target.source in _NAMED:
        return CliError(
            f"no admin token for {url}: a server named by {target.source} "
            "never gets a project's `.tf/admin.token`",
            hint="set TF_ADMIN_TOKEN=tfa_... (an owner creates one with "
            "POST /api/v1/tokens), or drop --server/TF_SERVER to use this project's server",
        )
    if project is None:
        return CliError(
            f"no admin token for {url}",
            hint="run `tf init` in this directory, or set TF_ADMIN_TOKEN (tfa_...)",
        )
    where = project.state_dir / ("up.json" if target.source == "tf up" else "config.yaml")
    if not target.local:
        return CliError(
            f"`{where}` names the server {url}, which is not on this machine: tf sends no "
            "token to a server only a project's files name",
            hint=f"if it is yours: --server {url} (or TF_SERVER) with TF_ADMIN_TOKEN=tfa_...; "
            f"else set server_url in {project.state_dir / 'config.yaml'} to this machine's",
        )
    return CliError(
        f"no admin token for {url}: {project.state_dir} has no `admin.token` (TF_ADMIN_TOKEN "
        "goes only to a server named by --server or TF_SERVER)",
        hint=f"run `tf init` in {project.root} (it writes the missing keys and tokens; "
        "restart `tf up` after), or name the server: --server URL with TF_ADMIN_TOKEN",
    )


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
