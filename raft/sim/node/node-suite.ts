// Owns the shared body of the real-node simulator's test files: a range of seeds in chunks, each
// failure reported with its violation, the replicas' last log lines and the command that replays it.
import { afterAll, describe, expect, it } from "vitest";
import { addCounts, emptyCounts, nodeReplayCommand, runNodeCampaign } from "./run.ts";

export function nodeSimSuite(
  nodes: 3 | 5,
  from: number,
  seeds: number,
  chunk = 50,
  o: { clientRestarts?: boolean; bandwidth?: boolean } = {},
): void {
  const what =
    (o.clientRestarts ? ", clients restarting mid-write" : "") +
    (o.bandwidth ? ", links with a bandwidth and snapshots in small chunks" : "");
  describe(`real-node simulator, ${nodes} nodes${what}, seeds ${from}..${from + seeds - 1}`, () => {
    const t0 = performance.now();
    const total = emptyCounts();
    afterAll(() => {
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.log(`[node sim ${nodes} nodes] ${seeds} seeds, ${JSON.stringify(total)}, ${s} s wall`);
    });
    for (let start = from; start < from + seeds; start += chunk) {
      const n = Math.min(chunk, from + seeds - start);
      it(`seeds ${start}..${start + n - 1}: every invariant holds, and the healed cluster converges`, async () => {
        const c = await runNodeCampaign(start, n, { nodes, ...o });
        addCounts(total, c);
        const report = c.failures
          .map(
            (f) =>
              `seed ${f.seed}: ${f.violation}\n  replay: ${nodeReplayCommand(f.seed, { nodes, ...o })}\n  ${f.trace.slice(-15).join("\n  ")}`,
          )
          .join("\n\n");
        expect(c.failures.length, report).toBe(0);
        // The faults did happen: replicas crashed, and some crashes lost writes never synced.
        expect(c.crashes).toBeGreaterThan(0);
        expect(c.acked).toBeGreaterThan(0);
      });
    }
    it("the seeds reached a leader crashing within its first Ready (recorded, not just possible)", () => {
      expect(total.leaderFirstReadyCrashes).toBeGreaterThan(0);
    });
    if (o.bandwidth)
      it("snapshot transfers cost at most 2 chunk messages per chunk they needed", () => {
        expect(total.snapshotsInstalled).toBeGreaterThan(0);
        expect(total.snapChunksNeeded).toBeGreaterThan(5 * total.snapshotsInstalled);
        expect(total.snapChunksSent).toBeLessThanOrEqual(2 * total.snapChunksNeeded);
      });
    if (o.clientRestarts)
      it("clients restarted and reused seqs, and the state machine refused the reuses", () => {
        expect(total.clientRestarts).toBeGreaterThan(0);
        expect(total.reuseRefusals).toBeGreaterThan(0);
      });
  });
}
