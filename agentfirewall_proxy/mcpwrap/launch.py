"""Starting a governed session: first config, vault credentials, the child, the relay.

The wrapper is a small data plane of its own: it reads the gateway's config snapshot
(``GET /api/v1/gateway/config`` with the gateway token, or a snapshot file), keeps
following it (kill switches, rule changes), records approvals and traffic through the same
Gateway API, and hands the wrapped server the credentials named by ``--env
NAME=connector:REF`` from the snapshot, never from the client's config file.

A computed credential (``auth_type`` aws_sigv4, github_app, oauth2) is never handed over:
its vaulted document holds the long-lived secrets (an AWS secret key, an app's private key,
a client secret, a refresh token) the gateway derives short-lived ones from, per request;
``--env`` naming one is refused before the server runs. What is handed over is scrubbed
from all the server writes, in all its encodings, and when it is a JSON document each of
its fields alone too.

The server never gets TameFlare's own secrets (:data:`HELD_BACK`: the gateway token the
wrapper reads the vault with, the admin token, the control plane's keys): they are taken
out of its environment, and they are scrubbed, with the ``--env`` credentials, from all it
writes (it may find them elsewhere, on disk).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from agentfirewall.credentials import COMPUTED_KINDS
from agentfirewall_proxy.control import Control, ControlError
from agentfirewall_proxy.mcpwrap.framing import open_stdio
from agentfirewall_proxy.mcpwrap.gate import Gate, server_entry
from agentfirewall_proxy.mcpwrap.relay import Relay, RelayOptions
from agentfirewall_proxy.runenv import CONTROL_SECRETS
from agentfirewall_proxy.scrub import Scrubber, scrubber_for
from agentfirewall_proxy.snapshot import compile_snapshot

__all__ = [
    "HELD_BACK",
    "WrapError",
    "check_stdio",
    "child_env",
    "first_config",
    "parse_env_specs",
    "resolve_env",
    "wrap",
]

_PREFIX = "connector:"
#: The environment variables TameFlare reads a secret from, never handed to the wrapped
#: server: the tokens and keys ``tf run`` keeps from agents (``runenv.CONTROL_SECRETS``:
#: the gateway token reads every vaulted credential, a database URL holds its password)
#: and an agent's key (the server acts through the wrapper, not as the agent).
HELD_BACK = (*CONTROL_SECRETS, "AAF_API_KEY")
#: Shorter values held back are not scrubbed (they would match anywhere; no TameFlare
#: secret is that short).
_SHORTEST_SECRET = 8


class WrapError(Exception):
    """The session cannot start (bad flags, no control plane, unknown connector...);
    `hint` says what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def check_stdio() -> None:
    """The client speaks over pipes (MCP clients start the wrapper with its stdin and
    stdout connected to pipes), or a terminal. A file or ``/dev/null`` cannot be watched
    (asyncio refuses a file, uvloop aborts the process): refused before the server starts."""
    for stream, name in ((sys.stdin, "stdin"), (sys.stdout, "stdout")):
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError):
            raise WrapError(f"{name} is closed: the MCP client talks to `tf mcp wrap` over "
                            "its stdin and stdout") from None  # fmt: skip
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
            continue
        raise WrapError(
            f"{name} is {'a file' if stat.S_ISREG(mode) else 'not a pipe'}: `tf mcp wrap` "
            "speaks JSON-RPC over pipes, as an MCP client starts it",
            hint="to try it by hand, pipe the messages in and out: "
            "`cat requests.jsonl | tf mcp wrap --name NAME -- CMD | cat`",
        )


def parse_env_specs(values: Sequence[str]) -> dict[str, str]:
    """``NAME=connector:REF`` flags as {NAME: REF}."""
    specs: dict[str, str] = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name.isidentifier() or not source.startswith(_PREFIX):
            raise WrapError(f"--env `{value[:80]}`: expected NAME=connector:CONNECTOR")
        ref = source.removeprefix(_PREFIX).strip()
        if not ref:
            raise WrapError(f"--env `{name}`: no connector named")
        specs[name] = ref
    return specs


def resolve_env(snapshot: Mapping[str, Any], specs: Mapping[str, str]) -> dict[str, str]:
    """{NAME: credential} from the snapshot's connectors (by id, then name, then a unique
    type); WrapError when one is unknown, ambiguous, holds no credential, or a computed one
    (its vaulted document's secrets never leave the gateway)."""
    connectors = [c for c in snapshot.get("connectors") or [] if isinstance(c, dict)]
    out: dict[str, str] = {}
    for name, ref in specs.items():
        found = [c for c in connectors if ref in (c.get("id"), c.get("name"))]
        if not found:
            found = [c for c in connectors if c.get("type") == ref]
        if len(found) != 1:
            problem = "is not configured" if not found else "names several connectors"
            raise WrapError(
                f"--env `{name}`: connector `{ref}` {problem}",
                hint="`tf connector list` shows the configured connectors: name one by its "
                "id or name (`tf connector add TYPE --token-env VAR` adds one)",
            )
        credential = found[0].get("credential")
        if not isinstance(credential, str) or not credential:
            raise WrapError(
                f"--env `{name}`: connector `{ref}` has no credential in the vault",
                hint="name a connector added with its token (`tf connector add TYPE "
                "--token-env VAR`)",
            )
        kind = found[0].get("auth_type")
        if kind in COMPUTED_KINDS:
            raise WrapError(
                f"--env `{name}`: connector `{ref}` holds a computed credential ({kind}): "
                "its secrets (private key, client secret, refresh token, secret key) are "
                "never handed to a server",
                hint="give the server a token of its own from a connector that holds one "
                "(`tf connector add TYPE --name NAME --token-env VAR`, then "
                f"`--env {name}=connector:NAME`), or call that API through the gateway, "
                "which mints the short-lived token for each request",
            )
        out[name] = credential
    return out


