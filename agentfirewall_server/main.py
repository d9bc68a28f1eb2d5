"""``python -m agentfirewall_server``: flags, first-start message, uvicorn.

Flags override ``AGENTFIREWALL_*`` environment variables, which override defaults.
``rotate-key`` re-encrypts every vaulted secret under a new encryption key (offline: it
refuses while a server runs; `tf vault rotate` rotates online). The start stops with an
error naming the key id when the stored credentials need a key the server does not have.
"""

from __future__ import annotations

import argparse
import gc
import socket
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from agentfirewall_server.app import create_app
from agentfirewall_server.bootstrap import Bootstrap, ensure_data_dir
from agentfirewall_server.otel import otel_problem, use_json_logs
from agentfirewall_server.settings import Settings
from agentfirewall_server.state import AppState

# what `settle_gc` does once the server is up (measured in benchmarks/server.py)
GC_FREEZE = True
GC_THRESHOLDS: tuple[int, int, int] | None = (10_000, 50, 50)  # default (700, 10, 10)

__all__ = ["build_server", "first_start_message", "main", "parse_settings"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentfirewall_server",
        description="TameFlare control plane: API, approvals, audit, vault, dashboard",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "rotate-key"],
        help="serve (default) or rotate-key (re-encrypt the vault)",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 3000)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.add_argument("--data-dir", help="directory for the database and keys (default ./.tf)")
    parser.add_argument("--new-key", help="rotate-key: the new key (default: generate one)")
    parser.add_argument("--log-level", help="uvicorn log level (default info)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="json: one object per line, with trace ids"
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="send OpenTelemetry traces to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318)",
    )
    return parser


def parse_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    names = ("host", "port", "database_url", "data_dir", "log_level", "log_format", "otlp_endpoint")
    for name in names:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def first_start_message(settings: Settings, boot: Bootstrap) -> str:
    """What a new operator needs: where the data lives, how to log in, how to add an agent.

    Printed only on the start that created the files, so no secret is shown twice.
    """
    api = f"{settings.base_url}/api"
    token = (
        ["  admin API token: the one in AGENTFIREWALL_ADMIN_TOKEN"]
        if settings.admin_token is not None
        else [
            f"  admin API token (for `tf` and scripts, also in {boot.data_dir}/admin.token):",
            f"    {boot.admin_token}",
        ]
    )
    lines = [
        f"TameFlare: created {boot.data_dir} (database, signing key, encryption key, tokens; "
        "files 0600)",
        f"  create the owner account (one-time link): {boot.setup_url}",
        *token,
        "  register an agent and get its API key (shown once):",
        f"    curl -X POST {api}/v1/agents -H 'Authorization: Bearer <admin token>' "
        "-H 'Content-Type: application/json' -d '{\"name\": \"Bot\"}'",
    ]
    return "\n".join(lines)


class _Server(uvicorn.Server):
    """Ends long-polls and SSE streams as shutdown starts.

    uvicorn runs the app's lifespan shutdown only after every open request has finished,
    so without this a long-poll or an event stream would hold the stop until it times out.
    """

    def __init__(self, config: uvicorn.Config, state: AppState, *, settle_gc: bool) -> None:
        super().__init__(config)
        self._af_state = state
        self._settle_gc = settle_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._settle_gc:
            settle_gc()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._af_state.hub.close()
        await super().shutdown(sockets)


def settle_gc() -> None:
    """After start-up: the objects made so far (modules, schemas, the compiled policies)
    live as long as the process, so move them out of the collector's sight (`gc.freeze`);
    then collect less often. Under sustained load each full collection walked them all,
    a 60-100 ms pause of the event loop (benchmarks/README.md)."""
    if GC_FREEZE:
        gc.freeze()
    if GC_THRESHOLDS is not None:
        gc.set_threshold(*GC_THRESHOLDS)


def build_server(settings: Settings, *, settle: bool = False) -> uvicorn.Server:
    """An uvicorn server for the app, ready for `server.run()` or `await server.serve()`.

    `settle`: tune the garbage collector once started (`settle_gc`); the command line
    does, an embedding process (tests) keeps its own collector settings.
    """
    app = create_app(settings)
    json_logs = settings.log_format == "json"
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=use_json_logs(settings.log_level)
        if json_logs
        else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )
    return _Server(config, app.state.af, settle_gc=settle)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = parse_settings(args)
    except ValueError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    if (problem := otel_problem(settings.otlp_endpoint)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "rotate-key":
        from agentfirewall_server.rotate import rotate_key

        return rotate_key(settings, args.new_key)
    boot = ensure_data_dir(settings)
    from agentfirewall_server.vaultcheck import VaultStartError, preflight

    try:
        preflight(settings)
    except VaultStartError as exc:  # a wrong or missing key: stop, never make a new one
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if boot.created:
        print(first_start_message(settings, boot), flush=True)
    build_server(settings, settle=True).run()
    return 0
