// The seed's two Node snippets, run unchanged as separate processes from a fresh directory
// where `npm install <this package>` was run, against the real control plane and a fake
// GitHub. Mode B's Octokit is pointed at the fake through GITHUB_API_URL (see
// examples/mode-b.mjs); Mode A never talks to GitHub itself: the server does, with the
// credential it vaults.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { startFakeGitHub } from "../helpers/fake-github.mjs";
import { FirewallServer } from "../helpers/firewall-server.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
// the seed lives in shared/ beside the repository (the repo is packages/sdk-node/../..)
const SEED = process.env.AAF_SEED_GUIDE ?? resolve(root, "..", "..", "..", "shared", "seed", "integration-guide.txt");
const VAULTED = "ghp_vaulted_by_the_firewall";
const AGENTS_OWN = "ghp_the_agents_own_token";
const MERGE_PATH = "/repos/acme/api/pulls/42/merge";

let server;
let github;
let app;

before(async () => {
  [server, github] = await Promise.all([FirewallServer.start(), startFakeGitHub()]);
  await server.admin("POST", "/v1/connectors", { type: "github", token: VAULTED, base_url: github.url });
  // the seed's step 1, in a directory that has nothing else
  app = mkdtempSync(join(tmpdir(), "aaf-seed-app-"));
  execFileSync("npm", ["install", root, "--no-audit", "--no-fund", "--offline"], { cwd: app, stdio: "pipe" });
  // Mode B's own dependency: the user would `npm install @octokit/rest`; the test links the
  // copy this package installed as a devDependency (no registry access needed here)
  mkdirSync(join(app, "node_modules", "@octokit"), { recursive: true });
  symlinkSync(join(root, "node_modules", "@octokit", "rest"), join(app, "node_modules", "@octokit", "rest"), "dir");
  for (const name of ["mode-a.mjs", "mode-b.mjs"]) copyFileSync(join(root, "examples", name), join(app, name));
});

after(async () => {
  await Promise.all([server?.stop(), github?.close()]);
  if (app) rmSync(app, { recursive: true, force: true });
});

/** Run a snippet as the seed's user would: a node process with the two AAF_* variables. */
function run(file, agent) {
  const env = {
    PATH: process.env.PATH,
    AAF_API_KEY: agent.key,
    AAF_BASE_URL: server.apiUrl,
    GITHUB_TOKEN: AGENTS_OWN,
    GITHUB_API_URL: github.url,
  };
  const child = spawn(process.execPath, [file], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  return new Promise((done) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    }),
  );
}

/** GitHub requests made while `body` runs. */
async function upstreamDuring(body) {
  const before = github.requests.length;
  const result = await body();
  return { ...result, upstream: github.requests.slice(before) };
}

function assertMerged(upstream, token) {
  assert.equal(upstream.length, 1, JSON.stringify(upstream));
  assert.equal(upstream[0].method, "PUT");
  assert.equal(upstream[0].path, MERGE_PATH);
  assert.ok(upstream[0].authorization.includes(token), upstream[0].authorization);
}

describe("Mode A (the gateway executes)", () => {
  test("allowed: the server merges the PR with its vaulted token", async () => {
    const agent = await server.agent("seed-a");
    const { code, stdout, stderr, upstream } = await upstreamDuring(() => run("mode-a.mjs", agent));
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "");
    assertMerged(upstream, VAULTED);
  });

  test("pending approval: the snippet waits, a human approves through the API, then it merges", async () => {
    const agent = await server.agent("seed-a");
    await server.rule(agent.name, "github.pr.merge", "requires_approval", "merges to main need a human");
    const { upstream, ran, decided } = await upstreamDuring(async () => {
      const [ran, decided] = await Promise.all([run("mode-a.mjs", agent), server.decideNext(agent.name, "approve")]);
      return { ran, decided };
    });
    assert.equal(decided.status, "approved");
    assert.equal(ran.code, 0, ran.stderr);
    assertMerged(upstream, VAULTED);
  });

  test("denied: prints the reason, nothing reaches GitHub", async () => {
    const agent = await server.agent("seed-a");
    await server.rule(agent.name, "github.pr.merge", "deny", "no merges on Fridays");
    const { code, stdout, stderr, upstream } = await upstreamDuring(() => run("mode-a.mjs", agent));
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "Blocked: no merges on Fridays\n");
    assert.deepEqual(upstream, []);
  });
});

describe("Mode B (the agent executes)", () => {
  test("allowed: the agent merges the PR itself with its own token", async () => {
    const agent = await server.agent("seed-b");
    const { code, stdout, stderr, upstream } = await upstreamDuring(() => run("mode-b.mjs", agent));
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "");
    assertMerged(upstream, AGENTS_OWN);
  });

  test("denied: prints the reason, nothing reaches GitHub", async () => {
    const agent = await server.agent("seed-b");
    await server.rule(agent.name, "github.pr.merge", "deny", "merges are frozen");
    const { code, stdout, stderr, upstream } = await upstreamDuring(() => run("mode-b.mjs", agent));
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "Policy blocked this action: merges are frozen\n");
    assert.deepEqual(upstream, []);
  });
});

describe("the examples are the seed's text", () => {
  const squash = (text) => text.replace(/\s+/g, "");
  const snippet = (name) => {
    const text = readFileSync(join(root, "examples", name), "utf8");
    const found = /\/\/ --- seed snippet begin\n([\s\S]*?)\/\/ --- seed snippet end/.exec(text);
    assert.ok(found, `${name} has no seed snippet markers`);
    return found[1];
  };
  const guide = existsSync(SEED) ? squash(readFileSync(SEED, "utf8")) : null;
  const skip = guide === null && `the seed guide is not on this machine (${SEED})`;

  for (const name of ["mode-a.mjs", "mode-b.mjs"]) {
    test(`${name}: setup and snippet appear verbatim in the seed guide`, { skip }, () => {
      const [setup, body] = snippet(name).split("\n\n// NEW");
      assert.ok(guide.includes(squash(setup)), `${name}: client setup differs from the seed`);
      assert.ok(guide.includes(squash(`// NEW${body}`)), `${name}: snippet differs from the seed`);
    });
  }
});
