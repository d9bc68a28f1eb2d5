"""``python -m agentfirewall_proxy``: options from the command line, then :func:`serve`.

``serve(options, control_transport=...)`` is what ``tf up`` awaits in uvicorn's loop: the
gateway then reaches the control plane through ``httpx.ASGITransport(app)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

from agentfirewall.telemetry import otel_problem
from agentfirewall_proxy.control import Control, HttpControl, StaticControl
from agentfirewall_proxy.gateway import Gateway
from agentfirewall_proxy.options import Options, parse_listen, parse_port_range, parse_resolve

__all__ = ["build_gateway", "main", "parse_args", "serve"]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m agentfirewall_proxy",
        description="TameFlare gateway: the forward proxy that names, decides and holds "
        "every HTTP(S) call your agents make.",
    )
    parser.add_argument(
        "--control-plane",
        metavar="URL[,URL...]",
        help="e.g. http://127.0.0.1:3000; several replicas comma-separated (failover in order)",
    )
    parser.add_argument(
        "--token", help="gateway token (tfg_...); default $AGENTFIREWALL_GATEWAY_TOKEN"
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8443", help="HOST:PORT (default %(default)s)"
    )
    parser.add_argument(
        "--ca-dir", default=".tf", help="holds ca.crt / ca.key (default %(default)s)"
    )
    parser.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST[:PORT]=IP:PORT",
        help="send connections for HOST to IP:PORT (repeatable)",
    )
    parser.add_argument("--upstream-ca", metavar="FILE", help="extra CA bundle for upstream TLS")
    parser.add_argument("--upstream-proxy", metavar="URL", help="chain through this HTTP proxy")
    parser.add_argument(
        "--passthrough",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="tunnel DOMAIN (and its subdomains) without interception (repeatable)",
    )
    parser.add_argument("--config-file", metavar="FILE", help="serve a snapshot from a file")
    parser.add_argument("--agent-ports", metavar="FIRST-LAST", help="dedicated per-agent ports")
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--access-log", action="store_true", help="one line per request on stderr")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: the access log and messages as JSON lines with trace ids",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="send OpenTelemetry traces to this OTLP/HTTP collector "
        "(default $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no tracing)",
    )
    parser.add_argument(
        "--body-inspect-limit",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="request body bytes inspected before deciding (default 16 MiB; beyond: fail closed)",
    )
    args = parser.parse_args(argv)
    if args.body_inspect_limit < 1:
        parser.error("--body-inspect-limit must be a positive number of bytes")
    token = args.token or os.environ.get("AGENTFIREWALL_GATEWAY_TOKEN")
    if not args.config_file and not (args.control_plane and token):
        parser.error("give --control-plane URL and --token T, or --config-file FILE")
    if (problem := otel_problem(args.otlp_endpoint)) is not None:
        parser.error(problem)
    host, port = parse_listen(args.listen)
    try:
        resolve = parse_resolve(args.resolve)
        ports = parse_port_range(args.agent_ports) if args.agent_ports else None
    except ValueError as exc:
        parser.error(str(exc))
    return Options(
        control_plane=args.control_plane,
        token=token,
        listen_host=host,
        listen_port=port,
        ca_dir=Path(args.ca_dir),
        resolve=resolve,
        upstream_ca=Path(args.upstream_ca) if args.upstream_ca else None,
        upstream_proxy=args.upstream_proxy,
        passthrough=tuple(d.lower().rstrip(".") for d in args.passthrough),
        config_file=Path(args.config_file) if args.config_file else None,
        agent_ports=ports,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        access_log=args.access_log,
        body_inspect_limit=args.body_inspect_limit,
        log_format=args.log_format,
        otlp_endpoint=args.otlp_endpoint,
    )


def make_control(
    options: Options, control_transport: httpx.AsyncBaseTransport | None = None
) -> Control:
    if options.config_file is not None:
        return StaticControl(options.config_file)
    if not options.control_plane or not options.token:
        raise ValueError("a control plane URL and a gateway token are required")
    return HttpControl(options.control_plane, options.token, transport=control_transport)


def build_gateway(
    options: Options,
    *,
    control: Control | None = None,
    control_transport: httpx.AsyncBaseTransport | None = None,
    addons: Iterable[object] = (),
) -> Gateway:
    """A gateway ready to ``run()`` (tests pass a StaticControl or an ASGI transport).

    `addons` run after the default ones (see ``hooks.py``: methods named after hooks).
    """
    return Gateway(options, control or make_control(options, control_transport), addons)


async def serve(
    options: Options, *, control_transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Run a gateway until cancelled."""
    await build_gateway(options, control_transport=control_transport).run()


#: The collector's thresholds once the gateway serves (the control plane's, see
#: ``agentfirewall_server.main.settle_gc``): a request's objects are freed by reference
#: counting, so collections need not run every 700 allocations.
GC_THRESHOLDS = (10_000, 50, 50)


def settle_gc() -> None:
    """Once listening: the objects made at start-up (modules, the compiled config, the CA)
    live as long as the process; move them out of the collector's sight (``gc.freeze``),
    then collect less often. Measured under load (benchmarks/README.md, round 5): the
    collector's CPU per request fell from ~12 µs to ~2 µs. Only the command line does
    this; an embedding process (tests, ``tf up``) keeps its own collector settings."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _main(options: Options) -> None:
    gateway = build_gateway(options)
    task = asyncio.ensure_future(gateway.run())
    # SIGTERM (docker stop, systemd, kill) stops as Ctrl-C does: the gateway's shutdown
    # answers held requests and ships its last traffic records, instead of dying with them
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    ready = asyncio.ensure_future(gateway.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if gateway.ready.is_set():
        gateway.say(
            f"agentfirewall_proxy listening on {options.listen_host}:{gateway.port} "
            f"(CA: {options.ca_dir / 'ca.crt'})"
        )
    ready.cancel()
    settle_gc()
    try:
        await task
    except asyncio.CancelledError:
        if not terminated.is_set():
            raise


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        import uvloop

        uvloop.run(_main(options))
    except ImportError:
        asyncio.run(_main(options))
    except KeyboardInterrupt:
        return 130
    return 0
