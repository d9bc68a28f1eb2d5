"""`tf mcp wrap|install|uninstall|list`: local stdio MCP servers under the firewall.

``wrap`` runs one server as a governed child (:mod:`agentfirewall_proxy.mcpwrap`); it needs
the gateway token (``TF_GATEWAY_TOKEN``, else the project's ``.tf/gateway.token``) or a
snapshot file (``--config``). ``install`` rewrites an MCP client's config so every stdio
server runs under ``wrap``; ``uninstall`` puts them back; ``list`` shows them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError
from agentfirewall_proxy.mcpwrap import clients
from agentfirewall_proxy.options import MAX_CONFIG_AGE_HELP, max_config_age_problem

if TYPE_CHECKING:
    from agentfirewall_proxy.control import Control

# the relay (engine, snapshot compiler) and asyncio are imported by `wrap` only: other `tf` commands
# stay as quick to start as before
_LIMIT = 32 * 1024 * 1024

__all__ = ["register"]


def _use_project(ctx: Context) -> None:
    project = ctx.flag("project")
    if project:
        ctx.cwd = Path(str(project)).resolve()
        ctx.forget_project()


def _control(ctx: Context) -> Control:
    from agentfirewall_proxy.control import HttpControl, StaticControl

    config = ctx.flag("config")
    if config:
        return StaticControl(Path(str(config)))
    target = ctx.target()
    token = ctx.gateway_token(target, also="AGENTFIREWALL_GATEWAY_TOKEN")
    if not token:
        raise CliError(
            f"no gateway token for {target.server_url}: `tf mcp wrap` reads the gateway's "
            "config like a gateway does",
            hint="in a `tf init` project (or with --project DIR) it uses the project's own, for "
            "the project's server on this machine; for a server named by --server or "
            "TF_SERVER, set TF_GATEWAY_TOKEN (tfg_...); or pass --config FILE",
        )
    return HttpControl(target.server_url, token)


def _own_tokens(ctx: Context) -> list[str]:
    """The tokens the wrapper holds, from the environment or the project's files: the
    server never gets them, and they are scrubbed from what it writes."""
    if ctx.flag("config"):
        return []
    target = ctx.target()
    found = (ctx.gateway_token(target, also="AGENTFIREWALL_GATEWAY_TOKEN"), target.admin_token)
    return [token for token in found if token]


def _command(ctx: Context) -> list[str]:
    command = list(ctx.args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CliError(
            "no MCP server to run",
            hint='e.g. tf mcp wrap --name "Bot" -- npx -y @modelcontextprotocol/server-github',
            code=EXIT_USAGE,
        )
    return command


def wrap_cmd(ctx: Context) -> int:
    import asyncio

    from agentfirewall_proxy.mcpwrap.launch import WrapError, parse_env_specs, wrap
    from agentfirewall_proxy.mcpwrap.relay import RelayOptions

    _use_project(ctx)
    command = _command(ctx)
    if (problem := max_config_age_problem(ctx.args.max_config_age)) is not None:
        raise CliError(problem, code=EXIT_USAGE)
    try:
        specs = parse_env_specs(ctx.args.env or [])
    except WrapError as exc:
        raise CliError(str(exc), hint=exc.hint, code=EXIT_USAGE) from None
    control = _control(ctx)
    name = str(ctx.args.name)
    server_name = str(ctx.args.server_name or Path(command[-1]).stem or "mcp")
    if not clients.SERVER_NAME.fullmatch(server_name):
        raise CliError(
            f"server name `{server_name[:80]}`: 1-100 letters, digits, `.`, `_`, `-`",
            hint="pass --server-name NAME",
            code=EXIT_USAGE,
        )

    async def ensure() -> None:
        def call() -> None:
            if not ctx.target().admin_token:
                return
            with ctx.client() as client:
                client.post("/v1/agents/ensure", {"name": name})

        await asyncio.to_thread(call)

    options = RelayOptions(
        show_denied=bool(ctx.args.show_denied),
        progress_interval=float(ctx.args.progress_interval),
        limit=int(ctx.args.max_message),
        max_config_age=float(ctx.args.max_config_age),
    )
    session = wrap(
        control,
        agent=name,
        server_name=server_name,
        command=command,
        env_specs=specs,
        base_env={k: v for k, v in ctx.env.items() if k not in specs},
        options=options,
        held_back=_own_tokens(ctx),
        ensure_agent=None if ctx.flag("config") else ensure,
    )
    try:
        return _run(session)
    except WrapError as exc:
        raise CliError(str(exc), hint=exc.hint) from None


def _run(session: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (as the gateway runs), else asyncio."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(session)
    return uvloop.run(session)


def _tf_command() -> list[str]:
    found = shutil.which("tf")
    # -P: the client starts it in its own working directory, which must not shadow tf
    return [found] if found else [sys.executable, "-P", "-m", "agentfirewall_proxy.cli"]


def _client_file(ctx: Context) -> tuple[str, Path]:
    client = str(ctx.args.client)
    explicit = ctx.flag("config_file")
    path = Path(str(explicit)) if explicit else clients.config_path(client, ctx.env, ctx.cwd)
    return client, path


def _read(path: Path, named: bool = False) -> tuple[dict[str, Any], bytes | None]:
    """The client's config; `named`: the path came from --config-file (so the hint is not
    to pass one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = "check the path given to --config-file"
        if not named:
            hint = "the client keeps it elsewhere? pass --config-file FILE"
        raise CliError(f"no MCP config at `{path}`", hint=hint) from None
    except OSError as exc:  # a directory, no permission
        raise CliError(
            f"cannot read the MCP config `{path}`: {exc.strerror or exc}",
            hint="--config-file names the client's JSON file (e.g. ~/.cursor/mcp.json)",
        ) from None
    try:
        return clients.parse(raw, path), raw
    except ValueError as exc:
        raise CliError(str(exc)) from None


