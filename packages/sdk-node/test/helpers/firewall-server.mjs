// A real TameFlare control plane for the integration tests: `python -m agentfirewall_server
// --port 0` on 127.0.0.1 with a fresh data dir; the port is read from uvicorn's log, the
// admin token from <data-dir>/admin.token. The Python interpreter is $AAF_TEST_PYTHON
// (the pytest wrapper passes its own), else `python3`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
const PORT_RE = /Uvicorn running on http:\/\/127\.0\.0\.1:(\d+)/;
const STARTUP_MS = 60_000;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

export class FirewallServer {
  /** @param {import("node:child_process").ChildProcess} child */
  constructor(child, dataDir) {
    this.child = child;
    this.dataDir = dataDir;
    this.log = "";
    this.url = "";
    this.apiUrl = "";
    this.adminToken = "";
    child.stdout.on("data", (chunk) => (this.log += chunk));
    child.stderr.on("data", (chunk) => (this.log += chunk));
  }

  /** Start a server and wait until `/api/health` answers. */
  static async start() {
    const dataDir = mkdtempSync(join(tmpdir(), "aaf-node-it-"));
    const python = process.env.AAF_TEST_PYTHON || "python3";
    const args = [
      "-m",
      "agentfirewall_server",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--log-level",
      "info",
    ];
    const child = spawn(python, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    const server = new FirewallServer(child, dataDir);
    // if this process dies without `stop()`, do not leave the server running
    process.once("exit", () => child.kill("SIGKILL"));
    try {
      await server.#waitForPort();
      await server.#waitHealthy();
      server.adminToken = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  async #waitForPort() {
    const deadline = Date.now() + STARTUP_MS;
    while (Date.now() < deadline) {
      const found = PORT_RE.exec(this.log);
      if (found) {
        this.url = `http://127.0.0.1:${found[1]}`;
        this.apiUrl = `${this.url}/api`;
        return;
      }
      if (this.child.exitCode !== null) throw new Error(`server exited at startup:\n${this.log}`);
      await sleep(50);
    }
    throw new Error(`server did not start within ${STARTUP_MS} ms:\n${this.log}`);
  }

  async #waitHealthy() {
    const deadline = Date.now() + STARTUP_MS;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.apiUrl}/health`)).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`server never became healthy:\n${this.log}`);
  }

  /** An admin API call; throws unless it answers 2xx. */
  async admin(method, path, body) {
    const response = await fetch(`${this.apiUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.adminToken}`, "Content-Type": "application/json" },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Register an agent with a unique name; returns `{ name, key }`. */
  async agent(prefix = "node", fields = {}) {
    const name = `${prefix}-${Math.random().toString(16).slice(2, 12)}`;
    const created = await this.admin("POST", "/v1/agents", {
      name,
      environment: "test",
      rate_limit_per_minute: 100_000,
      ...fields,
    });
    return { name, key: created.api_key };
  }

  /** A policy scoped to `agent` with one rule deciding `decision` for `actionType`. */
  async rule(agent, actionType, decision, reason) {
    const risk = decision === "deny" ? 90 : 70;
    const document = [
      `name: ${agent}-${decision}-${Math.random().toString(16).slice(2, 8)}`,
      `scope: {action_types: ["*"], agents: [${agent}]}`,
      "rules:",
      `  - name: ${decision}-rule`,
      `    conditions: {all: [{field: action_spec.type, operator: equals, value: ${actionType}}]}`,
      `    decision: ${decision}`,
      `    reason: ${reason}`,
      `    risk_score: ${risk}`,
    ].join("\n");
    return this.admin("POST", "/v1/policies", { document });
  }

  /** Wait (bounded) for `agent`'s next pending approval, then approve or deny it. */
  async decideNext(agent, verdict = "approve", timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const { approvals } = await this.admin("GET", "/v1/approvals?status=pending");
      const mine = approvals.find((a) => a.agent === agent);
      if (mine) return this.admin("POST", `/v1/approvals/${mine.id}/${verdict}`, { note: "decided by a node test" });
      await sleep(50);
    }
    throw new Error(`no pending approval for \`${agent}\` within ${timeoutMs} ms`);
  }

  /** SIGTERM (SIGKILL after 15 s), then remove the data dir. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((done) => this.child.once("exit", done));
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
