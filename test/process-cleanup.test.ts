// A process that starts MediSync processes through test/support/process.ts (a test file, a
// benchmark) and dies of an error must not leave them running: a benchmark killed by a closed pipe
// once left 52 replicas and gateways behind, holding ports, with init as their parent.
import { spawn } from "node:child_process";
import { expect, it } from "vitest";
import { isAlive } from "./support/process.ts";

it("the children of a parent that dies of an uncaught exception are killed with it", async () => {
  const parent = spawn(process.execPath, ["--import", "tsx", "test/fixtures/orphan-child.ts"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  parent.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => parent.once("exit", (code) => resolve(code)));
  expect(await exited).not.toBe(0);
  const pid = Number(/child (\d+)/.exec(out)?.[1]);
  expect(pid).toBeGreaterThan(0);
  // SIGKILL is delivered before kill() returns; the zombie is reaped by init at once.
  const deadline = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const alive = isAlive(pid);
  if (alive) process.kill(pid, "SIGKILL");
  expect(alive).toBe(false);
}, 30_000);
