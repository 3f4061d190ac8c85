// Proves the suite bites: each deliberately broken variant (three in the core, three in the driver)
// must be caught by a simulator invariant within a bounded number of seeds. The commit-rule bug,
// which the per-term no-op masks in ordinary runs, is caught twice: by the scripted Figure 8
// schedule and by the simulator's Figure 8 profile.
import { describe, expect, it } from "vitest";
import { figure8Scenario } from "../core/testing.ts";
import { runCampaign } from "./campaign.ts";

const seedsMax = 200;
const steps = 2_000;

function firstCaught(o: Parameters<typeof runCampaign>[0]) {
  const r = runCampaign(o);
  return { seeds: r.seeds, failure: r.failures[0] };
}

describe("broken variants are caught", () => {
  it("core countOldTermEntries (§5.4.2): the Figure 8 schedule loses a committed entry", () => {
    const r = figure8Scenario({ testOnlyBugs: { countOldTermEntries: true } });
    expect(r.violation).toMatch(/applied term \d+ at 2, another node term \d+/);
    expect(figure8Scenario().violation).toBeUndefined();
  });

  it(`core countOldTermEntries (§5.4.2): the simulator's Figure 8 profile catches it within ${seedsMax} seeds`, () => {
    // Random campaign with the targeted profile: 5 nodes, one entry per append, leaders crashing
    // right after they win or advance their commit index (before sending), PreVote/CheckQuorum off.
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps: 4_000,
      overrides: { figure8Focus: true },
      coreBugs: { countOldTermEntries: true },
      stopAtFirst: true,
    });
    console.log(`[mutation countOldTermEntries] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`);
    expect(r.failure?.violation).toMatch(/state machine safety|leader completeness|log matching/);
  });

  it(`core voteWithoutUpToDateCheck: a simulator invariant fails within ${seedsMax} seeds`, () => {
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps,
      coreBugs: { voteWithoutUpToDateCheck: true },
      stopAtFirst: true,
    });
    console.log(
      `[mutation voteWithoutUpToDateCheck] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`,
    );
    expect(r.failure?.violation).toMatch(
      /leader completeness|state machine safety|log matching|RaftInvariant/,
    );
  });

  it(`driver replyBeforePersist: a simulator invariant fails within ${seedsMax} seeds`, () => {
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps,
      driverBugs: { replyBeforePersist: true },
      stopAtFirst: true,
    });
    console.log(`[mutation replyBeforePersist] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`);
    expect(r.failure).toBeDefined();
  });

  it(`driver forgetVoteOnRestart: election safety fails within ${seedsMax} seeds`, () => {
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps,
      driverBugs: { forgetVoteOnRestart: true },
      stopAtFirst: true,
    });
    console.log(`[mutation forgetVoteOnRestart] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`);
    expect(r.failure?.violation).toMatch(/election safety/);
  });

  it(`core readIndexWithoutQuorum (§6.4): a stale read is caught within ${seedsMax} read-focused seeds`, () => {
    // Targeted profile: isolated leaders without CheckQuorum, many clients, mostly reads.
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps,
      overrides: { readFocus: true },
      coreBugs: { readIndexWithoutQuorum: true },
      stopAtFirst: true,
    });
    console.log(
      `[mutation readIndexWithoutQuorum] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`,
    );
    expect(r.failure?.violation).toMatch(/stale read/);
  });

  it(`driver reuseReadContextsAfterRestart: a stale read is caught within ${seedsMax} reader-bounce seeds`, () => {
    // Targeted profile: followers serve reads and crash as the leader answers them; the answer
    // reaches the restarted node once it has started as many reads as before.
    const r = firstCaught({
      from: 1,
      seeds: seedsMax,
      steps,
      overrides: { readFocus: true, readerBounces: true },
      driverBugs: { reuseReadContextsAfterRestart: true },
      stopAtFirst: true,
    });
    console.log(
      `[mutation reuseReadContextsAfterRestart] caught at seed ${r.failure?.seed}: ${r.failure?.violation}`,
    );
    expect(r.failure?.violation).toMatch(/stale read/);
  });

  it("the correct core and driver pass the same seeds the mutants fail on", () => {
    const r = runCampaign({ from: 1, seeds: 50, steps });
    expect(r.failures).toEqual([]);
    const reads = runCampaign({ from: 1, seeds: 30, steps, overrides: { readFocus: true } });
    expect(reads.failures).toEqual([]);
    const bounces = runCampaign({
      from: 1,
      seeds: 30,
      steps,
      overrides: { readFocus: true, readerBounces: true },
    });
    expect(bounces.failures).toEqual([]);
    const fig8 = runCampaign({ from: 1, seeds: 30, steps: 4_000, overrides: { figure8Focus: true } });
    expect(fig8.failures).toEqual([]);
  });
});
