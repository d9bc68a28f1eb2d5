"""The gateway's only link to state: a client of the control plane's Gateway API.

:class:`HttpControl` speaks ``docs/api.md`` "Gateway API" over an ``httpx.AsyncClient``
whose transport is injectable (``tf up`` passes ``httpx.ASGITransport(app)``: same code
path, no socket). :class:`StaticControl` serves a snapshot from a JSON/YAML file (or a dict)
for air-gapped runs and tests: approvals, traffic and heartbeats then live in memory.

Both satisfy :class:`Control`. Snapshots are plain JSON data; ``snapshot.py`` compiles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import yaml

from agentfirewall.connectors import encoded_parameters
from agentfirewall.content import default_scanner, redact_encoded_value, redact_value
from agentfirewall.errors import CredentialError
from agentfirewall.policy.permissions import failed_closed
from agentfirewall_proxy.approvalbatch import ApprovalBatcher
from agentfirewall_proxy.configfile import check_file
from agentfirewall_proxy.tracecontext import CONTROL_TRACEPARENT

__all__ = [
    "Control",
    "ControlError",
    "HttpControl",
    "StaticControl",
    "control_urls",
    "file_problem",
    "load_snapshot_file",
]

JSON = dict[str, Any]
#: How long :class:`StaticControl` lends a refresh lease (the server's default).
LEASE_SECONDS = 30.0


class ControlError(Exception):
    """The control plane could not be reached (`status` 0) or answered an error status."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        #: An answer's ``Retry-After`` (seconds): the conflict ends by itself (a lease held).
        self.retry_after = retry_after


