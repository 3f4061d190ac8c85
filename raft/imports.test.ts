// The dependency rules of DESIGN.md §2: raft/ is a library that knows nothing of clinics. Nothing
// under raft/ may import from src/ (the services), only the other way round, and then only through
// the library's front door (raft/index.ts); services talk through proto/, never by importing each
// other (src/shared, src/gen and the launcher src/cli are not services).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

function imports(f: string): string[] {
  return [...readFileSync(f, "utf8").matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)]
    .map((m) => m[1]!)
    .filter((m) => m.startsWith("."))
    .map((m) => path.resolve(path.dirname(f), m));
}

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

  it("src/ reaches raft/ only through raft/index.ts", () => {
    const front = path.resolve("raft/index.ts");
    const raftDir = path.resolve("raft") + path.sep;
    const offenders = tsFiles("src").flatMap((f) =>
      imports(f)
        .filter((t) => t.startsWith(raftDir) && t !== front)
        .map((t) => `${f} → ${path.relative(".", t)}`),
    );
    expect(offenders).toEqual([]);
  });

  it("no service imports another service", () => {
    const notServices = new Set(["shared", "gen", "cli"]);
    const offenders: string[] = [];
    for (const f of tsFiles("src")) {
      const own = path.relative("src", f).split(path.sep)[0]!;
      if (notServices.has(own)) continue;
      for (const t of imports(f)) {
        const rel = path.relative(path.resolve("src"), t);
        if (rel.startsWith("..")) continue;
        const other = rel.split(path.sep)[0]!;
        if (other !== own && !notServices.has(other)) offenders.push(`${f} → src/${rel}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