def _fields(credential: str) -> list[str]:
    """A credential, and when it is a JSON document (a service account's key) every string
    in it, and each line of one (a PEM key's), long enough to be a secret: the server may
    write any one field alone."""
    try:
        document = json.loads(credential)
    except ValueError:
        return [credential]
    found, values = [credential], [document]
    while values:
        value = values.pop()
        if isinstance(value, str):
            found += (s for s in [value, *value.splitlines()] if len(s) >= _SHORTEST_SECRET)
        elif isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, list):
            values.extend(value)
    return found


def child_env(
    base: Mapping[str, str], credentials: Mapping[str, str], held_back: Sequence[str] = ()
) -> tuple[dict[str, str], Scrubber | None]:
    """The wrapped server's environment (`base` without :data:`HELD_BACK`, with the
    `credentials`), and the scrubber of everything it writes: the credentials (each field
    of a JSON one too), the values held back, and `held_back` (the wrapper's own tokens,
    read from files as well)."""
    env = {k: v for k, v in base.items() if k not in HELD_BACK}
    ours = [base[k] for k in HELD_BACK if k in base] + list(held_back)
    handed = [field for value in credentials.values() for field in _fields(value)]
    secrets = [*handed, *(s for s in ours if len(s) >= _SHORTEST_SECRET)]
    return {**env, **credentials}, scrubber_for(s.encode() for s in dict.fromkeys(secrets))


async def first_config(control: Control, seconds: float) -> dict[str, Any]:
    """The gateway's config snapshot, asked for until `seconds` pass (the control plane
    may be starting); a token it refuses fails at once (waiting would not change it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            snapshot = await control.fetch_config(None, 0)
        except ControlError as exc:
            if exc.status in (401, 403):
                raise WrapError(
                    f"the control plane refused the gateway token ({exc.status})",
                    hint="use this project's token (`.tf/gateway.token`, or pass --project "
                    "DIR), or set TF_GATEWAY_TOKEN to the gateway token of the server named "
                    "by --server / TF_SERVER",
                ) from None
            if loop.time() >= deadline:
                raise WrapError(
                    f"no configuration from the control plane: {exc}",
                    hint="start `tf up` in the project (or the server that --server or "
                    "TF_SERVER names); --config FILE runs from a snapshot file without one",
                ) from None
            await asyncio.sleep(0.5)
            continue
        if snapshot is not None:
            return snapshot


async def wrap(
    control: Control,
    *,
    agent: str,
    server_name: str,
    command: Sequence[str],
    env_specs: Mapping[str, str],
    base_env: Mapping[str, str],
    options: RelayOptions,
    held_back: Sequence[str] = (),
    ensure_agent: Callable[[], Awaitable[None]] | None = None,
    connect_timeout: float = 15.0,
) -> int:
    """Run one governed session on our stdin/stdout; the exit code. `held_back`: secrets
    of the wrapper's own (its tokens) scrubbed from what the server writes."""
    try:
        check_stdio()
        snapshot = await first_config(control, connect_timeout)
        config = compile_snapshot(snapshot)
        gate = Gate(agent, server_entry(server_name, None), config)
        if gate.agent() is None and ensure_agent is not None:
            await ensure_agent()
            snapshot = await first_config(control, connect_timeout)
            gate.config = config = compile_snapshot(snapshot)
        if gate.agent() is None:
            print(f"tf mcp wrap: agent `{agent}` is unknown: every message will be denied "
                  f"(register it: `tf agent add \"{agent}\"`)", file=sys.stderr)  # fmt: skip
        switch = gate.kill_switch()
        if switch is not None:  # nothing was read: no request to answer, the server not run
            raise WrapError(
                f"a kill switch covers this session ({switch}): the server was not started",
                hint="`tf kill-switch status` shows it; `tf kill-switch --deactivate --scope "
                "SCOPE` lifts it",
            )
        credentials = resolve_env(snapshot, env_specs)
        env, scrubber = child_env(base_env, credentials, held_back)
        gate.connector = server_entry(server_name, scrubber)
        try:
            child = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=options.limit,
                start_new_session=True,  # its own process group: its end reaches all of it
            )
        except OSError as exc:
            raise WrapError(
                f"cannot start `{command[0]}`: {exc.strerror or exc}",
                hint="check the command after `--`: is it installed, on PATH, executable?",
            ) from None
        reader, writer = await open_stdio(options.limit)
        relay = Relay(gate, control, options, child, config.version)
        return await relay.run(reader, writer)
    finally:
        await control.aclose()
