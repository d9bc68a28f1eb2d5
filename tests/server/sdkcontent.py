"""What the tests of content rules on SDK actions share (``test_sdk_content.py``,
``test_sdk_input_shadow_secrets.py``): a key the secret detectors find, the policy rule that
denies any secret, and the agent ``Bot`` acting through the SDK under a policy."""

from __future__ import annotations

from tests.server.conftest import Harness

__all__ = ["AWS_KEY", "NO_SECRETS", "content_policy", "sdk_bot"]

AWS_KEY = "AKIA" + "Q7RZ4XMPL2VN5KWD"  # the aws_access_key detector's shape
#: A rule (YAML, for :func:`content_policy`): deny whatever holds a secret.
NO_SECRETS = """\
  - name: no-secrets
    conditions: [{field: content.secrets, operator: exists}]
    decision: deny
"""


def content_policy(name: str, *rules: str) -> str:
    """The policy document `name` of `rules` (YAML list items, as :data:`NO_SECRETS`)."""
    return f"name: {name}\nrules:\n" + "".join(rules)


def sdk_bot(harness: Harness, policy: str, *, shadow: bool = False) -> str:
    """Add `policy` (in shadow only when `shadow`) and register the agent ``Bot``, which acts
    through the SDK with ``allow`` as its default: its API key."""
    where = "/v1/shadow/policies" if shadow else "/v1/policies"
    added = harness.admin("POST", where, json={"document": policy})
    assert added.status_code == 201, added.text
    return harness.create_agent("Bot", sdk_default="allow")
