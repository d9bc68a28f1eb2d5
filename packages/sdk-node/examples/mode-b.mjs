// SDK Mode B, the seed's "After TameFlare (Mode B)": the agent asks, then calls GitHub itself
// with its own token once TameFlare allows it.
//
//   npm install ./packages/sdk-node @octokit/rest
//   AAF_API_KEY=aaf_test_... GITHUB_TOKEN=ghp_... node mode-b.mjs
//
// GITHUB_API_URL (optional) points Octokit at another GitHub API root (GitHub Enterprise,
// or a test double); it is the only line that is not the seed's. Everything between the
// markers is the seed's snippet, unchanged (test/integration/seed.test.mjs).
import { Octokit as GitHubOctokit } from "@octokit/rest";

const Octokit = process.env.GITHUB_API_URL
  ? GitHubOctokit.defaults({ baseUrl: process.env.GITHUB_API_URL })
  : GitHubOctokit;

// --- seed snippet begin
import { AgentFirewall } from "@agentfirewall/sdk";

const TameFlare = new AgentFirewall({
  apiKey: process.env.AAF_API_KEY,
  baseUrl: process.env.AAF_BASE_URL ?? "http://localhost:3000/api",
});

// NEW: Agent checks policy, then executes itself
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

if (result.status === "allowed") {
  // Agent still holds credentials and executes directly
  const octokit = new Octokit({ auth: process.env.GITHUB_TOKEN });
  await octokit.pulls.merge({ owner: "acme", repo: "api", pull_number: 42 });
} else if (result.status === "denied") {
  console.log("Policy blocked this action:", result.decision.reason);
}
// --- seed snippet end
