// Guards raft/core's purity: no clock, no ambient randomness, no timers, no process access, and no
// imports from outside raft/core (biome.json already forbids I/O modules there; this also catches
// globals, which an import rule cannot see). Test files are exempt: they may import vitest.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const coreDir = join(import.meta.dirname, "..", "core");
const forbidden = ["Date.now", "Math.random", "setTimeout", "setInterval", "performance.now", "process."];

describe("raft/core purity", () => {
  const files = readdirSync(coreDir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));

  it("has modules to check", () => {
    expect(files.length).toBeGreaterThan(4);
  });

  for (const f of files) {
    it(`${f} uses no clock, randomness, timers or process, and imports only raft/core`, () => {
      const src = readFileSync(join(coreDir, f), "utf8");
      // Comments may mention the forbidden names (to explain why they are not used).
      const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
      for (const word of forbidden) expect(code.includes(word), `${f} mentions ${word}`).toBe(false);
      const imports = [...code.matchAll(/(?:import|export)[^;]*?from\s+["']([^"']+)["']/g)].map((m) => m[1]!);
      const dynamic = [...code.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
      for (const spec of [...imports, ...dynamic]) {
        expect(spec.startsWith("./") && !spec.includes(".."), `${f} imports ${spec}`).toBe(true);
      }
    });
  }
});