class Control(Protocol):
    async def fetch_config(self, since: int | None, wait: float) -> JSON | None: ...
    async def send_traffic(self, records: list[JSON]) -> None: ...
    async def create_approval(self, payload: JSON) -> JSON: ...
    async def wait_approvals(self, approval_ids: list[str], wait: float) -> list[JSON]: ...
    async def consume_approval(self, approval_id: str) -> JSON: ...
    async def heartbeat(self, payload: JSON) -> None: ...
    async def reserve_budget(self, payload: JSON) -> JSON: ...
    async def settle_budgets(self, payloads: list[JSON]) -> None: ...
    async def budget_attributes(self) -> JSON: ...
    async def lease_budget(self, payload: JSON) -> JSON: ...
    async def report_leases(self, reports: list[JSON]) -> None: ...
    async def store_refresh_token(self, connector_id: str, payload: JSON) -> None: ...
    async def refresh_lease(self, connector_id: str, holder: str) -> JSON: ...
    async def release_refresh_lease(self, connector_id: str, lease: str) -> None: ...
    async def aclose(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    """An answer's ``Retry-After`` in seconds (None when absent or not a number)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _api_base(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/api") else base + "/api"


def control_urls(urls: str | Sequence[str]) -> list[str]:
    """The control-plane URLs of a comma-separated string or a list, in order."""
    parts = [urls] if isinstance(urls, str) else list(urls)
    found = [u.strip() for part in parts for u in part.split(",") if u.strip()]
    if not found:
        raise ValueError("no control-plane URL given")
    return found


#: The request never reached a server: safe to send again anywhere.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: A load balancer or a replica that is going away: try another replica.
_FAIL_OVER = (502, 503, 504)


class HttpControl:
    """The Gateway API over HTTP (or ASGI, through the injected transport).

    `url` is one URL (a load balancer's, or the only control plane), several separated by
    commas, or a list: replicas sharing one PostgreSQL. Calls go to the current replica;
    on a transport error or a 502/503/504 the next one becomes current and the call is
    sent there (each URL at most once per call; a single URL is tried twice, for a load
    balancer that routes the retry elsewhere). Reads, long-polls, heartbeats and traffic
    (which is re-sent on failure anyway) fail over whatever the error; creating and
    consuming an approval, and reserving budget, only when the request never left (a
    connect error), so an approval is never created twice nor consumed on one replica and
    refused on another, and spend is never reserved twice.
    Held requests are unaffected: their approvals live in the shared store, and the next
    long-poll for their ids simply goes to the new replica.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.bases = [_api_base(u) for u in control_urls(url)]
        self.current = 0
        #: How many times a call moved to another replica (reported in heartbeats).
        self.failovers = 0
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=httpx.Timeout(30.0, connect=5.0, pool=None),
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=32),
            trust_env=False,
        )
        self._approvals = ApprovalBatcher(
            lambda method, path, body: self._call(method, path, json_body=body, resend=False),
            ControlError,
        )

    @property
    def url(self) -> str:
        """The API base of the replica calls go to now."""
        return self.bases[self.current]

    def _fail_over(self, index: int) -> None:
        if self.current == index:  # concurrent calls failing together move on once
            self.current = (index + 1) % len(self.bases)
            self.failovers += 1

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: object = None,
        resend: bool = True,
        **params: int | None,
    ) -> httpx.Response:
        timeout = float(str(params.get("wait") or params.get("timeout") or 0)) + 15.0
        query = {k: v for k, v in params.items() if v is not None}
        error = ControlError("control plane unreachable")
        for _ in range(max(len(self.bases), 2)):
            index = self.current
            try:
                response = await self._client.request(
                    method,
                    self.bases[index] + path,
                    json=json_body,
                    params=query,
                    timeout=timeout,
                    headers=_trace_headers(),
                )
            except httpx.HTTPError as exc:
                error = ControlError(f"control plane unreachable: {type(exc).__name__}")
                self._fail_over(index)
                if resend or isinstance(exc, _NOT_SENT):
                    continue
                raise error from None
            if response.status_code in _FAIL_OVER and resend:
                error = ControlError(
                    f"control plane answered {response.status_code} to {path}",
                    response.status_code,
                )
                self._fail_over(index)
                continue
            if response.status_code >= 400:
                raise ControlError(
                    f"control plane answered {response.status_code} to {path}",
                    response.status_code,
                    _retry_after(response.headers.get("retry-after")),
                )
            return response
        raise error

    async def fetch_config(self, since: int | None, wait: float) -> JSON | None:
        response = await self._call(
            "GET", "/v1/gateway/config", since=since, wait=int(wait) if since is not None else None
        )
        if response.status_code == 304:
            return None
        data: JSON = response.json()
        return data

    async def send_traffic(self, records: list[JSON]) -> None:
        await self._call("POST", "/v1/gateway/traffic", json_body={"records": records})

    async def create_approval(self, payload: JSON) -> JSON:
        """One approval; those asked for in the same loop iteration go in one call
        (never re-sent to another replica once it may have arrived: see the class)."""
        return await self._approvals.create(payload)

    async def wait_approvals(self, approval_ids: list[str], wait: float) -> list[JSON]:
        """Long-poll: the approvals among `approval_ids` that are no longer pending."""
        response = await self._call(
            "POST",
            "/v1/gateway/approvals/wait",
            json_body={"ids": approval_ids},
            timeout=max(int(wait), 1),
        )
        settled: list[JSON] = response.json()["approvals"]
        return settled

    async def consume_approval(self, approval_id: str) -> JSON:
        path = f"/v1/gateway/approvals/{approval_id}/consume"
        data: JSON = (await self._call("POST", path, json_body={}, resend=False)).json()
        return data

    async def heartbeat(self, payload: JSON) -> None:
        await self._call("POST", "/v1/gateway/heartbeat", json_body=payload)

    async def store_refresh_token(self, connector_id: str, payload: JSON) -> None:
        """A rotated OAuth2 refresh token into the vault (compared there before it is
        written; sending it twice changes nothing, so it may be sent again)."""
        path = f"/v1/gateway/connectors/{quote(connector_id, safe='')}/refresh-token"
        await self._call("POST", path, json_body=payload)

    async def refresh_lease(self, connector_id: str, holder: str) -> JSON:
        """Leave to refresh the connector's rotating grant, and the refresh token the vault
        holds now (409 with ``Retry-After`` while another holder has it). Asking again as
        the same holder renews it, so the call may be sent again. An answer that is no JSON
        object is a ControlError with its status (no lease: fail closed)."""
        path = f"/v1/gateway/connectors/{quote(connector_id, safe='')}/refresh-lease"
        response = await self._call("POST", path, json_body={"holder": holder})
        try:
            data = response.json()
        except (ValueError, RecursionError):  # (not JSON; nested past the parser's depth)
            data = None
        if not isinstance(data, dict):
            raise ControlError(f"control plane answered {path} without a lease",
                               response.status_code)  # fmt: skip
        return data

    async def release_refresh_lease(self, connector_id: str, lease: str) -> None:
        path = (f"/v1/gateway/connectors/{quote(connector_id, safe='')}/refresh-lease/"
                f"{quote(lease, safe='')}")  # fmt: skip
        await self._call("DELETE", path)

    async def reserve_budget(self, payload: JSON) -> JSON:
        """Reserve a request's spend from the budgets covering it (``budgets.py``).

        Never re-sent to another replica once it may have arrived (as for approvals): a
        reservation recorded twice would hold spend that no response ever settles.
        """
        path = "/v1/gateway/budgets/reserve"
        data: JSON = (await self._call("POST", path, json_body=payload, resend=False)).json()
        return data

    async def settle_budgets(self, payloads: list[JSON]) -> None:
        """Settle or release reservations in one call (settling one twice changes nothing)."""
        path = "/v1/gateway/budgets/settle/batch"
        await self._call("POST", path, json_body={"settlements": payloads})

    async def budget_attributes(self) -> JSON:
        """``budget.<name>.remaining`` / ``.used`` of every budget (policy conditions)."""
        data: JSON = (await self._call("GET", "/v1/gateway/budgets")).json()
        return dict(data.get("attributes") or {})

    async def lease_budget(self, payload: JSON) -> JSON:
        """Lease slices of the budgets covering a request (``budgetlease.py``); never
        re-sent once it may have arrived: a lease granted twice strands a slice."""
        path = "/v1/gateway/budgets/lease"
        data: JSON = (await self._call("POST", path, json_body=payload, resend=False)).json()
        return data

    async def report_leases(self, reports: list[JSON]) -> None:
        """Cumulative spend per lease: sending one twice changes nothing."""
        await self._call(
            "POST", "/v1/gateway/budgets/leases/report", json_body={"reports": reports}
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _trace_headers() -> dict[str, str] | None:
    """A ``traceparent`` for this call when tracing set one (``tracing.CONTROL_TRACEPARENT``)."""
    value = CONTROL_TRACEPARENT.get()
    return {"traceparent": value} if value else None


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def normalize_snapshot(data: JSON) -> JSON:
    """Accept file conveniences: ``api_keys`` (plain) and ``credential_env`` per connector."""
    snapshot = dict(data)
    agents = []
    for agent in snapshot.get("agents", []):
        agent = dict(agent)
        hashes = list(agent.get("key_hashes", []))
        hashes += [_key_hash(k) for k in agent.pop("api_keys", [])]
        agent["key_hashes"] = hashes
        agents.append(agent)
    snapshot["agents"] = agents
    connectors = []
    for connector in snapshot.get("connectors", []):
        connector = dict(connector)
        env = connector.pop("credential_env", None)
        if env and not connector.get("credential"):
            connector["credential"] = os.environ.get(env)
        credential = connector.get("credential")
        if isinstance(credential, str) and "grant" not in connector:
            # Ids here are the operator's, reused when a credential is replaced: the grant a
            # cached token was minted from is the credential as written (a rotation stored
            # in this snapshot keeps it: ``StaticControl.store_refresh_token``).
            connector["grant"] = hashlib.sha256(credential.encode()).hexdigest()[:16]
        connectors.append(connector)
    snapshot["connectors"] = connectors
    snapshot.setdefault("version", 1)
    return snapshot


def load_snapshot_file(path: Path) -> JSON:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ControlError(f"config file `{path}`: expected a mapping at the top level")
    try:
        check_file(data)
    except ValueError as exc:
        raise FileShapeError(path, str(exc)) from None
    return normalize_snapshot(data)


class FileShapeError(ControlError):
    """A config file that parses but is not a configuration (`configfile.check_file`)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"config file `{path}`: {problem}")
        self.problem = problem


def file_problem(exc: BaseException) -> str:
    """Why a config file did not load, in one line (where, for a YAML or JSON error)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, FileShapeError):
        return exc.problem
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _unreadable_file(last: JSON, path: Path, exc: BaseException) -> JSON:
    """`last` (the file as it last loaded) refusing every request: the file changed and
    did not load, so enforcing `last` would miss what the change meant (a kill switch)."""
    switch = failed_closed(
        f"config file `{path}` cannot be read", file_problem(exc), until="it reads again"
    )
    print(f"agentfirewall_proxy: {switch.reason}", file=sys.stderr, flush=True)
    refusing = {"scope": "all", "target": None, "reason": switch.reason, "unreadable": True}
    return {**last, "kill_switches": [refusing, *last.get("kill_switches", [])]}


