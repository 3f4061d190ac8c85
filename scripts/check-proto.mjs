// Fails when proto/ is not lint-clean or when src/gen/ is out of date with proto/:
// regenerates into a temporary folder and compares byte for byte.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const buf = join("node_modules", ".bin", "buf");
execFileSync(buf, ["lint"], { stdio: "inherit" });

// Each template and the folder its code is committed in.
const targets = [
  { template: "buf.gen.yaml", dir: join("src", "gen") },
  { template: "buf.gen.raft.yaml", dir: join("raft", "gen") },
];
const list = (dir) =>
  readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? list(p) : [p];
  });

const out = mkdtempSync(join(tmpdir(), "medisync-gen-"));
try {
  const stale = [];
  for (const { template, dir } of targets) {
    execFileSync(buf, ["generate", "--template", template, "-o", out], { stdio: "inherit" });
    const freshDir = join(out, dir);
    const fresh = new Map(list(freshDir).map((p) => [relative(freshDir, p), p]));
    const committed = new Map(list(dir).map((p) => [relative(dir, p), p]));
    for (const [name, p] of fresh) {
      const mine = committed.get(name);
      if (!mine || readFileSync(mine, "utf8") !== readFileSync(p, "utf8")) stale.push(join(dir, name));
    }
    for (const name of committed.keys())
      if (!fresh.has(name)) stale.push(`${join(dir, name)} (no longer generated)`);
  }
  if (stale.length > 0) {
    console.error(`generated code is out of date with proto/ (run: npm run proto:gen): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log("proto: lint clean, src/gen and raft/gen up to date");
} finally {
  rmSync(out, { recursive: true, force: true });
}
