"""The roles of people and tokens, ranked: who may do what, and who approves by default."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_ROLES", "ROLES", "may_approve"]

#: a role's rank: a role may do what every role of lower rank may do
ROLES: dict[str, int] = {"viewer": 1, "member": 2, "admin": 3, "owner": 4}
#: who may approve a held action when its policy names no approver roles
DEFAULT_ROLES = ("owner", "admin", "member")


def may_approve(role: str | None, required: Sequence[str]) -> bool:
    """Whether `role` may approve what needs one of the `required` roles: at least a
    member, and at least the lowest-ranked of them (an owner approves what an admin may)."""
    rank = ROLES.get(role or "", 0)
    needed = min((ROLES.get(r, 99) for r in required), default=ROLES["member"])
    return rank >= max(needed, ROLES["member"])