def install_cmd(ctx: Context) -> int:
    client, path = _client_file(ctx)
    data, raw = _read(path, named=bool(ctx.flag("config_file")))
    project = ctx.project
    done = clients.wrap_all(
        data,
        client,
        agent=str(ctx.args.name),
        tf=_tf_command(),
        project=project.root if project is not None else None,
    )
    if done:
        clients.save(path, data, raw)
    payload = {"config": str(path), "wrapped": list(done), "server_names": done,
               "backup": str(clients.backup_path(path))}  # fmt: skip
    said = [name if name == slug else f"{name} (as `{slug}`)" for name, slug in done.items()]
    ctx.out.result(payload, lambda: _said(ctx, "wrapped", said, path))
    if done and raw is not None and not clients.plain_json(raw):
        ctx.out.warn(
            f"the comments (and trailing commas) in {path} are not kept in it: the backup "
            "keeps them, and `tf mcp uninstall` puts them back"
        )
    if done and project is None:  # the client starts them elsewhere: no token to be found
        ctx.out.warn(
            "no `tf init` project here, so the entries name none (--project): each wrapped "
            "server needs TF_GATEWAY_TOKEN (and TF_SERVER) in its `env`, else it will not "
            "start; or run `tf mcp install` again in the project (`uninstall` first)"
        )
    return EXIT_OK


def uninstall_cmd(ctx: Context) -> int:
    client, path = _client_file(ctx)
    data, raw = _read(path, named=bool(ctx.flag("config_file")))
    before = clients.read_backup(path)
    done = clients.unwrap_all(data, client, before[0] if before else None)
    if done:  # back to what the backup holds: its very bytes (layout, comments)
        clients.save(path, before[1] if before and before[0] == data else data, raw)
    ctx.out.result({"config": str(path), "unwrapped": done},
                   lambda: _said(ctx, "unwrapped", done, path))  # fmt: skip
    return EXIT_OK


def _said(ctx: Context, verb: str, names: list[str], path: Path) -> None:
    if not names:
        ctx.out.info(f"nothing {verb} in {path}")
        return
    ctx.out.success(f"{verb} {', '.join(names)} in {path}")
    if verb == "wrapped":
        ctx.out.note(f"the original is kept in {clients.backup_path(path)}; restart the client")


