// The campaign plans: the matrix holds every workload under every fault its system takes, a soak
// covers the matrix before it repeats a cell, and a plan replays from its seed.
import { describe, expect, it } from "vitest";
import { campaignPlan, matrix, soakPlan } from "./campaign.ts";
import { clusterFaultKinds, redisFaultKinds } from "./nemesis.ts";

const cell = (x: { workload: string; faults: string[] }) => `${x.workload}/${x.faults.join("+")}`;

describe("campaign plans", () => {
  it("the matrix: every cluster fault on stock and bank, every Redis fault on booking", () => {
    const cells = new Set(matrix().map(cell));
    for (const k of clusterFaultKinds) {
      expect(cells.has(`stock/${k}`), k).toBe(true);
      expect(cells.has(`bank/${k}`), k).toBe(true);
    }
    for (const k of redisFaultKinds) expect(cells.has(`booking/${k}`), k).toBe(true);
  });

  it("a soak covers the whole matrix in its first pass, with distinct seeds, and replays from its seed", () => {
    const m = matrix().length;
    const plan = soakPlan(m + 5, 7, 20_000);
    expect(new Set(plan.slice(0, m).map(cell)).size).toBe(m);
    expect(new Set(plan.map((p) => p.seed)).size).toBe(plan.length);
    expect(soakPlan(m + 5, 7, 20_000)).toEqual(plan);
    expect(soakPlan(m + 5, 8, 20_000).map(cell)).not.toEqual(plan.map(cell));
  });

  it("smoke: six runs over all three workloads; an unknown campaign name is refused", () => {
    const smoke = campaignPlan("smoke", 1, 15_000)!;
    expect(smoke).toHaveLength(6);
    expect(new Set(smoke.map((p) => p.workload))).toEqual(new Set(["stock", "bank", "booking"]));
    expect(campaignPlan("full", 1, 15_000)).toHaveLength(matrix().length);
    expect(campaignPlan("nope", 1, 15_000)).toBeUndefined();
  });
});
