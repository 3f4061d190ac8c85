// MEDISYNC_FAILPOINTS: off by default, names parsed and checked, an unknown one a configuration
// error naming the variable; and each failpoint switches exactly its own hook.
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";
import { enableFailpoints, failpointDocs, failpointNames, failpoints, raftFailpoints } from "./failpoints.ts";

afterEach(() => enableFailpoints([]));

describe("failpoints", () => {
  it("are off unless named", () => {
    expect(loadConfig({}).MEDISYNC_FAILPOINTS).toEqual([]);
    expect(loadConfig({ MEDISYNC_FAILPOINTS: "" }).MEDISYNC_FAILPOINTS).toEqual([]);
  });

  it("parse a comma-separated list, once each", () => {
    const cfg = loadConfig({ MEDISYNC_FAILPOINTS: " read-local, skip-dedup,read-local " });
    expect(cfg.MEDISYNC_FAILPOINTS).toEqual(["read-local", "skip-dedup"]);
  });

  it("refuse an unknown name, naming the variable and the known names", () => {
    let err: unknown;
    try {
      loadConfig({ MEDISYNC_FAILPOINTS: "read-local,read-stale" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe("MEDISYNC_FAILPOINTS");
    expect((err as Error).message).toContain("commit-without-quorum");
  });

  it("each has a sentence, and turns on only its own hook", () => {
    for (const name of failpointNames) expect(failpointDocs[name].length).toBeGreaterThan(40);
    enableFailpoints(["skip-dedup"]);
    expect(failpoints).toEqual({ readLocal: false, skipDedup: true });
    expect(raftFailpoints(["skip-dedup"])).toEqual({ commitWithoutQuorum: false, ackBeforeCommit: false });
    expect(raftFailpoints(["ack-before-commit", "commit-without-quorum"])).toEqual({
      commitWithoutQuorum: true,
      ackBeforeCommit: true,
    });
    enableFailpoints(["read-local"]);
    expect(failpoints).toEqual({ readLocal: true, skipDedup: false });
  });
});

describe("crashpoints and the medication retry window", () => {
  it("MEDISYNC_CRASHPOINTS names known crashpoints only", () => {
    expect(loadConfig({}).MEDISYNC_CRASHPOINTS).toEqual([]);
    expect(loadConfig({ MEDISYNC_CRASHPOINTS: "medication-after-record" }).MEDISYNC_CRASHPOINTS).toEqual([
      "medication-after-record",
    ]);
    expect(() => loadConfig({ MEDISYNC_CRASHPOINTS: "medication-somewhere" })).toThrow(
      /MEDISYNC_CRASHPOINTS/,
    );
  });

  it("refuses a medication retry window that is not below inventory's idempotency window", () => {
    let err: unknown;
    try {
      loadConfig({ MEDICATION_RETRY_WINDOW_MS: "86400000", INVENTORY_IDEMPOTENCY_WINDOW_MS: "86400000" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe("MEDICATION_RETRY_WINDOW_MS");
    expect(loadConfig({ MEDICATION_RETRY_WINDOW_MS: "3600000" }).MEDICATION_RETRY_WINDOW_MS).toBe(3_600_000);
  });
});
