#!/usr/bin/env bash
# Raw HTTP (the seed's "Raw HTTP" section): request an action with curl, then execute it
# (Mode A) when it is allowed. Needs curl and python3 (to read the JSON answer).
#   AAF_API_KEY=aaf_test_... AAF_BASE_URL=http://localhost:3000/api bash examples/raw_http.sh
set -euo pipefail
AAF_BASE_URL="${AAF_BASE_URL:-http://localhost:3000/api}"

# Request an action
answer=$(curl -sS --fail-with-body -X POST "$AAF_BASE_URL/v1/actions" \
  -H "Authorization: Bearer $AAF_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "action_spec": {
      "type": "github.pr.merge",
      "resource": {
        "provider": "github",
        "account": "acme",
        "target": "acme/api",
        "environment": "production"
      },
      "parameters": { "pull_number": 42 }
    }
  }')
echo "$answer"

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "")' "$answer" "$1"; }
status=$(field status)
if [ "$status" = "allowed" ]; then
  id=$(field action_request_id)
  token=$(field decision_token)
  # Execute (Mode A only)
  curl -sS --fail-with-body -X POST "$AAF_BASE_URL/v1/actions/$id/execute" \
    -H "Authorization: Bearer $AAF_API_KEY" \
    -H "Content-Type: application/json" \
    -d "{ \"decision_token\": \"$token\" }"
  echo
fi
