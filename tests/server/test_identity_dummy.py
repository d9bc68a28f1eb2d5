"""An unknown user's sign-in costs what a known user's does: the password is checked against
a written hash (`identity._DUMMY`) made with the very parameters new hashes get, so neither
its cost nor its answer tells whether the user exists."""

from __future__ import annotations

from argon2 import PasswordHasher

from agentfirewall_server import identity


def test_the_dummy_hash_has_the_parameters_of_a_new_hash() -> None:
    hasher = PasswordHasher()
    assert not hasher.check_needs_rehash(identity._DUMMY)
    assert identity._HASHER.check_needs_rehash(identity._DUMMY) is False
    fresh = hasher.hash("any")
    assert fresh.split("$")[:4] == identity._DUMMY.split("$")[:4]  # algorithm, version, costs


def test_no_password_opens_the_dummy_hash() -> None:
    for password in ("", "password", "admin", "0" * 16):
        assert identity.verify_password(identity._DUMMY, password) is False
