"""SDK Mode A (the seed's "After TameFlare (Mode A)"): the agent asks, the gateway executes.

The server performs the Stripe transfer with the credential it holds; the agent never sees
it. Run against a TameFlare server with an agent key::

    AAF_API_KEY=aaf_test_... AAF_BASE_URL=http://localhost:3000/api python examples/sdk_mode_a.py
"""

import os

from agentfirewall import AgentFirewall

TameFlare = AgentFirewall(
    api_key=os.environ["AAF_API_KEY"],
    base_url=os.environ.get("AAF_BASE_URL", "http://localhost:3000/api"),
)

# NEW: Agent requests permission, Gateway executes
result = TameFlare.request_action(
    action_type="payment.transfer.initiate",
    provider="stripe",
    account="acct_main",
    target="transfers",
    environment="production",
    parameters={"amount": 25000, "currency": "usd", "destination": "acct_xyz"},
    risk_hints={"financial_impact": True, "irreversible": True},
)
if result.status == "allowed":
    TameFlare.execute(result.action_request_id, result.decision_token)
elif result.status == "pending_approval":
    approved = TameFlare.wait_for_approval(result.action_request_id, timeout_seconds=300)
    if approved:
        TameFlare.execute(result.action_request_id, approved.decision_token)
elif result.status == "denied":
    print(f"Blocked: {result.decision.reason}")
