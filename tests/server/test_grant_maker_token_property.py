"""Whatever the tokens' names, a grant made with an API token stands exactly while that
token does (SQLite and PostgreSQL): a model of the tokens, checked against the server after
each revocation.

Two users (owners) mint tokens with names drawn from a small set, so that names are often
shared, by one user's tokens and by both users'; grants are made with any of them; then the
tokens are revoked in any order. Each revocation ends exactly the live grants made with that
token (its `token.revoked` event lists them), and after each one every grant covers its
agent's next request exactly while its token is live.

Each example makes users, tokens and grants through the app: CI tries a few
(`tests/slices.py`), nox -s deep the count written beside it times its scale.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import Harness
from tests.server.test_grant_maker_authority import POLICY, Desk
from tests.server.test_grant_maker_token import grant_with, mint, revoke
from tests.slices import expensive_examples

_COUNT = itertools.count()
#: (its user: 0 or 1, its name) of each token minted
_TOKENS = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from(["api token", "ci"])), min_size=1, max_size=4
)


@settings(
    max_examples=expensive_examples(10, ci=4),  # each: users, tokens, requests
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), minted=_TOKENS)
def test_a_grant_stands_exactly_while_the_token_that_made_it_does(
    harness: Harness, data: st.DataObject, minted: list[tuple[int, str]]
) -> None:
    h = harness
    if not h.admin("GET", "/v1/policies").json().get("policies"):
        assert h.admin("POST", "/v1/policies", json={"document": POLICY}).status_code == 201
    run = next(_COUNT)
    first = Desk(h, f"Bot-{run}")
    emails = [f"user{n}-{run}@example.com" for n in (0, 1)]
    for email in emails:
        first.person(email, "owner")
    made = [mint(first, emails[user], name) for user, name in minted]
    made_with = data.draw(st.lists(st.integers(0, len(made) - 1), min_size=1, max_size=3))
    desks = [first] + [first.beside(f"Bot-{run}-{n}") for n in range(1, len(made_with))]
    token_of = {desk.agent: t for desk, t in zip(desks, made_with, strict=True)}
    grant_of = {desk.agent: grant_with(desk, made[token_of[desk.agent]]["token"]) for desk in desks}
    live = set(range(len(made)))
    for gone in data.draw(st.permutations(range(len(made)))):
        ended = revoke(h, made[gone]["prefix"])
        live.discard(gone)
        assert sorted(ended) == sorted(
            g for agent, g in grant_of.items() if token_of[agent] == gone
        ), (minted, made_with, gone)
        for desk in desks:
            stands = token_of[desk.agent] in live
            assert desk.sdk(7)["status"] == ("allowed" if stands else "pending_approval")
            assert desk.status(grant_of[desk.agent]) == ("active" if stands else "revoked")
