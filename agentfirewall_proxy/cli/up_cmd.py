"""`tf up`: the CLI face of :mod:`agentfirewall_proxy.up` (creates `.tf/` on first run)."""

from __future__ import annotations

import argparse
import gc
import socket
import ssl
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.init_cmd import create_state, port_number
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError
from agentfirewall_proxy.cli.run_cmd import hide_own_environment
from agentfirewall_proxy.cli.state import (
    DEFAULT_PROXY,
    DEFAULT_SERVER,
    Config,
    read_up_file,
)

__all__ = ["register"]


class _Parsed(NamedTuple):
    resolve: dict[tuple[str, int | None], tuple[str, int]]
    agent_ports: tuple[int, int] | None


#: uvicorn's log levels (what `--log-level` takes).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _check_inputs(args: argparse.Namespace) -> _Parsed:
    """What `tf up` is given, checked before anything starts or `.tf/` is created: the
    --resolve entries and --agent-ports range (returned parsed), a missing or unreadable CA
    file, a database URL that does not parse."""
    from agentfirewall_proxy.options import parse_port_range, parse_resolve

    try:
        resolve = parse_resolve(args.resolve)
        agent_ports = parse_port_range(args.agent_ports) if args.agent_ports else None
    except ValueError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    if args.upstream_ca:
        try:
            ssl.create_default_context().load_verify_locations(cafile=args.upstream_ca)
        except ssl.SSLError:  # (an OSError too: first)
            raise CliError(
                f"--upstream-ca `{args.upstream_ca}` holds no PEM certificate",
                hint="give the PEM file of the CA that signed the upstream's certificate",
            ) from None
        except OSError as exc:
            raise CliError(
                f"cannot read --upstream-ca `{args.upstream_ca}`: {exc.strerror or exc}",
                hint="give the PEM file of the CA that signed the upstream's certificate",
            ) from None
    if args.database_url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(args.database_url)
        except (ArgumentError, ValueError):  # not shown: the URL may hold a password
            raise CliError(
                "--database-url is not a database URL (a port that is not a number?)",
                hint="e.g. postgresql://USER:PASSWORD@HOST:5432/DATABASE",
                code=EXIT_USAGE,
            ) from None
    return _Parsed(resolve, agent_ports)


def _check_opens(database_url: str) -> None:
    """The server database opens, as one line that says what to do (the server checks its
    schema and the vault's keys when it starts). A SQLite file is not opened (that makes
    it, maybe inside `.tf/`); an in-memory SQLite database is refused."""
    from agentfirewall_server.store.db import StoreError, sqlite_path
    from agentfirewall_server.vaultcheck import check_opens

    if database_url.startswith("sqlite") and sqlite_path(database_url) is not None:
        return
    try:
        check_opens(database_url)
    except StoreError as exc:
        raise CliError(str(exc)) from None


def _port(url: str) -> int:
    return urlsplit(url).port or 0


