"""Who posts an approval to Slack: a claim in its row, taken by a conditional update.

An approval with no message yet (``slack_ts`` NULL) is posted by the one server whose claim
(``slack_claim``: the notifier's random id; ``slack_claimed_at``: its last try) the update
stored. Each try takes the claim again, and a try whose update changes no row sends
nothing: the approval was decided or posted meanwhile, or another replica holds it. On
PostgreSQL two replicas' updates of one row run one after the other and the second reads
the first's claim, so exactly one posts.

A claim is held while the message is being sent and lapses `CLAIM_SECONDS` after its last
try (a server killed mid-post). A message given up for a transient reason releases it
(NULL): the next sweep of any replica posts it. One Slack refused (a wrong token, an unknown
channel) keeps ``refused:<settings>`` (`refused_mark`) until the Slack settings change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select, update

from agentfirewall_server.store.schema import approvals

__all__ = ["CLAIM_SECONDS", "claim_post", "refused_mark", "release_claims", "unposted"]

#: Seconds a claim outlives its last try: far above a try and the longest wait between two
#: (`delivery.RetryPolicy`: 10 s and 30 s).
CLAIM_SECONDS = 300.0
_REFUSED = "refused:"


def refused_mark(api_url: str, channel: str, token_sealed: str) -> str:
    """The claim of a post Slack refused under these settings (the bot token as sealed in
    the vault: its ciphertext, never the token, is hashed)."""
    seen = "\0".join((api_url, channel, token_sealed)).encode()
    return _REFUSED + hashlib.sha256(seen).hexdigest()[:32]


def _postable(refused: str, now: float, mine: str | None) -> ColumnElement[bool]:
    """Pending, no message yet, and no one else's live claim on it."""
    claim = approvals.c.slack_claim
    free = [
        claim.is_(None),
        and_(~claim.startswith(_REFUSED), approvals.c.slack_claimed_at < now - CLAIM_SECONDS),
        and_(claim.startswith(_REFUSED), claim != refused),
    ]
    if mine is not None:
        free.append(claim == mine)
    return and_(approvals.c.status == "pending", approvals.c.slack_ts.is_(None), or_(*free))


def claim_post(conn: Connection, approval_id: str, mine: str, refused: str, now: float) -> bool:
    """Claim (or claim again) the approval's post for `mine`; False when it is not to be
    posted by it: decided, posted, gone, refused under these settings or claimed by
    another server."""
    done = conn.execute(
        update(approvals)
        .where(approvals.c.id == approval_id, _postable(refused, now, mine))
        .values(slack_claim=mine, slack_claimed_at=now)
    )
    return done.rowcount == 1


def release_claims(
    conn: Connection, released: Sequence[tuple[str, str | None]], mine: str, now: float
) -> None:
    """Each (approval, what its claim becomes: None or a `refused_mark`), if `mine` still
    holds it and it has no message."""
    for approval_id, claim in released:
        conn.execute(
            update(approvals)
            .where(
                approvals.c.id == approval_id,
                approvals.c.slack_claim == mine,
                approvals.c.slack_ts.is_(None),
            )
            .values(slack_claim=claim, slack_claimed_at=now)
        )


def unposted(conn: Connection, refused: str, now: float, limit: int) -> list[dict[str, Any]]:
    """The oldest `limit` pending approvals with no message that no server is posting."""
    rows = conn.execute(
        select(approvals)
        .where(_postable(refused, now, None))
        .order_by(approvals.c.created_at, approvals.c.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]
