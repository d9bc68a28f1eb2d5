"""`tf demo [--yes]` run: the 60-second tour, on a throwaway gateway with fake GitHub and Stripe.

No account, key or network: everything runs on 127.0.0.1 from a temporary directory that
is deleted at the end. It doubles as a smoke test (`tf demo --yes` exits 0 when every step
did what it shows). Lines fit 80 columns.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import textwrap
import threading
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx

from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.names import short_ids
from agentfirewall_proxy.cli.output import EXIT_ERROR, EXIT_OK, CliError
from agentfirewall_proxy.demo.tour import AGENT, RULES, Running, Step, running

__all__ = ["demo"]

GITHUB = "https://api.github.com/repos/acme/api"
BALANCE = "https://api.stripe.com/v1/balance"
_WIDTH = 80
_INDENT = " " * 9


def _say(ctx: Context, text: str, style: str | None = None) -> None:
    if not ctx.out.json_mode:
        ctx.out.line(text, style)


def _detail(ctx: Context, text: str, style: str = "dim") -> None:
    for line in textwrap.wrap(text, _WIDTH, initial_indent=_INDENT, subsequent_indent=_INDENT):
        _say(ctx, line, style)


def _step(ctx: Context, steps: list[Step], step: Step) -> None:
    steps.append(step)
    mark, style = ("✓", "green") if step.ok else ("✗", "bold red")
    _say(ctx, f"{mark} {step.name:<6} {step.request} → {step.result}", style)
    if step.detail:
        _detail(ctx, step.detail)


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return ""
    return f"{body.get('action') or '-'}: {body.get('reason')}" if "reason" in body else ""


def _typed(queue: Queue[str]) -> None:
    with contextlib.suppress(EOFError, OSError):
        queue.put(input())


def _settle(ctx: Context, demo: Running, approval: dict[str, Any]) -> bool:
    """Approve or deny the held merge: --yes, the terminal, or the dashboard (whichever is
    first); True when it ended approved."""
    action = (approval.get("action_spec") or {}).get("type")
    aid = str(approval["id"])
    _detail(ctx, f"held: {action} waits for a person (approval {short_ids([aid])[0]})", "yellow")
    if ctx.args.yes:
        _detail(ctx, "approved (--yes)")
        demo.api("POST", f"/v1/approvals/{aid}/approve")
        return True
    if demo.info.setup_url:
        _detail(ctx, "approve it here, or in the dashboard (this one-time link logs you in):")
        _say(ctx, "  " + demo.info.setup_url)
    print(_INDENT + "approve it? [Y/n] ", end="", flush=True)
    typed: Queue[str] = Queue()
    threading.Thread(target=_typed, args=(typed,), daemon=True).start()
    while True:
        with contextlib.suppress(Empty):
            approve = typed.get(timeout=0.2).strip().lower() in ("", "y", "yes")
            verb = "approve" if approve else "deny"
            try:
                return str(demo.api("POST", f"/v1/approvals/{aid}/{verb}")["status"]) == "approved"
            except httpx.HTTPStatusError as exc:  # decided in the dashboard meanwhile
                if exc.response.status_code != 409:
                    raise
        status = str(demo.api("GET", f"/v1/approvals/{aid}")["status"])
        if status != "pending":
            print()
            _detail(ctx, f"{status} in the dashboard")
            return status == "approved"


def _held_merge(ctx: Context, demo: Running, steps: list[Step]) -> None:
    result: list[httpx.Response] = []
    _say(ctx, "… hold   PUT api.github.com/repos/acme/api/pulls/7/merge", "yellow")
    with demo.agent() as agent:
        call = threading.Thread(
            target=lambda: result.append(agent.put(GITHUB + "/pulls/7/merge", json={})),
            daemon=True,
        )
        call.start()
        approve = _settle(ctx, demo, demo.wait_for_approval())
        call.join(60)
    status = result[0].status_code if result else 0
    detail = "" if status == 200 else _reason(result[0]) if result else "no answer"
    result_text = f"{status} merged" if status == 200 else str(status)
    request = "the merge, once " + ("approved" if approve else "denied")
    expected = status == (200 if approve else 403)
    _step(ctx, steps, Step("hold", request, result_text, expected, detail))


def _kill_switch(ctx: Context, demo: Running, steps: list[Step]) -> None:
    demo.api("POST", "/v1/kill-switch", {"active": True, "scope": AGENT, "reason": "demo"})
    demo.wait_for_kill_switch(True)
    _say(ctx, f"  kill switch ON for {AGENT}", "yellow")
    with demo.agent() as agent:
        stopped = agent.get(BALANCE)
    header = stopped.headers.get("x-tameflare-kill-switch")
    _step(ctx, steps, Step("kill", "GET api.stripe.com/v1/balance", str(stopped.status_code),
                           stopped.status_code == 403 and header == "active",
                           f"X-TameFlare-Kill-Switch: {header}"))  # fmt: skip
    demo.api("POST", "/v1/kill-switch", {"active": False})
    demo.wait_for_kill_switch(False)
    _say(ctx, "  kill switch OFF", "yellow")
    with demo.agent() as agent:
        again = agent.get(BALANCE)
    _step(ctx, steps, Step("allow", "GET api.stripe.com/v1/balance", str(again.status_code),
                           again.status_code == 200))  # fmt: skip


def _tour(ctx: Context, demo: Running) -> list[Step]:
    steps: list[Step] = []
    with demo.agent() as agent:
        read = agent.get(GITHUB)
        ok = read.status_code == 200
        injected = "the gateway added GitHub's key"
        _step(ctx, steps, Step("allow", "GET " + GITHUB[8:], str(read.status_code), ok, injected))
        gone = agent.delete(GITHUB)
        ok = gone.status_code == 403
        _step(ctx, steps, Step("deny", "DELETE " + GITHUB[8:], str(gone.status_code), ok,
                               _reason(gone)))  # fmt: skip
    _held_merge(ctx, demo, steps)
    _kill_switch(ctx, demo, steps)
    audit = demo.api("GET", "/v1/audit/verify")
    intact = bool(audit.get("ok"))
    _step(ctx, steps, Step("audit", f"verify {audit.get('events_checked')} events",
                           "chain intact" if intact else "broken", intact,
                           "" if intact else str(audit.get("problem"))))  # fmt: skip
    deletes = [r for r in demo.upstreams.github.received if r[0] == "DELETE"]
    seen = ", ".join(
        f"{api.name} {' '.join(m for m, _ in api.received)}" for api in demo.upstreams.apis
    )
    _step(ctx, steps, Step("check", "what reached the fake APIs", seen, not deletes,
                           "never the DELETE" if not deletes else "the DELETE did"))  # fmt: skip
    return steps


def _intro(ctx: Context, demo: Running) -> None:
    _say(ctx, f"  control plane {demo.info.server_url}, gateway {demo.info.proxy_url}", "dim")
    _say(ctx, f"  agent {AGENT}: holds no API key, the gateway injects them", "dim")
    rules = [f"{pattern} {decision.replace('require_approval', 'hold')}"
             for _, pattern, decision in RULES]  # fmt: skip
    _say(ctx, "  rules: " + ", ".join(rules[:2]), "dim")
    _say(ctx, "         " + ", ".join(rules[2:]), "dim")
    _say(ctx, "")


def demo(ctx: Context) -> int:
    if not ctx.args.yes and (ctx.out.json_mode or not sys.stdin.isatty()):
        # asked before anything starts: a held call is never left to be cut at the end
        raise CliError(
            "`tf demo` asks you to approve a held request, and there is no terminal to ask in",
            hint="run it in a terminal, or add --yes to approve it without asking",
        )
    _say(ctx, "TameFlare demo: a throwaway gateway, fake GitHub and Stripe", "bold")
    try:
        with tempfile.TemporaryDirectory(prefix="tf-demo-") as tmp, ExitStack() as stack:
            with ctx.out.progress("starting a gateway on free ports…"):
                demo_run = stack.enter_context(running(Path(tmp)))
                demo_run.configure()
            _intro(ctx, demo_run)
            steps = _tour(ctx, demo_run)
    except (httpx.HTTPError, TimeoutError, RuntimeError) as exc:
        raise CliError(f"the demo failed: {type(exc).__name__}: {exc}") from None
    ok = all(step.ok for step in steps)

    def render() -> None:
        _say(ctx, "")
        if not ok:
            ctx.out.error("a step did not do what it shows (marked ✗)")
            return
        _say(ctx, "All of it ran on 127.0.0.1 and is deleted now. Your own, in your", "bold")
        _say(ctx, "project: `tf init`, `tf up`, then docs/quickstart.md.", "bold")

    ctx.out.result({"ok": ok, "steps": [asdict(step) for step in steps]}, render)
    return EXIT_OK if ok else EXIT_ERROR
