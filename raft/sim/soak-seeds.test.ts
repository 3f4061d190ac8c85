// Seeds that soaks found failing, replayed on every run so what they found stays fixed. Each is a
// whole simulation at the default 2,000 steps (a few milliseconds).
import { describe, expect, it } from "vitest";
import { runSeed } from "./campaign.ts";

describe("seeds found by soaks", () => {
  it("6325669: a lagging replica applying an older configuration does not shut down a learner added since", () => {
    // The harness used to shut n7 down as "removed" when n5, replaying its log after a restart,
    // applied the configuration from before n7 was added; n7 was then promoted and kept down for
    // good, and the healed cluster could not commit (a false liveness violation).
    const r = runSeed(6325669, 2000);
    expect(r.violation).toBeUndefined();
    expect(r.ok).toBe(true);
  });
});
