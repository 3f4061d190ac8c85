// The harness's mutation test: each failpoint (src/shared/failpoints.ts) plants one bug in the
// system, and a short `stock` run with the nemesis that exposes it (jepsen-lite/mutations.ts) must
// end `fail`. A harness that stopped catching one of them — a checker that accepts too much, a
// nemesis that no longer bites, a workload that no longer looks where the bug shows — fails here.
// The runs go in sequence in this one file, so npm test pays for them once (docs/jepsen-lite.md
// gives the measured time).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mutationCases, runMutation } from "./mutations.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "jepsen-mutation-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("jepsen-lite catches every failpoint", { timeout: 90_000 }, () => {
  it("has a case for every failpoint", async () => {
    const { failpointNames } = await import("../src/shared/failpoints.ts");
    expect(mutationCases.map((c) => c.failpoint).sort()).toEqual([...failpointNames].sort());
  });

  // The control: reads at each replica is the one workload knob the campaign test does not run, so
  // its case runs once with the failpoint off and must check ok (a harness failing everything would
  // pass the cases below).
  it("control: the read-local case with the failpoint off checks ok", async () => {
    const c = mutationCases.find((m) => m.failpoint === "read-local")!;
    // Every run must check ok; and in at least one of up to three runs the reads really went to
    // every replica and were answered there, several at each. On a badly overloaded machine a 5 s
    // run can see its reads time out (a clean-clone CI once got none answered), which proves nothing
    // either way, so that run is repeated rather than counted.
    let covered: Map<string, number> | undefined;
    for (let attempt = 0; attempt < 3 && !covered; attempt++) {
      const r = await runMutation(c, root, false);
      for (const f of readdirSync(r.dir).filter((x) => x.endsWith(".log"))) {
        expect(readFileSync(path.join(r.dir, f), "utf8"), f).not.toContain("failpoints on");
      }
      expect(r.faults.map((f) => f.kind)).toEqual([c.fault]);
      expect(r.check.failure?.explanation).toBeUndefined();
      expect(r.valid).toBe("ok");
      const perReplica = new Map<string, number>();
      for (const op of r.history.filter((o) => o.input.f === "read" && o.output?.ok)) {
        const at = "replica" in op ? String(op.replica) : "?";
        perReplica.set(at, (perReplica.get(at) ?? 0) + 1);
      }
      const all = ["inv-1", "inv-2", "inv-3"];
      if (all.every((id) => (perReplica.get(id) ?? 0) >= 5) && perReplica.size === 3) covered = perReplica;
      else console.log(`[control] run ${attempt + 1}: reads answered ${JSON.stringify([...perReplica])}`);
    }
    expect(covered, "reads answered at every replica in one of three runs").toBeDefined();
  }, 240_000);

  for (const c of mutationCases) {
    it(`${c.failpoint} under ${c.fault}: fail`, async () => {
      const r = await runMutation(c, root);
      // The bug was really on in every replica process of the run (restarts included)...
      const logs = readdirSync(r.dir).filter((f) => f.endsWith(".log"));
      expect(logs.length).toBeGreaterThanOrEqual(3);
      for (const f of logs) expect(readFileSync(path.join(r.dir, f), "utf8"), f).toContain("failpoints on");
      // ...the fault happened, and the checker caught the bug and said why.
      expect(r.faults.map((f) => f.kind)).toEqual(Array.from({ length: c.windows ?? 1 }, () => c.fault));
      expect(r.check.result, c.why).toBe("fail");
      expect(r.valid).toBe("fail");
      expect(r.check.failure!.explanation).toMatch(/had to take effect before it returned, and cannot/);
    });
  }
});
