// The port picker of the process tests: ports a test restarts a process on must stay free while it
// is down, so none may come from the kernel's ephemeral range (any outgoing connection can take one
// of those as its source port: a restarted replica then fails with EADDRINUSE).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { freePortRange } from "./process.ts";

describe("freePortRange", () => {
  it("never hands out a port in the kernel's ephemeral range", async () => {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    for (let i = 0; i < 300; i++) {
      const base = await freePortRange(6);
      expect(base + 6 - 1).toBeLessThan(low);
      expect(base).toBeGreaterThanOrEqual(1_024);
    }
  });
});