def _with_rotations(loaded: JSON, current: JSON) -> JSON:
    """`loaded` (the file) with the credentials of `current` (the snapshot served) where the
    file holds the same grant: a refresh token rotated since (`store_refresh_token`) stays,
    the file's own is spent. A credential replaced in the file is another grant."""
    held = {c.get("id"): c for c in current.get("connectors", [])}
    connectors = []
    for connector in loaded.get("connectors", []):
        grant, served = connector.get("grant"), held.get(connector.get("id"), {})
        if grant and served.get("grant") == grant:
            connector = {**connector, "credential": served.get("credential")}
        connectors.append(connector)
    return {**loaded, "connectors": connectors}


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class StaticControl:
    """A control plane in memory: a snapshot (file or dict), local approvals and traffic.

    Thread-safe for tests: :meth:`update`, :meth:`approve` and :meth:`deny` may be called
    from any thread while the gateway runs on its own loop.
    """

    def __init__(self, snapshot: JSON | Path) -> None:
        self._path = snapshot if isinstance(snapshot, Path) else None
        self._mtime = self._path.stat().st_mtime if self._path else 0.0
        self._snapshot = (
            load_snapshot_file(snapshot)
            if isinstance(snapshot, Path)
            else normalize_snapshot(snapshot)
        )
        self._loaded = self._snapshot  # the file as it last loaded
        self._changed = threading.Event()
        self._lock = threading.Lock()
        # the latest records, for tests and embedders to read (an air-gapped gateway shows
        # its requests with --access-log): 10,000 (~20 MiB), not 100,000 (~200 MiB)
        self.traffic: deque[JSON] = deque(maxlen=10_000)
        self.heartbeats: list[JSON] = []
        self.approvals: dict[str, JSON] = {}
        self._ids = itertools.count(1)
        #: Refresh leases by connector id: (lease id, holder, until: monotonic seconds).
        self._leases: dict[str, tuple[str, str, float]] = {}
        self._by_action: dict[tuple[str, str, str], list[str]] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    @property
    def snapshot(self) -> JSON:
        return self._snapshot

    def update(self, snapshot: JSON) -> None:
        """Replace the snapshot (version bumped); gateways see it within a second."""
        with self._lock:
            fresh = normalize_snapshot(snapshot)
            fresh["version"] = int(self._snapshot.get("version", 0)) + 1
            self._snapshot = fresh
        self._changed.set()

    async def fetch_config(self, since: int | None, wait: float) -> JSON | None:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            self._reload_file()
            with self._lock:
                if since is None or self._snapshot.get("version") != since:
                    self._changed.clear()
                    return self._snapshot
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.05)

    def _reload_file(self) -> None:
        if self._path is None:
            return
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._loaded = load_snapshot_file(self._path)
            except Exception as exc:  # whatever the file holds now: fail closed, say why
                last = _with_rotations(self._loaded, self._snapshot)
                self.update(_unreadable_file(last, self._path, exc))
                return
            self.update(_with_rotations(self._loaded, self._snapshot))

    async def send_traffic(self, records: list[JSON]) -> None:
        self.traffic.extend(records)

    async def create_approval(self, payload: JSON) -> JSON:
        digest = (payload.get("request") or {}).get("digest")
        key = (str(payload["agent"]), str(payload["action_hash"]), str(digest))
        with self._lock:
            for found_id in self._by_action.get(key, ()) if digest else ():
                found = self.approvals[found_id]
                if found["status"] == "approved" and not found["used"]:
                    found["used"] = True
                    return dict(found, reused=True)
            now = datetime.now(UTC)
            timeout = int(payload.get("timeout_seconds") or 300)
            approval = dict(
                payload,
                id=f"apv_local{next(self._ids)}",
                status="pending",
                source="proxy",
                used=False,
                created_at=now.isoformat(),
                expires_at=(now + timedelta(seconds=timeout)).isoformat(),
            )
            if approval.pop("redact", False):  # shown as the control plane shows it
                scanner = default_scanner()
                spec = payload["action_spec"]
                provider = (spec.get("resource") or {}).get("provider")
                encoded = encoded_parameters(provider, str(spec.get("type", "")))
                inside = redact_encoded_value(scanner, spec, scanner.names, encoded)
                approval["action_spec"] = redact_value(scanner, inside, scanner.names)
            self.approvals[approval["id"]] = approval
            self._by_action.setdefault(key, []).append(approval["id"])
            return {"id": approval["id"], "status": "pending"}

    def pending(self) -> list[JSON]:
        with self._lock:
            return [dict(a) for a in self.approvals.values() if a["status"] == "pending"]

    def approve(self, approval_id: str) -> None:
        self._decide(approval_id, "approved")

    def deny(self, approval_id: str) -> None:
        self._decide(approval_id, "denied")

    def _decide(self, approval_id: str, status: str) -> None:
        with self._lock:
            approval = self.approvals[approval_id]
            if approval["status"] != "pending":
                raise ControlError(f"approval `{approval_id}` is already {approval['status']}")
            approval["status"] = status
            waiters = self._waiters.pop(approval_id, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)

    async def wait_approvals(self, approval_ids: list[str], wait: float) -> list[JSON]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        try:
            with self._lock:
                settled = self._settled(approval_ids)
                if settled:
                    return settled
                for approval_id in approval_ids:
                    self._waiters.setdefault(approval_id, []).append(entry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, wait)
            with self._lock:
                return self._settled(approval_ids)
        finally:
            with self._lock:
                for approval_id in approval_ids:
                    entries = self._waiters.get(approval_id)
                    if entries and entry in entries:
                        entries.remove(entry)
                        if not entries:
                            del self._waiters[approval_id]

    def _settled(self, approval_ids: list[str]) -> list[JSON]:
        found: list[JSON] = []
        for approval_id in approval_ids:
            approval = self.approvals.get(approval_id)
            if approval is None:
                found.append({"id": approval_id, "status": "not_found"})
            elif approval["status"] != "pending":
                found.append(dict(approval))
        return found

    async def consume_approval(self, approval_id: str) -> JSON:
        """Spend an approval as the control plane does: once, and only an approved one
        (409 otherwise: used by an identical request :meth:`create_approval` handed it, or
        by another use); checked and marked under the lock that request takes too. The
        approvals live in this process: gateways sharing the file share none."""
        with self._lock:
            approval = self.approvals.get(approval_id)
            if approval is None:
                raise ControlError(f"no approval `{approval_id}`", 404)
            if approval["status"] != "approved":
                message = f"approval `{approval_id}` is {approval['status']}, not approved"
                raise ControlError(message, 409)
            if approval["used"]:
                raise ControlError(f"approval `{approval_id}` was already used", 409)
            approval["used"] = True
            return dict(approval)

    async def heartbeat(self, payload: JSON) -> None:
        self.heartbeats.append(payload)

    async def reserve_budget(self, payload: JSON) -> JSON:
        # budgets live on the control plane: a snapshot file naming one refuses (fail closed)
        raise ControlError("budgets need the control plane (not a static config file)", 503)

    async def settle_budgets(self, payloads: list[JSON]) -> None:
        raise ControlError("budgets need the control plane (not a static config file)", 503)

    async def budget_attributes(self) -> JSON:
        raise ControlError("budgets need the control plane (not a static config file)", 503)

    async def lease_budget(self, payload: JSON) -> JSON:
        raise ControlError("budgets need the control plane (not a static config file)", 503)

    async def report_leases(self, reports: list[JSON]) -> None:
        raise ControlError("budgets need the control plane (not a static config file)", 503)

    async def store_refresh_token(self, connector_id: str, payload: JSON) -> None:
        """As the control plane does, in this snapshot (a config file on disk is not
        rewritten: a rotation lasts until the file's credential changes or the gateway
        restarts; a file saved again with the same one keeps it: `_with_rotations`)."""
        from agentfirewall.credentials import with_rotated_refresh_token  # pydantic: lazily

        with self._lock:
            snapshot = self._snapshot
            connectors = [dict(c) for c in snapshot.get("connectors", [])]
            found = next((c for c in connectors if c.get("id") == connector_id), None)
            if found is None or not isinstance(found.get("credential"), str):
                raise ControlError(f"no credential for connector `{connector_id}`", 404)
            try:
                found["credential"] = with_rotated_refresh_token(
                    found["credential"], str(payload["previous_sha256"]),
                    str(payload["refresh_token"]),
                )  # fmt: skip
            except CredentialError as exc:
                raise ControlError(f"`{connector_id}`: {exc}", 409) from None
        with self._lock:
            self._leases.pop(connector_id, None)  # the grant moved on: the lease is moot
        self.update({**snapshot, "connectors": connectors})

    async def refresh_lease(self, connector_id: str, holder: str) -> JSON:
        """As the control plane does, in memory (gateways sharing this object take turns)."""
        from agentfirewall.credentials import parse_computed_credential  # pydantic: lazily

        with self._lock:
            found = next((c for c in self._snapshot.get("connectors", [])
                          if c.get("id") == connector_id), None)  # fmt: skip
            if found is None or not isinstance(found.get("credential"), str):
                raise ControlError(f"no credential for connector `{connector_id}`", 404)
            try:
                credential = parse_computed_credential(found["credential"], "oauth2")
            except CredentialError:
                credential = None
            token = getattr(credential, "refresh_token", None)
            if getattr(credential, "grant", None) != "refresh_token" or not token:
                raise ControlError(f"`{connector_id}` has no refresh token to lease", 409)
            now = time.monotonic()
            lease, owner, until = self._leases.get(connector_id, ("", "", 0.0))
            if until > now and owner != holder:
                raise ControlError(f"`{connector_id}` is being refreshed", 409, until - now)
            if not lease or until <= now:
                lease = f"lease_{next(self._ids)}"
            self._leases[connector_id] = (lease, holder, now + LEASE_SECONDS)
        return {"connector": connector_id, "lease": lease, "refresh_token": token,
                "expires_in": LEASE_SECONDS}  # fmt: skip

    async def release_refresh_lease(self, connector_id: str, lease: str) -> None:
        with self._lock:
            if self._leases.get(connector_id, ("",))[0] == lease:
                del self._leases[connector_id]

    async def aclose(self) -> None:
        return None
