// Fails when proto/ is not lint-clean or when src/gen/ is out of date with proto/:
// regenerates into a temporary folder and compares byte for byte.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const buf = join("node_modules", ".bin", "buf");
execFileSync(buf, ["lint"], { stdio: "inherit" });

const out = mkdtempSync(join(tmpdir(), "medisync-gen-"));
try {
  execFileSync(buf, ["generate", "-o", out], { stdio: "inherit" });
  const list = (dir) =>
    readdirSync(dir).flatMap((n) => {
      const p = join(dir, n);
      return statSync(p).isDirectory() ? list(p) : [p];
    });
  const fresh = new Map(list(join(out, "src", "gen")).map((p) => [relative(join(out, "src", "gen"), p), p]));
  const committed = new Map(list(join("src", "gen")).map((p) => [relative(join("src", "gen"), p), p]));
  const stale = [];
  for (const [name, p] of fresh) {
    const mine = committed.get(name);
    if (!mine || readFileSync(mine, "utf8") !== readFileSync(p, "utf8")) stale.push(name);
  }
  for (const name of committed.keys()) if (!fresh.has(name)) stale.push(`${name} (no longer generated)`);
  if (stale.length > 0) {
    console.error(`src/gen is out of date with proto/ (run: npm run proto:gen): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log("proto: lint clean, src/gen up to date");
} finally {
  rmSync(out, { recursive: true, force: true });
}
