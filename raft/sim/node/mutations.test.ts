// Proves the real-node simulator bites: each rule of the node (and of its log) broken on purpose
// must be caught by an invariant within a bounded number of seeds of the durability profile (slow
// disks, the replica that just acknowledged a write crashing at that instant). The seeds at which
// each is caught are in docs/raft.md, printed by `npm run sim -- --driver node --mutants`.
import { describe, expect, it } from "vitest";
import type { NodeSimBugs } from "./node-cluster.ts";
import { runNodeCampaign } from "./run.ts";

const seedsMax = 300;

async function firstCaught(bugs: NodeSimBugs, o: { clientRestarts?: boolean } = {}) {
  const c = await runNodeCampaign(1, seedsMax, { ackCrashFocus: true, bugs, stopAtFirst: true, ...o });
  const f = c.failures[0];
  console.log(`[node mutation ${Object.keys(bugs)[0]}] caught at seed ${f?.seed}: ${f?.violation}`);
  return f;
}

describe(`node-level broken variants are caught within ${seedsMax} seeds`, { timeout: 120_000 }, () => {
  it("the leader counts its own entry before its write is durable", async () => {
    const f = await firstCaught({ leaderCountsUndurable: true });
    expect(f?.violation).toMatch(
      /stale read|state machine safety|snapshot contents differ|acknowledged write lost|acknowledged/,
    );
  });

  it("a replica acknowledges (and votes) before its write is durable", async () => {
    const f = await firstCaught({ ackBeforeDurable: true });
    expect(f).toBeDefined();
  });

  it("ReadIndex served before an entry of the leader's term commits", async () => {
    const f = await firstCaught({ readBeforeTermCommit: true });
    expect(f?.violation).toMatch(/stale read/);
  });

  it("a commit index persisted beyond the durable log", async () => {
    const f = await firstCaught({ commitBeyondDurable: true });
    expect(f?.violation).toMatch(/commit beyond/);
  });

  it("the log compacted past what the snapshot store holds", async () => {
    const f = await firstCaught({ compactBeforeSnapshotSaved: true });
    expect(f?.violation).toMatch(/compacted|snapshot|stopped on its own invariant/);
  });

  it("the state machine answers reads from a view that lags what it applied", async () => {
    const f = await firstCaught({ fsmReadsLag: true });
    expect(f?.violation).toMatch(/stale read by value/);
  });

  it("with clients restarting mid-write, a reused (client, seq) answered with the first command's result", async () => {
    const f = await firstCaught({ fsmDedupIgnoresPayload: true }, { clientRestarts: true });
    expect(f?.violation).toMatch(/acknowledged .* but .* was applied there/);
  });

  it("the correct node passes the durability profile's seeds", async () => {
    const c = await runNodeCampaign(1, 100, { ackCrashFocus: true });
    expect(c.failures.map((f) => `${f.seed}: ${f.violation}`)).toEqual([]);
  });
});
