// Snapshot transfer stays linear in the snapshot's size under message loss: a follower in snapshot
// state has one chunk in flight, retransmitted only on timeout, so duplicates and retransmissions
// never start chains of their own. Followers crash (so they need snapshots), drop rates are real,
// chunks are tiny (so a snapshot is dozens of chunks), and every other invariant is checked too.
import { describe, expect, it } from "vitest";
import { runSimulation } from "./cluster.ts";
import { paramsForSeed, type SimParams } from "./params.ts";

function lossyTransfers(seed: number, dropRate: number): SimParams {
  return {
    ...paramsForSeed(seed, { nodes: 3 }),
    electionFocus: false,
    readFocus: false,
    figure8Focus: false,
    checkQuorum: true,
    heartbeatTicks: 1,
    dropRate,
    duplicateRate: 0.01,
    reorderRate: 0,
    partitions: [],
    crashes: true,
    pauses: false,
    crashMidReadyRate: 0,
    bounceRate: 0,
    leaderCrashRate: 0,
    campaignStorms: false,
    readerBounceRate: 0,
    transfers: false,
    membership: false,
    clients: 3,
    readRate: 0,
    snapshotEveryEntries: 5,
    snapshotChunkBytesMax: 2,
    faultEveryMs: 400,
  };
}

describe("snapshot transfer under message loss", () => {
  for (const dropRate of [0.05, 0.15]) {
    it(`sends at most 2 chunk messages per chunk needed (drop rate ${dropRate}, 20 seeds)`, () => {
      let sent = 0;
      let needed = 0;
      let installed = 0;
      for (let seed = 1; seed <= 20; seed++) {
        const r = runSimulation({ params: lossyTransfers(seed, dropRate), steps: 2_000 });
        expect(r.violation, `seed ${seed}`).toBeUndefined();
        sent += r.stats.snapChunksSent ?? 0;
        needed += r.stats.snapChunksNeeded ?? 0;
        installed += r.stats.snapshotInstalled ?? 0;
      }
      console.log(
        `[snapshot transfer, drop ${dropRate}] ${installed} installed, ${needed} chunks needed, ${sent} sent`,
      );
      expect(installed).toBeGreaterThan(5);
      expect(needed).toBeGreaterThan(40 * installed);
      expect(sent).toBeLessThanOrEqual(2 * needed);
    });
  }
});
