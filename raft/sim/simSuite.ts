// Owns the shared body of the simulator test files: a range of seeds at a fixed size, split into
// chunks (progress is visible and a failure names its seed and replay command), timed.
import { afterAll, describe, expect, it } from "vitest";
import { defaultSteps, failureReport, runCampaign } from "./campaign.ts";

export const simSteps = defaultSteps;

export function simSuite(nodes: 3 | 5, from: number, seeds: number, chunk = 100): void {
  describe(`simulator, ${nodes} nodes, seeds ${from}..${from + seeds - 1} × ${simSteps} steps`, () => {
    const t0 = performance.now();
    let steps = 0;
    let commits = 0;
    let maxHeal = 0;
    afterAll(() => {
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.log(
        `[sim ${nodes} nodes] ${seeds} seeds, ${steps} steps, ${commits} commits, ` +
          `max heal→commit ${maxHeal} virtual ms, ${s} s wall`,
      );
    });
    for (let start = from; start < from + seeds; start += chunk) {
      const n = Math.min(chunk, from + seeds - start);
      it(`seeds ${start}..${start + n - 1}: every invariant holds after every step`, () => {
        const r = runCampaign({ from: start, seeds: n, steps: simSteps, overrides: { nodes } });
        steps += r.totalSteps;
        commits += r.committed;
        maxHeal = Math.max(maxHeal, r.maxHealToCommitMs);
        const report = r.failures.map((f) => failureReport(f, simSteps, { nodes })).join("\n\n");
        expect(r.failures.length, report).toBe(0);
      });
    }
  });
}
