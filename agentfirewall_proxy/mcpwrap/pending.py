"""The client's unanswered requests, by id: forwarded (the server's answer awaited), held
(an approval awaited), and cut off (refused since they were forwarded: their answer, should
it come, is dropped).

An answer is matched to its request by id (``1`` and ``"1"`` differ: ``messages.id_key``),
so a request whose answer could not be told apart is refused before anything is forwarded
(:meth:`Pending.untrackable`). A forwarded request the client cancelled
(``notifications/cancelled``) is still known until the server answers it (a server may
answer anyway): its answer is matched and checked like any other (a ``tools/list``'s
filtered), and its id is not given to another request meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from agentfirewall_proxy.mcpwrap import messages as rpc

if TYPE_CHECKING:
    from agentfirewall_proxy.flow import Flow

__all__ = ["CANCELLED_KEPT", "Pending"]

#: Cancelled requests whose answer is still matched (a server may answer them anyway); past
#: this many the oldest is cut off instead (its answer dropped), so a session that cancels
#: requests its server never answers keeps no more than this many flows.
CANCELLED_KEPT = 1000


def _answer_key(member: Any) -> str | None:
    """The id key of `member` when it is an answer (an id and no method), else None."""
    if not isinstance(member, dict) or "method" in member or "id" not in member:
        return None
    return rpc.id_key(member["id"])


class Pending:
    def __init__(self) -> None:
        #: Forwarded client requests not yet answered: id key -> method.
        self.forwarded: dict[str, str] = {}
        #: Forwarded requests the client cancelled since, which the server may still
        #: answer: id key -> method.
        self.cancelled: dict[str, str] = {}
        #: The flow each forwarded (or cancelled) request went in: what its answer is
        #: checked as (its action, its content: ``contentguard``).
        self.flows: dict[str, Flow] = {}
        #: Held client messages: id key -> (its hold's task, the ids it answers).
        self.held: dict[str, tuple[asyncio.Task[None], list[Any]]] = {}
        #: Forwarded requests refused since (cut): their answer, should it come, is dropped.
        self.cut_off: set[str] = set()

    def untrackable(self, message: object) -> str | None:
        """Why a request's answer could not be matched to it, or None: an id that is not a
        string or an integer (the server may answer ``2.0`` as ``2``), or one an unanswered
        request already has. The answer to a ``tools/list`` is filtered by that match: an
        answer matched to nothing would pass unfiltered."""
        seen: set[str] = set()
        for member in message if isinstance(message, list) else [message]:
            if not isinstance(member, dict) or "method" not in member or "id" not in member:
                continue
            value = member["id"]
            if isinstance(value, bool) or not isinstance(value, str | int):  # null too
                return "a request id must be a string or an integer"
            key = rpc.id_key(value)
            if key in seen or key in self.forwarded or key in self.held or key in self.cut_off:
                return f"request id {key[:60]} is already used by an unanswered request"
            if key in self.cancelled:
                return f"request id {key[:60]} is already used by a cancelled request"
            seen.add(key)
        return None

    def sent(self, message: Any, flow: Flow | None = None) -> None:
        """`message` was forwarded (in `flow`): its requests await their answers (a
        forwarded ``notifications/cancelled`` moves the request it names to the cancelled
        ones: its answer, should it come, is still matched)."""
        for member in message if isinstance(message, list) else [message]:
            is_request, request_id = rpc.request_id(member)
            if is_request:
                key = rpc.id_key(request_id)
                self.forwarded[key] = str(member["method"]).strip().lower()
                if flow is not None:
                    self.flows[key] = flow
            elif isinstance(member, dict) and member.get("method") == "notifications/cancelled":
                params = member.get("params")
                key = rpc.id_key(params.get("requestId")) if isinstance(params, dict) else ""
                if key in self.forwarded:
                    self.cancelled[key] = self.forwarded.pop(key)
                    if len(self.cancelled) > CANCELLED_KEPT:
                        self._forget_oldest_cancelled()

    def _forget_oldest_cancelled(self) -> None:
        """The oldest cancelled request is forgotten (its flow with it): cut off, so its
        answer, should it still come, is dropped (the client cancelled it: it reads none)."""
        oldest = next(iter(self.cancelled))
        del self.cancelled[oldest]
        self.flows.pop(oldest, None)
        self.cut_off.add(oldest)

    def answered(self, member: Any) -> str | None:
        """The method of the forwarded request `member` answers (no longer awaited), or
        None (not an answer, or to no request awaited)."""
        found = self.answering(member)
        return None if found is None else found[0]

    def answering(self, member: Any) -> tuple[str, Flow | None] | None:
        """The method of the forwarded (or cancelled) request `member` answers, and the
        flow it went in (no longer awaited); None when `member` answers no such request."""
        key = _answer_key(member)
        if key is None:
            return None
        method = self.forwarded.pop(key, None)
        if method is None:
            method = self.cancelled.pop(key, None)
        flow = self.flows.pop(key, None)
        return None if method is None else (method, flow)

    def too_late(self, member: Any) -> bool:
        """Whether `member` answers a request refused since it was forwarded (cut): dropped,
        the client has its refusal (once: the id is free again)."""
        key = _answer_key(member)
        if key is None or key not in self.cut_off:
            return False
        self.cut_off.discard(key)
        return True

    def hold(self, message: Any, task: asyncio.Task[None]) -> None:
        """The requests of `message` are held by `task` until it is done."""
        ids = [
            rid
            for member in (message if isinstance(message, list) else [message])
            for is_request, rid in [rpc.request_id(member)]
            if is_request
        ]
        for rid in ids:
            self.held[rpc.id_key(rid)] = (task, ids)
        task.add_done_callback(lambda _: [self.held.pop(rpc.id_key(rid), None) for rid in ids])

    def cancel_hold(self, message: Any) -> tuple[Any, list[Any]] | None:
        """None unless `message` is a ``notifications/cancelled`` for a held request; then its
        hold ends (not forwarded: the server never saw that request): that request's id,
        and the ids of the other requests held with it (a batch is held whole), which will
        never be forwarded, so each is owed an answer. A held message already forwarded
        (approved, its hold not yet done) is the server's: the cancellation goes there."""
        if not isinstance(message, dict) or message.get("method") != "notifications/cancelled":
            return None
        params = message.get("params")
        if not isinstance(params, dict):
            return None
        cancelled = params.get("requestId")
        key = rpc.id_key(cancelled)
        found = self.held.get(key)
        if found is None or key in self.forwarded:
            return None
        task, ids = found
        task.cancel()
        for rid in ids:  # (free at once: a second cancel finds nothing to answer again)
            self.held.pop(rpc.id_key(rid), None)
        return cancelled, [rid for rid in ids if rpc.id_key(rid) != key]

    def take_all(self) -> list[Any]:
        """The id of every unanswered request (forwarded or held), once each, no longer
        tracked; the holds are cancelled, the forwarded ones cut off (:meth:`cut_forwarded`)."""
        ids = [json.loads(key) for key in self.cut_forwarded()]
        for task, held_ids in list(self.held.values()):
            task.cancel()
            ids.extend(held_ids)
        self.held.clear()
        return [json.loads(key) for key in dict.fromkeys(rpc.id_key(i) for i in ids)]

    def cut_forwarded(self) -> dict[str, str]:
        """Every forwarded request still awaited (id key -> method), cut off, all at once
        before any is refused: an answer that comes while the refusals are written is
        dropped, never relayed beside its refusal (two answers for one id)."""
        forwarded, self.forwarded = self.forwarded, {}
        self.cut_off.update(forwarded)
        for key in forwarded:
            self.flows.pop(key, None)
        return forwarded
