// Builds the pulse binary from this repository once, then runs the test
// files one after another with Node's test runner (each starts its own
// `pulse serve` processes on free ports).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
let bin = process.env.PULSE_BIN;
let tmp;
if (!bin) {
  tmp = mkdtempSync(join(tmpdir(), "pulse-client-ts-"));
  bin = join(tmp, "pulse");
  console.log(`building ${bin} from ${repo}`);
  execFileSync("go", ["build", "-o", bin, "./cmd/pulse"], { cwd: repo, stdio: "inherit" });
}
const files = readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort().map((f) => join(here, f));
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...process.argv.slice(2), ...files], {
  stdio: "inherit",
  env: { ...process.env, PULSE_BIN: bin },
});
if (tmp) rmSync(tmp, { recursive: true, force: true });
process.exit(r.status ?? 1);
