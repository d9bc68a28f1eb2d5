"""Raw HTTP (the seed's "Raw HTTP" section) with httpx instead of curl.

Requests an action with the seed's exact JSON, prints the response, and executes the
action (Mode A) when it is allowed::

    AAF_API_KEY=aaf_test_... python examples/raw_http.py
"""

import json
import os

import httpx

base_url = os.environ.get("AAF_BASE_URL", "http://localhost:3000/api")
headers = {
    "Authorization": f"Bearer {os.environ['AAF_API_KEY']}",
    "Content-Type": "application/json",
}

# Request an action
response = httpx.post(
    f"{base_url}/v1/actions",
    headers=headers,
    content=json.dumps(
        {
            "action_spec": {
                "type": "github.pr.merge",
                "resource": {
                    "provider": "github",
                    "account": "acme",
                    "target": "acme/api",
                    "environment": "production",
                },
                "parameters": {"pull_number": 42},
            }
        }
    ),
)
response.raise_for_status()
answer = response.json()
print(json.dumps(answer, indent=2))

# Execute (Mode A only)
if answer["status"] == "allowed":
    executed = httpx.post(
        f"{base_url}/v1/actions/{answer['action_request_id']}/execute",
        headers=headers,
        content=json.dumps({"decision_token": answer["decision_token"]}),
    )
    executed.raise_for_status()
    print(json.dumps(executed.json(), indent=2))
