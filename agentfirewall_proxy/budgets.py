"""Budgets at the gateway: spend from leased slices, or reserve and settle.

The control plane owns budgets and their usage (``agentfirewall_server.budgetstore``); the
snapshot tells the gateway which requests a budget covers (agents, connector type, action
glob) and how it measures them, so a request no budget covers costs nothing extra. A
request covered by ``count`` and ``sum`` budgets only is debited from this gateway's
leased slices (``budgetlease.py``: a control-plane call only when a slice runs out). One
an LLM budget covers (its amount comes from the response), or one a human approved past
a ``require_approval`` budget, is reserved through the control plane before it is
forwarded (atomic there). Past the limit a request is refused (403 ``budget_exceeded``,
the reason names the budget) or held for approval; the control plane unreachable refuses
it (503: fail closed). After the response a debit is spent or credited back (see
``budgetlease.py``) and a reservation is settled (the settlements of the same moment in
one call) (any answer below 400, an upgrade's 101 included, with the LLM ``usage`` read
from it) or released (the upstream refused, 4xx/5xx, or could not be reached), in the
background. The upstream's answer decides (``flow.answered``), not what the agent got: a
response whose body broke, or that the gateway cut or refused after its head came, was
acted on and is spent. A request sent with no response read for its usage (none came:
the upstream reset or did not answer in time, the agent or the gateway cut it first)
settles an LLM budget at the most it may have used (:func:`count_most`), as an answer
whose usage could not be read does (``metering.py``): a provider may have billed it; only
a request never sent settles nothing. An upgraded connection (a WebSocket) carries no
``usage`` the gateway can read: a token or cost budget refuses it
(:func:`refuse_unmetered`) rather than let it spend unmeasured. A request a budget
refused or held has it in its decision input (``agentfirewall.policy.replay.with_budget``):
``tf policy replay`` applies it again.

A request of several actions (:func:`performed`: a JSON-RPC batch's members, a GraphQL
document's mutations) spends what each of them would spend alone, summed per budget: a
budget covers it when it covers one of them, one of them that cannot say how much refuses
it whole, and the control plane is sent each of them (``members``), so it measures alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agentfirewall.budgetspend import LLM_MEASURES, spend_of
from agentfirewall.connectors import action_aliases
from agentfirewall.decisions import Decision
from agentfirewall.policy.globs import Glob, compile_glob
from agentfirewall.policy.replay import with_budget
from agentfirewall_proxy.budgetlease import Leases, Say, say_plain
from agentfirewall_proxy.control import ControlError
from agentfirewall_proxy.flow import Refusal
from agentfirewall_proxy.llmusage import estimate

if TYPE_CHECKING:
    from agentfirewall.connectors import ParsedAction
    from agentfirewall_proxy.control import Control
    from agentfirewall_proxy.flow import Flow

__all__ = [
    "BudgetScope",
    "Budgets",
    "budget_fields",
    "compile_budgets",
    "count_most",
    "decided_as",
    "performed",
    "refuse_unmetered",
]

_SETTLE_TRIES = 5
#: Settlements of the same moment go in one call (gathered this long, at most _BATCH).
_SETTLE_TICK = 0.05
_BATCH = 1000
#: How old the budget state policy conditions read may be (seconds).
_TTL = 1.0
#: A JSON-RPC batch of two or more messages (``agentfirewall.connectors.mcp``): it names
#: its members (``also``) and performs nothing itself.
_MCP_BATCH = "mcp.rpc.batch"


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """Which requests one budget covers (the snapshot's ``budgets`` entry)."""

    name: str
    agents: frozenset[str] | None  # None: every agent
    connector: str
    glob: Glob
    #: Settled from the response's ``usage`` (tokens or cost).
    llm: bool
    measure: str = "count"
    parameter: str | None = None
    currency: str | None = None
    #: The control plane's key of this definition: a budget changed (a lower limit), or
    #: removed and set again under its name, is another (old slices are not spent from).
    id: str = ""

    def covers(self, agent: str, connector: str, action: str) -> bool:
        """Whether the budget covers `action`, by its name or another spelling of it
        (``http.post`` is ``generic.post``: ``agentfirewall.connectors.action_aliases``; the
        control plane matches the same way, ``routes/budgets.py``)."""
        if connector != self.connector or (self.agents is not None and agent not in self.agents):
            return False
        return self.glob.matches(action) or any(map(self.glob.matches, action_aliases(action)))


def compile_budgets(entries: list[dict[str, Any]]) -> tuple[BudgetScope, ...]:
    scopes = []
    for raw in entries:
        agents = [str(a) for a in raw.get("agents") or ["*"]]
        scopes.append(
            BudgetScope(
                name=str(raw["name"]),
                agents=None if "*" in agents else frozenset(agents),
                connector=str(raw["connector"]),
                glob=compile_glob(str(raw.get("action") or "*")),
                llm=raw.get("measure") in LLM_MEASURES,
                measure=str(raw.get("measure") or "count"),
                parameter=raw.get("parameter"),
                currency=raw.get("currency"),
                id=str(raw.get("id") or raw["name"]),
            )
        )
    return tuple(scopes)


def performed(parsed: ParsedAction) -> tuple[ParsedAction, ...]:
    """Every action a request performs: a JSON-RPC batch's members (``mcp.rpc.batch``
    names them and performs nothing itself), else its action and each in ``also``."""
    if parsed.also and parsed.spec.type == _MCP_BATCH:
        return parsed.also
    return (parsed, *parsed.also)


def decided_as(parsed: ParsedAction, which: int) -> ParsedAction:
    """A request of several actions as its action `which` decides it (0: the request
    itself; else ``also[which - 1]``), with every other action it performs in ``also``:
    held or recorded as one of them, it still spends for all of them."""
    if which == 0:
        return parsed
    action = parsed.also[which - 1]
    return replace(action, also=tuple(a for a in performed(parsed) if a is not action))


def _actions(flow: Flow) -> list[tuple[str, Mapping[str, Any]]]:
    """Each action `flow` performs with its parameters (a parked flow: its own)."""
    if flow.parsed is None:
        return [(flow.action or "", flow.parameters or {})]
    return [(a.spec.type, a.spec.parameters) for a in performed(flow.parsed)]


def _covered(
    scopes: tuple[BudgetScope, ...], flow: Flow
) -> list[tuple[BudgetScope, list[Mapping[str, Any]]]]:
    """The budgets covering `flow`, each with the parameters of every action of it the
    budget covers."""
    if not scopes or flow.agent is None or flow.connector is None or flow.action is None:
        return []
    agent, connector = flow.agent.name, flow.connector.type
    actions = _actions(flow)
    found = []
    for scope in scopes:
        mine = [p for action, p in actions if scope.covers(agent, connector, action)]
        if mine:
            found.append((scope, mine))
    return found


def budget_fields(documents: list[Any]) -> frozenset[str]:
    """The ``budget.<name>.*`` fields the policies' conditions read."""
    found: set[str] = set()
    stack = list(documents)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            field = item.get("field")
            if isinstance(field, str) and field.startswith("budget."):
                found.add(field)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return frozenset(found)


class Budgets:
    """The gateway's budget calls; settlements run as background tasks."""

    def __init__(self, control: Control, say: Say = say_plain) -> None:
        self.control = control
        #: Where its messages go (``Gateway.say``).
        self.say = say
        self.leases = Leases(control, ControlError, say)
        self._tasks: set[asyncio.Task[None]] = set()
        self._settling: list[dict[str, Any]] = []
        self._attributes: dict[str, object] = {}
        self._fetched = -_TTL

    async def attributes(self) -> dict[str, object]:
        """What remains of each budget, for policy conditions (at most a second old).

        The control plane unreachable refuses the request (503): a condition on a
        budget must not read as "plenty left" when nothing is known."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._fetched < _TTL:
            return self._attributes
        try:
            fresh = await self.control.budget_attributes()
        except ControlError as exc:
            raise Refusal(
                503, "budget_unavailable", f"the budget state could not be read: {exc}"
            ) from None
        self._attributes, self._fetched = dict(fresh), loop.time()
        return self._attributes

    async def reserve(
        self, scopes: tuple[BudgetScope, ...], flow: Flow, *, force: bool
    ) -> Decision | None:
        """Reserve `flow`'s spend; a ``require_approval`` decision when a budget says
        hold (and no human approved yet), None when it may go; Refusal otherwise."""
        shares = _covered(scopes, flow)
        if not shares:
            return None
        assert flow.agent is not None
        assert flow.connector is not None
        covered = [scope for scope, _ in shares]
        actions = _actions(flow)
        payload: dict[str, Any] = {
            "agent": flow.agent.name,
            "connector": flow.connector.type,
            "action": flow.action,
            "parameters": dict(actions[0][1]) if len(actions) == 1 else {},
        }
        if len(actions) > 1:  # measured as the sum of each (``routes/budgets.py``)
            payload["members"] = [{"action": a, "parameters": dict(p)} for a, p in actions]
        amounts = None if force else _local_amounts(shares)
        try:
            if amounts is not None:  # count and sum: from this gateway's leased slices
                if not amounts:
                    return None  # another currency than every covering budget's
                names = {s.id: s.name for s in covered}
                answer = await self.leases.debit(payload, amounts, names)
                if isinstance(answer, list):
                    flow.leased = answer
                    return None
                refused = answer
            else:
                if any(s.llm for s in covered):  # what earlier answers used, counted first
                    await self._settled()
                payload.update(request_id=flow.request_id, force=force)
                answer = await self.control.reserve_budget(payload)
                refused = answer.get("refused")
        except ControlError as exc:
            raise Refusal(
                503, "budget_unavailable", f"the budget could not be checked: {exc}"
            ) from None
        if refused:
            budget = str(refused.get("budget") or "")
            reason = str(refused.get("reason") or f"budget `{budget}` exceeded")
            if refused.get("outcome") == "require_approval" and not force:
                # its record says so: replay holds it again, whatever the approval said
                flow.input = with_budget(flow.input, "require_approval", budget)
                return Decision("require_approval", reason, decided_outcome="require_approval")
            flow.input = with_budget(flow.input, "deny", budget)
            # what the traffic record and `tf logs` say: denied, and why (it said "allow")
            flow.decision = Decision("deny", reason, decided_outcome="deny")
            raise Refusal(403, "budget_exceeded", reason)
        flow.reservation = answer.get("reservation")
        flow.llm_budget = any(s.llm for s in covered)
        return None

    def settle(self, flow: Flow) -> None:
        """Settle or release `flow`'s reservation (once), in the background."""
        # the upstream's answer decides, not what the agent got: below 400 (a 101 upgrade
        # too: the connection is open, whatever it carries is spent) the upstream acted,
        # even when the body then broke or the gateway cut or refused the response; sent
        # with no answer, it may have happened (never under-count). Only a refusal
        # (4xx/5xx) or a request never sent gives the spend back.
        ok = flow.answered < 400 if flow.answered else flow.sent
        leased, flow.leased = flow.leased, None
        if leased is not None and flow.agent is not None:
            self.leases.finish(leased, flow.agent.name, ok)
        reservation, flow.reservation = flow.reservation, None
        if reservation is None:
            return
        if ok and flow.llm_budget and flow.usage is None and not _bodiless(flow):
            # sent, and no response was read for its usage (none came: the upstream reset
            # or timed out, the agent or the gateway cut it first): it may have been billed
            count_most(flow, _unread_because(flow))
        payload: dict[str, Any] = {"reservation": reservation, "ok": ok}
        if ok and flow.usage:  # ({}: the answer was read whole and named no usage)
            payload["usage"] = flow.usage
            payload["model"] = flow.model
        self._settling.append(payload)
        if len(self._settling) == 1:  # the first of this moment: one call for all of them
            task = asyncio.ensure_future(self._settle_soon())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _settled(self) -> None:
        """Deliver the settlements this gateway holds now. An LLM budget's spend is known
        only from the answer (usage), settled in the background a moment later: a request
        checked before that would see the budget as it was, so back-to-back calls could
        spend past the limit that only calls in flight together may pass."""
        if self._settling:
            batch, self._settling = self._settling, []  # (the scheduled send finds none)
            for start in range(0, len(batch), _BATCH):
                await self._settle(batch[start : start + _BATCH])
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _settle_soon(self) -> None:
        await asyncio.sleep(_SETTLE_TICK)
        batch, self._settling = self._settling, []
        for start in range(0, len(batch), _BATCH):
            await self._settle(batch[start : start + _BATCH])

    async def _settle(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(_SETTLE_TRIES):
            try:
                await self.control.settle_budgets(batch)
                return
            except ControlError as exc:
                if 400 <= exc.status < 500:
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
        # the reservations stay counted on the control plane (it never under-counts)
        self.say(f"agentfirewall_proxy: {len(batch)} budget reservation(s) not settled",
                 "warning")  # fmt: skip

    async def drain(self) -> None:
        """Wait for the settlements in flight and hand the leased slices back (shutdown,
        tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)  # their done callbacks leave the set
        await self.leases.drain()


def count_most(
    flow: Flow, why: str, read: dict[str, Any] | None = None, model: str | None = None
) -> None:
    """Set `flow`'s usage to the most the call may have used, its usage unread for `why`
    (``llmusage.estimate``: the request's body bytes as input tokens, its output limit or
    the cap as output, never less than what was `read`), and say so in its reason (its
    traffic record's ``usage estimated: …``). Fail closed: an LLM call is never free."""
    parameters = flow.parsed.spec.parameters if flow.parsed else flow.parameters or {}
    usage = estimate(flow.bytes_out, parameters, read)
    asked = parameters.get("model")
    flow.usage = usage
    flow.model = model or (asked[:200] if isinstance(asked, str) else None)
    given = usage.get("input_tokens", usage.get("prompt_tokens"))
    out = usage.get("output_tokens", usage.get("completion_tokens"))
    note = (f"usage estimated: {why}: counted as the most it may have used ({given} "
            f"input, {out} output tokens)")  # fmt: skip
    base = flow.reason or (flow.decision.reason if flow.decision else "")
    flow.reason = f"{base}; {note}" if base else note


def _bodiless(flow: Flow) -> bool:
    """An answer that has no body, so no usage to read: nothing was used."""
    return flow.method == "HEAD" or flow.answered in (204, 304)


def _unread_because(flow: Flow) -> str:
    """Why a request sent has no usage read (its traffic record's ``usage estimated: …``)."""
    if not flow.answered:
        return "no response came"
    return "the response was not read"


def refuse_unmetered(scopes: tuple[BudgetScope, ...], flow: Flow) -> None:
    """Refuse an upgraded connection (101, a WebSocket such as OpenAI's Realtime API) that a
    token or cost budget covers: its spend is read from ``usage`` in a response, and an
    upgraded connection has none the gateway reads (its frames carry usage in each API's
    own events, for as long as the connection lasts), so it would spend without limit.
    Fail closed: 403 ``budget_unmetered``, before any frame is relayed either way."""
    names = sorted({s.name for s, _ in _covered(scopes, flow) if s.llm})
    named = ", ".join(f"`{n}`" for n in names) or "an LLM budget"
    flow.input = with_budget(flow.input, "deny", names[0] if names else "")
    reason = (f"budget {named} counts LLM usage, which an upgraded connection (websocket) "
              "does not report: refused; use the HTTP API, or remove the budget for this "
              "agent or action")  # fmt: skip
    flow.decision = Decision("deny", reason, decided_outcome="deny")
    flow.answered, flow.sent = 0, False  # nothing passed either way: released, as unsent
    raise Refusal(403, "budget_unmetered", reason)


def _local_amounts(
    shares: list[tuple[BudgetScope, list[Mapping[str, Any]]]],
) -> dict[str, float] | None:
    """What the request spends from each covering budget (the sum of what each of its
    actions the budget covers spends), when the gateway can debit it from its slices
    (None: an LLM budget, settled from the response, or an action that does not say how
    much it spends: the control plane reserves or refuses it)."""
    amounts: dict[str, float] = {}
    for scope, each in shares:
        if scope.llm:
            return None
        covers = [spend_of(scope.name, scope.measure, scope.parameter, scope.currency,
                           dict(parameters)) for parameters in each]  # fmt: skip
        if any(cover is not None and cover.problem is not None for cover in covers):
            return None
        spent = [cover.amount for cover in covers if cover is not None]
        if spent:  # (none: every action in another currency than the budget's)
            amounts[scope.id] = sum(spent)
    return amounts