def _host(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"


def _listen(
    ctx: Context,
    what: Literal["server", "gateway"],
    host: str,
    flag: int | None,
    configured: str,
    default: str,
) -> tuple[socket.socket, ...]:
    """Sockets listening on the port from --flag as given (one per address `host` resolves
    to); the configured default moves on to the next free port when it is taken. Bound now,
    served as they are: no other process can take the port between the choice and the
    serving."""
    from agentfirewall_proxy.up import listen_sockets

    port = flag if flag is not None else _port(configured)
    # a port chosen (--port, `tf init --port`) is kept: a clash is an error
    socks = listen_sockets(host, port, what, move=flag is None and configured == default)
    chosen = socks[0].getsockname()[1]
    if port and chosen != port:
        ctx.out.warn(f"{what} port {port} is taken (another `tf up`?): using port {chosen}")
    return socks


def up(ctx: Context) -> int:
    from agentfirewall_proxy.up import (
        StoreProblem,
        UpError,
        UpInfo,
        UpOptions,
        closing_all,
        holding_up_lock,
    )
    from agentfirewall_proxy.up import up as run

    args = ctx.args
    parsed = _check_inputs(args)
    project = ctx.project
    created = project is None
    if project is None and args.database_url:  # refused before any key is made
        _check_opens(args.database_url)
    if project is None:
        with ctx.out.progress("creating .tf/ (keys, tokens, gateway CA)"):
            project = create_state(ctx.cwd, Config())
    running = read_up_file(project.state_dir)
    if running is not None:
        raise CliError(
            f"`tf up` already runs for {project.state_dir} (pid {running['pid']}, "
            f"{running['server_url']})",
            hint="use it, or stop it first",
        )
    config = project.config
    host, proxy_host = args.host or _host(config.server_url), args.host or _host(config.proxy_url)

    def ready(info: UpInfo) -> None:
        _announce(ctx, info, created)

    hide_own_environment()  # the agents `tf run` starts run as this user: keys, tokens
    try:
        with (
            holding_up_lock(project.state_dir),  # before it binds: a loser says only that
            closing_all(
                _listen(ctx, "server", host, args.port, config.server_url, DEFAULT_SERVER)
            ) as server,
            closing_all(
                _listen(
                    ctx, "gateway", proxy_host, args.proxy_port, config.proxy_url, DEFAULT_PROXY
                )
            ) as proxy,
        ):
            options = UpOptions(
                state_dir=project.state_dir,
                host=host,
                port=server[0].getsockname()[1],
                proxy_host=proxy_host,
                proxy_port=proxy[0].getsockname()[1],
                resolve=parsed.resolve,
                upstream_ca=Path(args.upstream_ca) if args.upstream_ca else None,
                agent_ports=parsed.agent_ports,
                database_url=args.database_url,
                log_level=args.log_level,
                access_log=bool(args.access_log),
                server_sockets=server,
                proxy_sockets=proxy,
                up_lock_held=True,
            )
            run(options, ready)
    except StoreProblem as exc:
        raise CliError(str(exc)) from None
    except UpError as exc:
        raise CliError(
            str(exc),
            hint="another program uses the port (pick others with --port/--proxy-port), "
            "--host is not an address of this machine, or the server failed to start "
            "(its log is above: an unreachable --database-url?)",
        ) from None
    ctx.out.info("TameFlare stopped; every record is saved in " + str(project.state_dir))
    # everything is closed and saved: what is left is the interpreter's teardown, whose
    # collections over the server's whole heap took ~0.4 s after each Ctrl-C; objects out of
    # the collector's sight are freed by reference counting alone (benchmarks/startup.py)
    gc.freeze()
    return EXIT_OK


def _announce(ctx: Context, info: Any, created: bool) -> None:
    payload = {
        "server_url": info.server_url,
        "proxy_url": info.proxy_url,
        "dashboard_url": info.dashboard_url,
        "setup_url": info.setup_url,
        "ca_cert": str(info.ca_cert),
        "state_dir": str(info.state_dir),
    }
    if ctx.out.json_mode:
        ctx.out.json(payload)
        ctx.out.out.file.flush()
        return
    if created:
        ctx.out.success(f"created {info.state_dir} (keys, tokens, CA; files 0600; git-ignored)")
    ctx.out.line("TameFlare is up", style="bold green")
    ctx.out.fields(
        [
            ("  dashboard", info.dashboard_url),
            ("  login link", (info.setup_url or info.dashboard_url + "/login")),
            ("  API", info.server_url + "/api"),
            ("  gateway", f"{info.proxy_url} (CA {info.ca_cert})"),
        ]
    )
    if info.setup_url:
        ctx.out.info("  the login link is one-time: it creates the owner account")
    ctx.out.line("next, in another terminal in this directory:")
    for step in (
        "tf connector add github --token ghp_xxx",
        'tf permissions set --gateway "Bot" --connector github --action "github.pr.*" '
        "--decision allow",
        'tf run --name "Bot" python my_agent.py',
    ):
        ctx.out.line("  " + step)
    ctx.out.info("Ctrl-C stops TameFlare (approvals and records are kept)")
    ctx.out.out.file.flush()


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "up",
        help="run the control plane, the dashboard and the gateway proxy (one process)",
        description="Runs everything on this machine with the embedded SQLite store in .tf/ "
        "(created on the first run, like `tf init`). Prints the dashboard URL and a one-time "
        "login link. Ctrl-C shuts down cleanly; approvals and records are kept.",
        examples="  tf up\n  tf up --port 3001 --proxy-port 8444\n"
        "  tf up --port 0 --proxy-port 0          # any free ports (see .tf/up.json)\n"
        "  tf up --resolve api.github.com=127.0.0.1:9443 --upstream-ca fake-ca.pem\n"
        "  tf up --agent-ports 10001-10100        # each agent its own proxy port",
        common=common,
        handler=up,
    )
    parser.add_argument(
        "--port",
        type=port_number,
        help="control plane + dashboard (default 3000, or the next free one)",
    )
    parser.add_argument(
        "--proxy-port", type=port_number, help="gateway proxy (default 8443, or the next free one)"
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST[:PORT]=IP:PORT",
        help="send the gateway's upstream connections for HOST to IP:PORT (testing, staging)",
    )
    parser.add_argument("--upstream-ca", metavar="FILE", help="extra CA for upstream TLS")
    parser.add_argument("--agent-ports", metavar="FIRST-LAST", help="a proxy port per agent")
    parser.add_argument("--database-url", help="e.g. postgresql://... (default SQLite in .tf/)")
    parser.add_argument(
        "--log-level",
        default="warning",
        type=str.lower,
        choices=LOG_LEVELS,
        help="server log level (default warning)",
    )
    parser.add_argument("--access-log", action="store_true", help="one line per proxied request")
