// The logger writes standard output asynchronously: lines still queued when a process exits (a
// fatal line right before process.exit, as main.ts does on a crash) must reach the output.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const loggerPath = path.resolve(import.meta.dirname, "../src/shared/logger.ts");

describe("logger on standard output", () => {
  it("keeps every line queued before process.exit, the last fatal one included", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "medisync-logger-"));
    const script = path.join(dir, "exit.ts");
    writeFileSync(
      script,
      `import { createLogger } from ${JSON.stringify(loggerPath)};
const log = createLogger({ service: "exit-test" });
for (let i = 0; i < 5000; i++) log.info({ i }, "line");
log.fatal({ event: "last" }, "fatal before exit");
process.exit(3);
`,
    );
    const proc = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (c) => resolve(c)));
    const closed = new Promise((r) => proc.stdout.on("close", r));
    const [code] = await Promise.all([exited, closed]);
    expect(code).toBe(3);
    const lines = out
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { i?: number; event?: string; level: string });
    expect(lines).toHaveLength(5001);
    expect(lines.slice(0, 5000).map((l) => l.i)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(lines[5000]).toMatchObject({ level: "fatal", event: "last" });
  });
});
