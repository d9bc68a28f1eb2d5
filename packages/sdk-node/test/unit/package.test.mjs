// The package as users get it: committed dist/ equals a fresh build, ESM and CJS entry
// points export the same API, and `npm install <this dir>` in a fresh directory works.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import * as esm from "../../dist/esm/index.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const scratch = mkdtempSync(join(tmpdir(), "aaf-sdk-node-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const API = [
  "ACTION_TYPE_PATTERN",
  "APIError",
  "ActionDeniedError",
  "ActionResult",
  "ActionSpecError",
  "AgentFirewall",
  "AgentFirewallError",
  "ApprovalError",
  "AuthenticationError",
  "ConflictError",
  "DEFAULT_BASE_URL",
  "DecisionTokenRejectedError",
  "NotFoundError",
  "PermissionDeniedError",
  "RateLimitError",
  "ServerError",
  "TokenError",
  "TransportError",
  "VERSION",
  "ValidationError",
  "verifyWithJwks",
];

function files(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}

describe("package", () => {
  test("the committed dist/ is what `npm run build` makes of src/", () => {
    const fresh = join(scratch, "dist");
    execFileSync(process.execPath, [join(root, "scripts", "build.mjs"), "--out", fresh], { stdio: "pipe" });
    const committed = join(root, "dist");
    assert.deepEqual(files(committed), files(fresh), "dist/ file list is stale: run `npm run build`");
    for (const name of files(fresh)) {
      const want = readFileSync(join(fresh, name), "utf8");
      assert.equal(readFileSync(join(committed, name), "utf8"), want, `dist/${name} is stale: run \`npm run build\``);
    }
  });

  test("the typings accept the seed's usage and refuse its mistakes (test/types/usage.ts)", () => {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    execFileSync(process.execPath, [tsc, "-p", join(root, "test", "types", "tsconfig.json")], { stdio: "pipe" });
  });

  test("sources, tests and scripts are formatted (`npm run format`)", () => {
    const prettier = join(root, "node_modules", "prettier", "bin", "prettier.cjs");
    execFileSync(process.execPath, [prettier, "--check", "."], { cwd: root, stdio: "pipe" });
  });

  test("VERSION is package.json's version", () => {
    assert.equal(esm.VERSION, manifest.version);
  });

  test("ESM and CommonJS entry points export the same, documented API", () => {
    assert.deepEqual(Object.keys(esm).sort(), API);
    const cjs = createRequire(import.meta.url)(join(root, "dist", "cjs", "index.js"));
    assert.deepEqual(Object.keys(cjs).sort(), API);
  });

  test("no runtime dependencies", () => {
    assert.deepEqual(Object.keys(manifest.dependencies ?? {}), []);
  });

  test("`npm install ./packages/sdk-node` in a fresh directory, then import and require by name", () => {
    const app = join(scratch, "app");
    mkdirSync(app);
    execFileSync("npm", ["init", "-y"], { cwd: app, stdio: "pipe" });
    execFileSync("npm", ["install", root, "--no-audit", "--no-fund", "--offline"], { cwd: app, stdio: "pipe" });
    writeFileSync(
      join(app, "check.mjs"),
      'import { AgentFirewall, RateLimitError } from "@agentfirewall/sdk";\n' +
        'const client = new AgentFirewall({ apiKey: "aaf_test_x", baseUrl: "http://127.0.0.1:9/api/" });\n' +
        "console.log(client.baseUrl, typeof RateLimitError);\n",
    );
    writeFileSync(
      join(app, "check.cjs"),
      'const { AgentFirewall } = require("@agentfirewall/sdk");\n' +
        'console.log(new AgentFirewall({ apiKey: "aaf_test_x" }).baseUrl);\n',
    );
    const run = (file) =>
      execFileSync(process.execPath, [file], { cwd: app, encoding: "utf8", env: { PATH: process.env.PATH } });
    assert.equal(run("check.mjs"), "http://127.0.0.1:9/api function\n");
    assert.equal(run("check.cjs"), "http://localhost:3000/api\n");
  });
});
