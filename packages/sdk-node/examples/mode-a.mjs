// SDK Mode A, the seed's "After TameFlare (Mode A)": the agent asks, TameFlare executes the
// action with the credential it holds (the agent never sees the GitHub token).
//
//   npm install ./packages/sdk-node
//   AAF_API_KEY=aaf_test_... AAF_BASE_URL=http://localhost:3000/api node mode-a.mjs
//
// Everything between the markers is the seed's snippet, unchanged (test/integration/seed.test.mjs).
// --- seed snippet begin
import { AgentFirewall } from "@agentfirewall/sdk";

const TameFlare = new AgentFirewall({
  apiKey: process.env.AAF_API_KEY,
  baseUrl: process.env.AAF_BASE_URL ?? "http://localhost:3000/api",
});

// NEW: Agent requests permission, Gateway executes
const result = await TameFlare.requestAction({
  type: "github.pr.merge",
  resource: {
    provider: "github",
    account: "acme",
    target: "acme/api",
    environment: "production",
  },
  parameters: { pull_number: 42 },
});

switch (result.status) {
  case "allowed":
    await TameFlare.execute(result.action_request_id, result.decision_token);
    break;
  case "pending_approval":
    const approved = await TameFlare.waitForApproval(result.action_request_id);
    if (approved) await TameFlare.execute(result.action_request_id, approved.decision_token);
    break;
  case "denied":
    console.log("Blocked:", result.decision.reason);
    break;
}
// --- seed snippet end
