#!/usr/bin/env node
// `npx tf ...`: run the Python `tf` command line (agentfirewall_proxy.cli) with every argument,
// stdio inherited, signals forwarded and the exit code (or the ending signal) passed on.
//
// Which Python program:
//   1. TF_PYTHON set: `$TF_PYTHON -m agentfirewall_proxy.cli` and nothing else (explicit wins);
//   2. a `tf` on PATH that is the Python console script (pip's, naming agentfirewall_proxy);
//   3. `python3 -m agentfirewall_proxy.cli` (`python` on Windows).
// When none can run, say how to install it and exit 127.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const MODULE = "agentfirewall_proxy.cli";
const PIP = "pip install 'tameflare[proxy]'";
const MISSING =
  "tf: the TameFlare command line (Python package `tameflare`) is not installed.\n" +
  `Install it with:  ${PIP}\n` +
  "(needs Python 3.11+; set TF_PYTHON=/path/to/python to pick the interpreter)\n";
const EXIT_MISSING = 127;
const WINDOWS = process.platform === "win32";

// `-m MODULE`, but a missing package prints the install command instead of a traceback.
const BOOTSTRAP = [
  "import importlib.util, runpy, sys",
  "try:",
  `    found = importlib.util.find_spec(${JSON.stringify(MODULE)}) is not None`,
  "except ImportError:",
  "    found = False",
  "if not found:",
  `    sys.stderr.write(${JSON.stringify(MISSING)})`,
  `    sys.exit(${EXIT_MISSING})`,
  "sys.argv[0] = 'tf'",
  `runpy.run_module(${JSON.stringify(MODULE)}, run_name='__main__', alter_sys=True)`,
].join("\n");

function isPythonTf(file) {
  let real;
  try {
    real = fs.realpathSync(file);
    if (real === fs.realpathSync(__filename)) return false;
    const fd = fs.openSync(real, "r");
    try {
      const head = Buffer.alloc(8192);
      const n = fs.readSync(fd, head, 0, head.length, 0);
      return head.subarray(0, n).toString("latin1").includes("agentfirewall_proxy");
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

function findPythonTf() {
  const names = WINDOWS ? ["tf.exe"] : ["tf"];
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (!dir) continue;
    for (const name of names) {
      const file = path.join(dir, name);
      if (isPythonTf(file)) return file;
    }
  }
  return null;
}

function command(args) {
  const python = process.env.TF_PYTHON;
  if (python) return [python, ["-c", BOOTSTRAP, ...args]];
  const tf = findPythonTf();
  if (tf) return [tf, args];
  return [WINDOWS ? "python" : "python3", ["-c", BOOTSTRAP, ...args]];
}

function forwardSignals(child) {
  // A terminal's Ctrl-C already reaches the whole foreground process group (Python included);
  // forwarding it too would be a second Ctrl-C, which makes `tf up` skip its orderly shutdown.
  const signals = ["SIGTERM", "SIGHUP"];
  if (!process.stdin.isTTY) signals.push("SIGINT");
  else process.on("SIGINT", () => {});
  for (const sig of signals) {
    process.on(sig, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    });
  }
  return signals;
}

function main() {
  const [file, args] = command(process.argv.slice(2));
  const child = spawn(file, args, { stdio: "inherit" });
  const signals = forwardSignals(child);
  child.on("error", (err) => {
    if (err.code === "ENOENT" || err.code === "EACCES") {
      process.stderr.write(`tf: cannot run \`${file}\` (${err.code}).\n${MISSING}`);
      process.exit(EXIT_MISSING);
    }
    process.stderr.write(`tf: cannot run \`${file}\`: ${err.message}\n`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      for (const sig of [...signals, "SIGINT"]) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(128 + (os.constants.signals[signal] || 0)), 100);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
}

main();
