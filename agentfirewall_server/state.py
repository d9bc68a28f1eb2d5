"""Everything a request handler needs, built once per app (``request.app.state.af``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, select

from agentfirewall.tokens import SigningKey, generate_signing_key, load_signing_key
from agentfirewall_server.bootstrap import (
    BOOTSTRAP_TOKEN_NAMES,
    SIGNING_KEY_FILE,
    bootstrap_tokens,
    ensure_data_dir,
    read_secret_file,
)
from agentfirewall_server.checkpoints import check_signing_key
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
    get_setting,
    load_snapshot,
    put_setting,
    read_version,
    refusing_snapshot,
)
from agentfirewall_server.store.db import Database
from agentfirewall_server.store.schema import audit_checkpoints, gateways, tokens
from agentfirewall_server.tokens import ServerTokens
from agentfirewall_server.tracing import build_tracing
from agentfirewall_server.vault import Keyring
from agentfirewall_server.vaultcheck import claim_keys, credential_problems, open_keyring

__all__ = ["AppState"]

T = TypeVar("T")
log = logging.getLogger("agentfirewall_server")

#: Seconds between two reads of the stored configuration version (on PostgreSQL: the
#: backstop of the shared events, ``pgevents.py``).
FOLLOW_SECONDS = 2.0
#: Seconds the snapshot may go unconfirmed against the store (PostgreSQL: another replica
#: may have changed it since, a kill switch above all) before the gateway's config routes
#: answer 503 `store_unreachable` (`AppState.unconfirmed`): a replica cut off from the
#: database must not tell its gateways that the configuration they hold is current.
CONFIRM_BOUND = 5 * FOLLOW_SECONDS
#: The setting that names the key the database's servers sign with (`_claim_signing_key`).
SIGNING_KEY_ID = "signing_key_id"


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
        self._http: httpx.AsyncClient | None = None  # made at its first use: `http`
        self._verify: ssl.SSLContext | bool = True
        self.tokens: ServerTokens
        self.gateways: dict[str, dict[str, Any]] = {}
        self.slack = SlackNotifier(self)
        self.shared_events: Any = None  # pgevents.SharedEvents, on PostgreSQL
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        #: When (`time.monotonic`) the snapshot was last found to be the stored version.
        self.confirmed_at = time.monotonic()

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        ensure_data_dir(self.settings)
        await asyncio.to_thread(self.lock.acquire)
        self.signing_key = self._load_signing_key()
        self.signer = TokenSigner(self.signing_key)
        await asyncio.to_thread(self.db.migrate)
        try:  # a missing or wrong key stops the start: release what was opened
            await self._check_signing_key()
            self.vault = await asyncio.to_thread(open_keyring, self.settings, self.db.read_sync)
            await self.db.write(partial(claim_keys, keyring=self.vault, settings=self.settings))
        except Exception:
            await asyncio.to_thread(self.db.close)
            self.lock.release()
            raise
        self.db.start()
        await self.db.write(self._register_bootstrap_tokens)
        self.snapshot = await self.db.read(load_snapshot)
        self.confirmed_at = time.monotonic()
        self._update_gauges()
        from agentfirewall_server.checkpointer import Checkpointer

        self.checkpoints = Checkpointer(self)
        self._tasks.append(asyncio.create_task(self.checkpoints.loop()))
        self._verify = _outbound_tls(self.settings)  # a bad CA file stops the start here
        self.tokens = ServerTokens(self)
        from agentfirewall_server.approvals import expiry_loop

        self._tasks.append(asyncio.create_task(expiry_loop(self)))
        self.slack.start()  # posts what has no Slack message yet; ends in `slack.drain`
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
        if self._http is not None:
            await self._http.aclose()
        with contextlib.suppress(Exception):
            await self.limiter.aclose()
        await asyncio.to_thread(self.db.close)
        if self.tracing is not None:  # export the spans still queued
            await asyncio.to_thread(self.tracing.shutdown)
        self.lock.release()

    @property
    def http(self) -> httpx.AsyncClient:
        """The outbound client (executed actions, token endpoints, notifications), made at
        its first use: making it loads httpx's connection pool and the default CA bundle,
        a quarter of a second that a start need not wait for (benchmarks/startup.py)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, verify=self._verify
            )
        return self._http

    def _load_signing_key(self) -> SigningKey:
        if self.settings.signing_key is not None:
            return load_signing_key(self.settings.signing_key.get_secret_value())
        pem = read_secret_file(self.settings.data_dir / SIGNING_KEY_FILE)
        return load_signing_key(pem) if pem else generate_signing_key()

    async def _check_signing_key(self) -> None:
        """This key signs for the database, or the start stops (`_claim_signing_key`)."""
        from agentfirewall_server.checkpointer import checkpoint_keys

        keys = checkpoint_keys(self.settings, self.signing_key)
        await self.db.write(partial(_claim_signing_key, keys=keys, current=self.signing_key.kid))

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
            asked = time.monotonic()
            try:
                self.snapshot = await self.db.read(load_snapshot)
            except Exception as exc:
                # serving the last snapshot would miss what changed since (a kill switch
                # above all): refuse every action until the stored configuration reads
                version = await self.db.read(read_version)  # (unreadable too: raised)
                self.snapshot = refusing_snapshot(self.snapshot, version, exc)
                log.error("%s", self.snapshot.unreadable[0].reason, exc_info=True)
            self._confirmed(asked)
            self._update_gauges()

    async def follow_version(self) -> None:
        """Reload when the stored version moved (changed by another replica), and publish
        it here; either way the snapshot is then confirmed current."""
        asked = time.monotonic()
        version = await self.db.read(read_version)
        if version != self.snapshot.version:
            await self.reload()
            self.hub.publish("config", {"version": self.snapshot.version}, relay=False)
        else:
            self._confirmed(asked)

    def _confirmed(self, asked: float) -> None:
        """The snapshot was the stored version when asked (`time.monotonic`) for."""
        self.confirmed_at = max(self.confirmed_at, asked)

    def unconfirmed(self) -> float | None:
        """Seconds since the snapshot was last found current in the store, once longer than
        `CONFIRM_BOUND`; else None (always on SQLite: this server makes every change)."""
        age = time.monotonic() - self.confirmed_at
        return age if age > CONFIRM_BOUND and not self.db.is_sqlite else None

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
        """The backstop of the shared events (``pgevents.py``): the version, every
        `FOLLOW_SECONDS`; and the gateways attached to other replicas (``/status`` lists
        every gateway)."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.follow_version()
                self._merge_gateways(await self.db.read(_stored_gateways))
            except Exception:  # past CONFIRM_BOUND the gateways are refused it; try again
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


def _claim_signing_key(
    conn: Connection, keys: dict[str, ec.EllipticCurvePublicKey], current: str
) -> None:
    """At start, in a write: the keys the database's servers signed with (its newest audit
    checkpoint's, and the one recorded) must each be `current` or a retired one in `keys`
    (`checkpoints.check_signing_key`); `current` is then recorded (a first start, or a
    deliberate change of key), so a replica with another key is refused even before the
    first checkpoint, and one with only the old key after a change."""
    recorded = get_setting(conn, SIGNING_KEY_ID)
    newest = conn.execute(
        select(audit_checkpoints.c.kid).order_by(audit_checkpoints.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    check_signing_key([newest, recorded], keys, current)
    if recorded != current:
        put_setting(conn, SIGNING_KEY_ID, current)


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