def list_cmd(ctx: Context) -> int:
    client, path = _client_file(ctx)
    data, _ = _read(path, named=bool(ctx.flag("config_file")))
    rows = clients.entries(data, client)
    payload = {
        "config": str(path),
        "servers": [
            {"name": r.name, "wrapped": r.wrapped, "agent": r.agent, "command": r.command,
             "remote": r.remote}
            for r in rows
        ],
    }  # fmt: skip

    def render() -> None:
        ctx.out.table(
            ["server", "wrapped", "agent", "command"],
            [
                [r.name, "remote (gateway)" if r.remote else ("yes" if r.wrapped else "no"),
                 r.agent or "", " ".join(r.command)[:80]]
                for r in rows
            ],
        )  # fmt: skip

    ctx.out.result(payload, render)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "mcp",
        help="govern local (stdio) MCP servers: wrap, install, uninstall, list",
        description="Local MCP servers talk over stdio, out of the gateway's sight: `tf mcp "
        "wrap` runs one as a child and decides every JSON-RPC message like the gateway "
        "decides HTTP. See docs/mcp.md.",
        examples="  tf mcp list --client claude-desktop\n"
        '  tf mcp install --client claude-desktop --name "Bot"\n'
        '  tf mcp wrap --name "Bot" --server-name github -- npx -y '
        "@modelcontextprotocol/server-github\n"
        "  tf mcp uninstall --client claude-desktop",
        common=common,
    )
    mcp_sub = parser.add_subparsers(dest="mcp_command", metavar="SUBCOMMAND")
    wrap_parser = add_command(
        mcp_sub,
        "wrap",
        help="run an MCP server with every message decided, held or recorded",
        description="Relays JSON-RPC between the client (stdin/stdout) and COMMAND. tools/call "
        "is decided as mcp.tools.<tool>, other methods as mcp.rpc.<method>, with the rules "
        "for connector `mcp`. Nothing but JSON-RPC is written to stdout.",
        examples='  tf mcp wrap --name "Bot" --server-name github \\\n'
        "      --env GITHUB_PERSONAL_ACCESS_TOKEN=connector:github \\\n"
        "      -- npx -y @modelcontextprotocol/server-github\n"
        '  tf mcp wrap --name "Bot" --config snapshot.yaml -- python my_server.py',
        common=common,
        handler=wrap_cmd,
    )
    wrap_parser.add_argument("--name", required=True, help="the agent the session acts as")
    wrap_parser.add_argument(
        "--server-name", help="the server's name (resource target, kill-switch scope)"
    )
    wrap_parser.add_argument(
        "--env",
        action="append",
        metavar="NAME=connector:REF",
        help="give the server a vault credential in env var NAME (repeatable)",
    )
    wrap_parser.add_argument(
        "--show-denied", action="store_true", help="keep denied tools in tools/list answers"
    )
    wrap_parser.add_argument("--project", metavar="DIR", help="the `tf init` project to use")
    wrap_parser.add_argument("--config", metavar="FILE", help="a snapshot file (no server)")
    wrap_parser.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="progress notifications while a call waits for approval (default 10)",
    )
    wrap_parser.add_argument(
        "--max-message",
        type=int,
        default=_LIMIT,
        metavar="BYTES",
        help=f"largest message relayed (default {_LIMIT})",
    )
    wrap_parser.add_argument(
        "--max-config-age", type=float, default=60.0, metavar="SECONDS", help=MAX_CONFIG_AGE_HELP
    )
    wrap_parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND...",
        help="the MCP server's command line, after --",
    )
    for name, handler, text in (
        ("install", install_cmd, "put every stdio server of a client under `tf mcp wrap`"),
        ("uninstall", uninstall_cmd, "put the client's servers back as they were"),
        ("list", list_cmd, "show the client's MCP servers and which are wrapped"),
    ):
        p = add_command(
            mcp_sub,
            name,
            help=text,
            description=text[0].upper()
            + text[1:]
            + ". "
            + "Claude Desktop and Cursor: the user config; VS Code: .vscode/mcp.json here.",
            examples=f"  tf mcp {name} --client claude-desktop"
            + (' --name "Bot"' if name == "install" else "")
            + f"\n  tf mcp {name} --client cursor --config-file ~/.cursor/mcp.json"
            + (' --name "Bot"' if name == "install" else ""),
            common=common,
            handler=handler,
        )
        reads = "reads" if name == "list" else "changes"
        p.add_argument(
            "--client",
            required=True,
            choices=clients.CLIENTS,
            help=f"the MCP client whose configuration it {reads}",
        )
        p.add_argument("--config-file", metavar="FILE", help="the client's MCP config file")
        if name == "install":
            p.add_argument("--name", required=True, help="the agent the servers act as")
