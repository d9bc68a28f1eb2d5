"""Everything a request handler needs, built once per app (``request.app.state.af``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
from sqlalchemy import Connection, select

from agentfirewall.tokens import SigningKey, generate_signing_key, load_signing_key
from agentfirewall_server.bootstrap import (
    BOOTSTRAP_TOKEN_NAMES,
    SIGNING_KEY_FILE,
    bootstrap_tokens,
    ensure_data_dir,
    read_secret_file,
)
from agentfirewall_server.clock import now
from agentfirewall_server.datalock import ServerLock
from agentfirewall_server.hub import Hub
from agentfirewall_server.identity import hash_secret, prefix_of
from agentfirewall_server.metrics import Metrics
from agentfirewall_server.notify.slack import SlackNotifier
from agentfirewall_server.ratelimit import Limiter
from agentfirewall_server.settings import Settings
from agentfirewall_server.signer import TokenSigner
from agentfirewall_server.snapshot import (
    AgentRecord,
    Snapshot,
    bump_version,
    load_snapshot,
    read_version,
    refusing_snapshot,
)
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import gateways, tokens
from agentfirewall_server.tokens import ServerTokens
from agentfirewall_server.tracing import build_tracing
from agentfirewall_server.vault import Keyring
from agentfirewall_server.vaultcheck import credential_problems, open_keyring

__all__ = ["AppState"]

T = TypeVar("T")
log = logging.getLogger("agentfirewall_server")


class AppState:
    """The server's collaborators; `start`/`stop` run in the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub()
        self.metrics = Metrics(max_label_sets=settings.metrics_max_label_sets)
        self.tracing = build_tracing(settings)  # None unless an OTLP endpoint is configured
        #: the action routes get a span and/or a JSON log line (``app._observed``)
        self.observed = self.tracing is not None or settings.log_format == "json"
        self.db: Database = Database(
            settings.resolved_database_url, synchronous=settings.sqlite_synchronous
        )
        self.limiter = Limiter(self.db)
        self.vault: Keyring
        self.vault_problems: dict[str, dict[str, str]] = {}  # owner -> error, fix
        self.rotation: Any = None  # routes/vault.py: the online rotation, while it runs
        self.checkpoints: Any = None  # checkpoints.Checkpointer
        self.lock = ServerLock(settings.data_dir, settings.resolved_database_url)
        self.signing_key: SigningKey
        self.signer: TokenSigner
        self.snapshot: Snapshot
        self.http: httpx.AsyncClient
        self.tokens: ServerTokens
        self.gateways: dict[str, dict[str, Any]] = {}
        self.slack = SlackNotifier(self)
        self.shared_events: Any = None  # pgevents.SharedEvents, on PostgreSQL
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        ensure_data_dir(self.settings)
        await asyncio.to_thread(self.lock.acquire)
        self.signing_key = self._load_signing_key()
        self.signer = TokenSigner(self.signing_key)
        await asyncio.to_thread(self.db.migrate)
        try:  # a missing or wrong key stops the start: release what was opened
            self.vault = await asyncio.to_thread(open_keyring, self.settings, self.db.read_sync)
        except Exception:
            await asyncio.to_thread(self.db.close)
            self.lock.release()
            raise
        self.db.start()
        await self.db.write(self._register_bootstrap_tokens)
        self.snapshot = await self.db.read(load_snapshot)
        self._update_gauges()
        from agentfirewall_server.checkpointer import Checkpointer

        self.checkpoints = Checkpointer(self)
        self._tasks.append(asyncio.create_task(self.checkpoints.loop()))
        self.http = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, verify=_outbound_tls(self.settings)
        )
        self.tokens = ServerTokens(self)
        from agentfirewall_server.approvals import expiry_loop

        self._tasks.append(asyncio.create_task(expiry_loop(self)))
        if not self.db.is_sqlite:
            from agentfirewall_server.pgevents import SharedEvents

            self.shared_events = SharedEvents(self)
            self.hub.relay = self.shared_events.relay
            self._tasks.extend(self.shared_events.tasks())
            self._tasks.append(asyncio.create_task(self._follow_other_instances()))

    async def stop(self) -> None:
        self.hub.close()
        await self.slack.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.checkpoints is not None:  # the chain head, signed, as the last write
            with contextlib.suppress(Exception):
                await self.checkpoints.checkpoint("shutdown")
        if hasattr(self, "tokens"):  # rotated refresh tokens on their way to the vault
            await self.tokens.drain()
        if hasattr(self, "http"):
            await self.http.aclose()
        with contextlib.suppress(Exception):
            await self.limiter.aclose()
        await asyncio.to_thread(self.db.close)
        if self.tracing is not None:  # export the spans still queued
            await asyncio.to_thread(self.tracing.shutdown)
        self.lock.release()

    def _load_signing_key(self) -> SigningKey:
        if self.settings.signing_key is not None:
            return load_signing_key(self.settings.signing_key.get_secret_value())
        pem = read_secret_file(self.settings.data_dir / SIGNING_KEY_FILE)
        return load_signing_key(pem) if pem else generate_signing_key()

    def _register_bootstrap_tokens(self, conn: Connection) -> None:
        """The admin token acts as owner, the gateway token as the gateway (``bootstrap``)."""
        admin, gateway = bootstrap_tokens(self.settings)
        for secret, kind, role in ((admin, "admin", "owner"), (gateway, "gateway", None)):
            if not secret:
                continue
            digest = hash_secret(secret)
            exists = conn.execute(
                select(tokens.c.token_hash).where(tokens.c.token_hash == digest)
            ).first()
            if exists is None:
                conn.execute(
                    tokens.insert().values(
                        token_hash=digest,
                        prefix=prefix_of(secret),
                        kind=kind,
                        user_id=None,
                        role=role,
                        name=BOOTSTRAP_TOKEN_NAMES[kind],
                        created_at=now(),
                    )
                )
                bump_version(conn)

    # configuration ---------------------------------------------------------------------

    async def reload(self) -> None:
        async with self._reload_lock:
            try:
                self.snapshot = await self.db.read(load_snapshot)
            except Exception as exc:
                # serving the last snapshot would miss what changed since (a kill switch
                # above all): refuse every action until the stored configuration reads
                version = await self.db.read(read_version)  # (unreadable too: raised)
                self.snapshot = refusing_snapshot(self.snapshot, version, exc)
                log.error("%s", self.snapshot.unreadable[0].reason, exc_info=True)
            self._update_gauges()

    async def change_config(self, fn: Callable[[Connection], T]) -> T:
        """Run a configuration write (bumping the version), then reload and notify."""

        def job(conn: Connection) -> T:
            result = fn(conn)
            bump_version(conn)
            return result

        result = await self.db.write(job)
        await self.reload()
        self.hub.publish("config", {"version": self.snapshot.version})
        return result

    async def _follow_other_instances(self) -> None:
        """The backstop of the shared events (``pgevents.py``): the version, every 2 s; and
        the gateways attached to other replicas (``/status`` lists every gateway)."""
        while True:
            await asyncio.sleep(2)
            try:
                version = await self.db.read(read_version)
                if version != self.snapshot.version:  # changed by another replica
                    await self.reload()
                    self.hub.publish("config", {"version": self.snapshot.version}, relay=False)
                self._merge_gateways(
                    await self.db.read(lambda c: c.execute(select(gateways)).all())
                )
            except Exception:  # keep serving from the last snapshot; try again
                log.warning("could not follow the configuration version", exc_info=True)

    def _merge_gateways(self, rows: Sequence[Any]) -> None:
        """Gateways that report to another replica, from their last stored heartbeat."""
        for row in rows:
            known = self.gateways.get(row.id)
            if known is None or known["last_heartbeat"] < row.last_heartbeat:
                info = json.loads(row.info)
                self.gateways[row.id] = {"info": info, "last_heartbeat": row.last_heartbeat}

    def _update_gauges(self) -> None:
        self.vault_problems = credential_problems(self.snapshot.credentials, self.vault)
        gauge = self.metrics.kill_switch
        gauge.clear()
        for ks in self.snapshot.kill_switches:
            gauge.labels(scope=ks["scope"] if ks["scope"] == "all" else ks["target"]).set(1)

    def agent_for_key(self, key: str) -> AgentRecord | None:
        return self.snapshot.agent_for_key(hash_secret(key), now())


def _stored_gateways(conn: Connection) -> Sequence[Any]:
    return conn.execute(select(gateways)).all()


def _outbound_tls(settings: Settings) -> ssl.SSLContext | bool:
    """What outbound TLS trusts (executed actions, token endpoints): the default CAs, and
    with ``AGENTFIREWALL_UPSTREAM_CA`` (a PEM bundle, e.g. a company CA) the system's CAs
    and that bundle, as the gateway's ``--upstream-ca``."""
    if settings.upstream_ca is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(settings.upstream_ca))
    return context
