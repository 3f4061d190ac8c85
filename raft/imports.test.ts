// The dependency rule of DESIGN.md §2: raft/ is a library that knows nothing of clinics. Nothing
// under raft/ may import from src/ (the services), only the other way round.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return tsFiles(p);
    return p.endsWith(".ts") ? [p] : [];
  });
}

describe("raft/ dependencies", () => {
  it("no file under raft/ imports from src/", () => {
    const offenders: string[] = [];
    for (const f of tsFiles("raft")) {
      for (const m of readFileSync(f, "utf8").matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)) {
        const target = path.resolve(path.dirname(f), m[1]!);
        if (m[1]!.startsWith(".") && target.startsWith(path.resolve("src"))) offenders.push(`${f} → ${m[1]}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
