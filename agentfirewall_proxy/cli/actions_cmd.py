"""`tf actions stuck|resolve`: SDK executions a server crash left ``executing``.

An execution cut short by a crash has an unknown outcome and is never retried by itself.
Check the upstream (did the PR merge? did the charge go through?), then settle it with what
you found: ``executed``, ``failed`` (never tried again) or ``retry`` (the agent may execute
it again). Ids may be abbreviated to any unique prefix of a stuck action's id.
"""

from __future__ import annotations

import argparse
from typing import Any

from agentfirewall_proxy.cli.client import AdminClient, path_id
from agentfirewall_proxy.cli.context import Context, add_command
from agentfirewall_proxy.cli.names import short_ids
from agentfirewall_proxy.cli.output import EXIT_OK, EXIT_USAGE, CliError, short_time

__all__ = ["register"]

_OUTCOMES = {
    "executed": "it took effect upstream",
    "failed": "it did not, and must not be tried again",
    "retry": "it did not, and the agent may execute it again",
}


def actions_stuck(ctx: Context) -> int:
    with ctx.client() as client:
        data = client.get("/v1/actions/stuck")
    actions = data.get("actions", [])
    ids = short_ids([str(a.get("action_request_id")) for a in actions])
    rows = [
        (short, a.get("agent"), a.get("action_type"), short_time(a.get("executing_since")))
        for short, a in zip(ids, actions, strict=True)
    ]
    after = data.get("stuck_after_seconds")
    ctx.out.result(
        data,
        lambda: ctx.out.table(
            ("id", "agent", "action", "executing since"),
            rows,
            empty=f"no stuck executions (an execution is stuck {after:g} s after its claim)",
        ),
    )
    return EXIT_OK


def _full_id(client: AdminClient, given: str) -> str:
    """`given`, or the one stuck action whose id it begins."""
    stuck = [str(a["action_request_id"]) for a in client.get("/v1/actions/stuck")["actions"]]
    if given in stuck:
        return given
    matches = [one for one in stuck if one.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CliError(
            f"`{given}` begins {len(matches)} stuck actions' ids",
            hint="give more of the id (see `tf actions stuck`)",
            code=EXIT_USAGE,
        )
    return given  # not stuck, or unknown: the server says which


def actions_resolve(ctx: Context) -> int:
    body: dict[str, Any] = {"outcome": ctx.args.outcome}
    if ctx.args.note:
        body["note"] = ctx.args.note
    with ctx.client() as client:
        action_id = _full_id(client, str(ctx.args.id))
        try:
            result = client.post(f"/v1/actions/{path_id(action_id)}/resolve", body)
        except CliError as exc:  # there is no `tf actions list`: name the command that lists
            if not exc.message.startswith("not found"):
                raise
            raise CliError(
                exc.message, hint="`tf actions stuck` lists what can be settled"
            ) from None
    text = {
        "executed": f"{action_id} recorded as executed",
        "failed": f"{action_id} recorded as failed: it will not be executed again",
        "retry": f"{action_id} released: the agent may execute it again",
    }[ctx.args.outcome]
    ctx.out.result(result, lambda: ctx.out.success(text))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        sub,
        "actions",
        help="list and settle SDK executions a server crash left unfinished",
        description="An action the SDK asked the server to execute (Mode A) whose server "
        "crashed mid-call stays `executing`: its outcome is unknown, so it is never retried "
        "by itself. `stuck` lists those (after three execute timeouts and 10 s, no server "
        "can still be running them); `resolve` settles one with what you found upstream. "
        "Needs the admin role to resolve.",
        examples="  tf actions stuck\n  tf actions resolve act_0KX3 --outcome retry\n"
        "  tf actions resolve act_0KX3 --outcome executed --note 'PR 42 is merged'",
        common=common,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="stuck|resolve")
    add_command(
        verbs,
        "stuck",
        help="executions left unfinished by a crash",
        description="List the actions still `executing` long after their claim, oldest first.",
        examples="  tf actions stuck\n  tf actions stuck --json",
        common=common,
        handler=actions_stuck,
    )
    resolve = add_command(
        verbs,
        "resolve",
        help="settle a stuck execution with what you found upstream",
        description="Settle one stuck execution. "
        + "; ".join(f"`{name}`: {what}" for name, what in _OUTCOMES.items())
        + ". Audited as action.execution_resolved.",
        examples="  tf actions resolve act_0KX3 --outcome retry\n"
        "  tf actions resolve act_0KX3 --outcome failed --note 'charge refused by Stripe'",
        common=common,
        handler=actions_resolve,
    )
    resolve.add_argument("id", help="the action request id, or a unique prefix of a stuck one")
    resolve.add_argument(
        "--outcome", required=True, choices=sorted(_OUTCOMES), help="what happened upstream (above)"
    )
    resolve.add_argument("--note", help="what you found upstream (kept in the audit log)")
