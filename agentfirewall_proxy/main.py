"""``python -m agentfirewall_proxy``: options from the command line, then :func:`serve`.

``serve(options, control_transport=...)`` is what ``tf up`` awaits in uvicorn's loop: the
gateway then reaches the control plane through ``httpx.ASGITransport(app)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import os
import signal
import ssl
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from agentfirewall.telemetry import otel_problem
from agentfirewall_proxy.control import (
    Control,
    ControlError,
    HttpControl,
    StaticControl,
    control_urls,
    file_problem,
)
from agentfirewall_proxy.gateway import Gateway
from agentfirewall_proxy.options import (
    MAX_CONFIG_AGE_HELP,
    Options,
    max_config_age_problem,
    parse_listen,
    parse_port_range,
    parse_resolve,
    shown_url,
)

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
        "--listen",
        default="127.0.0.1:8443",
        metavar="HOST:PORT",
        help="where agents connect; port 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--ca-dir",
        default=".tf",
        metavar="DIR",
        help="holds ca.crt / ca.key, created once (default %(default)s)",
    )
    parser.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST[:PORT]=IP:PORT",
        help="send connections for HOST to IP:PORT (repeatable)",
    )
    parser.add_argument("--upstream-ca", metavar="FILE", help="extra CA bundle for upstream TLS")
    parser.add_argument(
        "--upstream-proxy",
        metavar="URL",
        help="reach upstreams through this HTTP proxy: http://[USER:PASSWORD@]HOST:PORT",
    )
    parser.add_argument(
        "--passthrough",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="tunnel DOMAIN (and its subdomains) without interception (repeatable)",
    )
    parser.add_argument("--config-file", metavar="FILE", help="serve a snapshot from a file")
    parser.add_argument("--agent-ports", metavar="FIRST-LAST", help="dedicated per-agent ports")
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client may take to send a request head (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds an idle keep-alive client connection is kept (default %(default)s)",
    )
    parser.add_argument(
        "--max-config-age",
        type=float,
        default=60.0,
        metavar="S",
        help=MAX_CONFIG_AGE_HELP,
    )
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
    for name in ("header_timeout", "idle_timeout"):
        if not getattr(args, name) > 0:  # (NaN too)
            parser.error(f"--{name.replace('_', '-')} must be a positive number of seconds")
    if (problem := max_config_age_problem(args.max_config_age)) is not None:
        parser.error(problem)
    token = args.token or os.environ.get("AGENTFIREWALL_GATEWAY_TOKEN")
    if not args.config_file and not (args.control_plane and token):
        parser.error("give --control-plane URL and --token T, or --config-file FILE")
    if (problem := otel_problem(args.otlp_endpoint)) is not None:
        parser.error(problem)
    if (problem := _url_problem(args.control_plane, args.upstream_proxy)) is not None:
        parser.error(problem)
    try:
        host, port = parse_listen(args.listen)
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
        max_config_age=args.max_config_age,
        access_log=args.access_log,
        body_inspect_limit=args.body_inspect_limit,
        log_format=args.log_format,
        otlp_endpoint=args.otlp_endpoint,
    )


def _url_problem(control_plane: str | None, upstream_proxy: str | None) -> str | None:
    """What is wrong with the URLs given, if anything (a typo would be retried forever)."""
    try:
        urls = control_urls(control_plane) if control_plane is not None else []
    except ValueError:
        return "--control-plane names no URL: e.g. http://127.0.0.1:3000"
    for url in urls:
        if not _is_url(url, ("http", "https")):
            return (
                f"--control-plane `{shown_url(url)}` is not a server URL: "
                "e.g. http://127.0.0.1:3000"
            )
    if upstream_proxy is not None and not _is_url(upstream_proxy, ("http",)):
        return (
            f"--upstream-proxy `{shown_url(upstream_proxy)}` is not a proxy URL: "
            "expected http://[USER:PASSWORD@]HOST:PORT"
        )
    return None


def _is_url(url: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


class StartError(Exception):
    """What stops the gateway before it serves, said in one line (exit status 1)."""


def _checked_control(options: Options) -> Control | None:
    """The files the command line names, read before anything starts: the config file's
    control (None with a control plane) and the upstream CA."""
    if options.upstream_ca is not None:
        try:
            ssl.create_default_context().load_verify_locations(cafile=options.upstream_ca)
        except ssl.SSLError:  # (an OSError too: first)
            raise StartError(
                f"--upstream-ca `{options.upstream_ca}` holds no PEM certificate"
            ) from None
        except OSError as exc:
            raise StartError(
                f"cannot read --upstream-ca `{options.upstream_ca}`: {file_problem(exc)}"
            ) from None
    if options.config_file is None:
        return None
    try:
        return StaticControl(options.config_file)
    except ControlError as exc:  # (it names the file)
        raise StartError(str(exc)) from None
    except Exception as exc:  # whatever the file holds
        raise StartError(
            f"cannot read --config-file `{options.config_file}`: {file_problem(exc)}"
        ) from None


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


async def _main(options: Options, control: Control | None) -> None:
    try:
        gateway = build_gateway(options, control=control)
    except (OSError, ValueError) as exc:  # the CA: created, or read, in --ca-dir
        raise StartError(f"cannot use --ca-dir `{options.ca_dir}`: {file_problem(exc)}") from None
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
    failed = task.exception() if task.done() and not task.cancelled() else None
    if isinstance(failed, OSError):  # the listener could not be opened
        why = os.strerror(failed.errno) if failed.errno and failed.errno > 0 else failed
        hint = " (--listen HOST:0 picks a free port)" if failed.errno == errno.EADDRINUSE else ""
        raise StartError(
            f"cannot listen on {options.listen_host}:{options.listen_port}: {why}{hint}"
        )
    if failed is not None:  # the first configuration did not apply (said above)
        raise StartError(f"the gateway could not start: {type(failed).__name__}: {failed}")
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
        control = _checked_control(options)
        try:
            import uvloop
        except ImportError:
            asyncio.run(_main(options, control))
        else:
            uvloop.run(_main(options, control))
    except StartError as exc:
        print(f"python -m agentfirewall_proxy: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
