"""SDK Mode B (the seed's "After TameFlare (Mode B)"): the agent checks, then acts itself.

The agent keeps its own Stripe key and calls Stripe directly once TameFlare allows it::

    AAF_API_KEY=aaf_test_... STRIPE_SECRET_KEY=sk_test_... python examples/sdk_mode_b.py

``STRIPE_API_BASE`` (optional) points the Stripe library at another Stripe-compatible
server, e.g. a test double.
"""

import os

import stripe

from agentfirewall import AgentFirewall

TameFlare = AgentFirewall(
    api_key=os.environ["AAF_API_KEY"],
    base_url=os.environ.get("AAF_BASE_URL", "http://localhost:3000/api"),
)
stripe.api_key = os.environ["STRIPE_SECRET_KEY"]
stripe.api_base = os.environ.get("STRIPE_API_BASE", stripe.api_base)

# NEW: Agent checks policy, then executes itself
result = TameFlare.request_action(
    action_type="payment.transfer.initiate",
    provider="stripe",
    account="acct_main",
    target="transfers",
    environment="production",
    parameters={"amount": 25000, "currency": "usd", "destination": "acct_xyz"},
)
if result.status == "allowed":
    # Agent still holds credentials
    stripe.Transfer.create(amount=25000, currency="usd", destination="acct_xyz")
elif result.status == "denied":
    print(f"Blocked: {result.decision.reason}")
