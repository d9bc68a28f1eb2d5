"""``python -m agentfirewall_server``: flags, first-start message, uvicorn.

Flags override ``AGENTFIREWALL_*`` environment variables, which override defaults.
``rotate-key`` re-encrypts every vaulted secret under a new encryption key (offline: it
refuses while a server runs; `tf vault rotate` rotates online). The start stops with an
error naming the key id when the stored credentials need a key the server does not have.

Everything a start can fail on is checked before a token is made or anything is served,
each with one line saying what to fix: the settings (named as flag / environment
variable), the signing key and the upstream CA bundle, the database, the vault keys, then
the listening address (bound before the message, so ``--port 0`` links name the real port).
A start that fails leaves no token behind, so the next one still prints the first-start
message. A start with nobody to sign in and no setup link (the tokens come from the
environment) prints how to create the owner with the admin token.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from agentfirewall.errors import AgentFirewallError
from agentfirewall.tokens import load_signing_key
from agentfirewall_server.app import create_app
from agentfirewall_server.bootstrap import (
    ADMIN_TOKEN_FILE,
    GATEWAY_TOKEN_FILE,
    SETUP_TOKEN_FILE,
    SIGNING_KEY_FILE,
    Bootstrap,
    ensure_data_dir,
    read_secret_file,
)
from agentfirewall_server.datalock import DataBusy, ServerLock
from agentfirewall_server.otel import otel_problem, use_json_logs
from agentfirewall_server.settings import Settings, describe
from agentfirewall_server.state import AppState

# what `settle_gc` does once the server is up (measured in benchmarks/server.py)
GC_FREEZE = True
GC_THRESHOLDS: tuple[int, int, int] | None = (10_000, 50, 50)  # default (700, 10, 10)

__all__ = [
    "build_server",
    "first_start_message",
    "listen",
    "main",
    "no_owner_message",
    "parse_settings",
]


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
    parser.add_argument(
        "--trusted-proxies",
        metavar="ADDRS",
        help="load balancers in front (comma-separated addresses or networks): their "
        "X-Forwarded-For names the client; default none (the header is ignored)",
    )
    return parser


def parse_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    names = ("host", "port", "database_url", "data_dir", "log_level", "log_format", "otlp_endpoint",
             "trusted_proxies")  # fmt: skip
    for name in names:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def first_start_message(settings: Settings, boot: Bootstrap) -> str:
    """What a new operator needs: where the data lives, how to log in, how to add an agent.

    Printed only on a start that made files (`boot.made`), and showing only the secrets made
    then: a new data directory, or a token file deleted after its token was revoked.
    """
    fresh = SIGNING_KEY_FILE in boot.made or (
        SETUP_TOKEN_FILE in boot.made and boot.setup_url is not None
    )
    if fresh:
        lines = [f"TameFlare: created {boot.data_dir} (files 0600)"]
    else:
        words = {ADMIN_TOKEN_FILE: "admin token", GATEWAY_TOKEN_FILE: "gateway token"}
        made = " and ".join(words[name] for name in boot.made if name in words)
        lines = [f"TameFlare: made a new {made} in {boot.data_dir}"]
    if boot.setup_url is not None:
        lines.append(f"  create the owner account (one-time link): {boot.setup_url}")
    if ADMIN_TOKEN_FILE in boot.made:
        lines += [
            f"  admin API token (for `tf` and scripts, also in {boot.data_dir}/admin.token):",
            f"    {boot.admin_token}",
        ]
    elif fresh and settings.admin_token is not None:
        lines.append("  admin API token: the one in AGENTFIREWALL_ADMIN_TOKEN")
    if GATEWAY_TOKEN_FILE in boot.made and not fresh:
        lines.append(f"  gateway token (for gateway proxies): in {boot.data_dir}/gateway.token")
    if fresh or ADMIN_TOKEN_FILE in boot.made:
        lines += [
            "  register an agent and get its API key (shown once):",
            f"    curl -X POST {settings.base_url}/api/v1/agents -H 'Authorization: Bearer "
            "<admin token>' -H 'Content-Type: application/json' -d '{\"name\": \"Bot\"}'",
        ]
    return "\n".join(lines)


def no_owner_message(settings: Settings) -> str:
    """What to do when nobody can sign in yet and there is no setup link: the case of
    tokens from the environment (replicas share them, so none makes a link of its own)."""
    body = '{"email": "you@example.com", "password": "<8 or more characters>", "role": "owner"}'
    return "\n".join(
        [
            "TameFlare: no owner account yet and no setup link: create the owner with the "
            f"admin token, then sign in at {settings.base_url}/dashboard/login",
            f"    curl -X POST {settings.base_url}/api/v1/users -H 'Authorization: Bearer "
            f"<admin token>' -H 'Content-Type: application/json' -d '{body}'",
        ]
    )


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
        if sockets and self.started:  # uvicorn logs "running on" only for sockets it bound
            self._log_started_message(sockets)
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


def build_server(
    settings: Settings, *, settle: bool = False, lock: ServerLock | None = None
) -> uvicorn.Server:
    """An uvicorn server for the app, ready for `server.run()` or `await server.serve()`.

    `settle`: tune the garbage collector once started (`settle_gc`); the command line
    does, an embedding process (tests) keeps its own collector settings. `lock`: the
    data's lock the start holds already (`ServerLock.hold`), kept by the app's lifespan
    and released when it stops.
    """
    app = create_app(settings)
    if lock is not None:
        app.state.af.lock = lock
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
        # a proxy's X-Forwarded-For only from the proxies named (uvicorn takes the nearest
        # address no trusted proxy added); none named, no middleware on the hot path
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        server_header=False,
        ws="none",  # no WebSocket route: uvicorn need not load its WebSocket protocol
    )
    return _Server(config, app.state.af, settle_gc=settle)


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on (`host`, `port`), for `uvicorn.Server.run(sockets=...)`;
    port 0 picks a free one (`getsockname()` tells which). `OSError` when it cannot.

    Listening at once, as ``agentfirewall_proxy.up`` does: a socket only bound holds nothing
    (another one with SO_REUSEADDR binds the same port until this one listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_problem(settings: Settings, exc: OSError) -> str:
    where = f"{settings.host}:{settings.port}"
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on `{settings.host}`: {reason}: check --host / AGENTFIREWALL_HOST"
    return (
        f"cannot listen on {where}: {reason}: is another server running there? pick another "
        "--port / AGENTFIREWALL_PORT (0 picks a free one)"
    )


def key_problems(settings: Settings) -> str | None:
    """The signing key and the upstream CA bundle load, or what is wrong with them."""
    path = settings.data_dir / SIGNING_KEY_FILE
    where, pem = str(path), read_secret_file(path)  # none yet: the first start makes it
    if settings.signing_key is not None:
        where, pem = "SIGNING_KEY_PRIVATE", settings.signing_key.get_secret_value()
    try:
        if pem is not None:
            load_signing_key(pem)
    except AgentFirewallError as exc:
        return (
            f"{where}: {exc}: give the ES256 private key as PEM or base64 PEM "
            "(it signs decision tokens and audit checkpoints)"
        )
    if settings.upstream_ca is not None:
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(settings.upstream_ca))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror or str(exc)
            return (
                f"AGENTFIREWALL_UPSTREAM_CA: cannot load `{settings.upstream_ca}`: {reason}: "
                "give a file of PEM certificates"
            )
    return None


def _has_owner(settings: Settings) -> bool:
    from sqlalchemy import func, select

    from agentfirewall_server.store.db import Database
    from agentfirewall_server.store.schema import users

    count = select(func.count()).select_from(users).where(users.c.role == "owner")
    db = Database(settings.resolved_database_url, synchronous=settings.sqlite_synchronous)
    try:
        return bool(db.read_sync(lambda c: c.execute(count).scalar_one()))
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = parse_settings(args)
    except ValueError as exc:  # pydantic's ValidationError, or an environment that won't parse
        shown = describe(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"error: invalid settings: {shown}", file=sys.stderr)
        return 2
    if (problem := otel_problem(settings.otlp_endpoint)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "rotate-key":
        from agentfirewall_server.rotate import rotate_key

        return rotate_key(settings, args.new_key)
    return _serve(settings)


def _serve(settings: Settings) -> int:
    """Check what the start needs (settings, database, keys, the address) before it makes
    a token, then make the data directory's files and serve."""
    from agentfirewall_server.store.db import make_private_dir

    if (problem := key_problems(settings)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    make_private_dir(settings.data_dir)
    # another server on this data directory (or SQLite file) is named at once; held from
    # here until the server stops, so that of two started at once the loser says so here
    lock = ServerLock(settings.data_dir, settings.resolved_database_url)
    try:
        lock.hold()
    except DataBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve_holding(settings, lock)
    finally:
        lock.release()  # (a start that served: released by the app's stop already)


def _serve_holding(settings: Settings, lock: ServerLock) -> int:
    from agentfirewall_server.store.db import StoreError
    from agentfirewall_server.vaultcheck import VaultStartError, preflight

    try:  # never make a new vault key for a lost one
        preflight(settings)
    except (StoreError, VaultStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:  # bound here, so `--port 0` links name the real port
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        print(f"error: {_listen_problem(settings, exc)}", file=sys.stderr)
        return 1
    with sock:
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
        boot = ensure_data_dir(settings)
        if boot.setup_url is not None and _has_owner(settings):  # a token file was deleted
            (settings.data_dir / SETUP_TOKEN_FILE).unlink(missing_ok=True)  # (it made one)
            boot = dataclasses.replace(boot, setup_url=None)
        if boot.created:
            print(first_start_message(settings, boot), flush=True)
        if boot.setup_url is None and not _has_owner(settings):  # tokens from the environment
            print(no_owner_message(settings), flush=True)
        build_server(settings, settle=True, lock=lock).run(sockets=[sock])
    return 0
