"""The roles of people and tokens, ranked: who may do what, and who approves by default."""

from __future__ import annotations

__all__ = ["DEFAULT_ROLES", "ROLES"]

#: a role's rank: a role may do what every role of lower rank may do
ROLES: dict[str, int] = {"viewer": 1, "member": 2, "admin": 3, "owner": 4}
#: who may approve a held action when its policy names no approver roles
DEFAULT_ROLES = ("owner", "admin", "member")
