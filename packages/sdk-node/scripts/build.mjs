// Build dist/: ESM (dist/esm) and CommonJS (dist/cjs), each with .d.ts, from src/.
// Usage: node scripts/build.mjs [--out <dir>]   (default: ./dist; tests build elsewhere to
// check that the committed dist/ is what the sources compile to).
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const flag = process.argv.indexOf("--out");
const out = flag === -1 ? join(root, "dist") : resolve(process.argv[flag + 1]);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

function compile(project, outDir) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project), "--outDir", outDir], { stdio: "inherit" });
}

rmSync(out, { recursive: true, force: true });
compile("tsconfig.json", join(out, "esm"));
compile("tsconfig.cjs.json", join(out, "cjs"));
mkdirSync(join(out, "cjs"), { recursive: true });
writeFileSync(join(out, "cjs", "package.json"), '{\n  "type": "commonjs"\n}\n');
