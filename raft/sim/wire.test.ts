// Runs seeds with every message encoded and decoded by the real transport codec
// (raft/transport/codec.ts, v8 structured serialization), as the gRPC transport will: messages
// must be plain data, and no invariant may depend on sharing objects between replicas.
import { expect, it } from "vitest";
import { failureReport, runCampaign } from "./campaign.ts";

it("100 seeds pass with messages through the wire codec", () => {
  const r = runCampaign({ from: 500_001, seeds: 100, steps: 2_000, wireCodec: true });
  expect(r.failures.length, r.failures.map((f) => failureReport(f, 2_000)).join("\n")).toBe(0);
  expect(r.committed).toBeGreaterThan(500);
});
