// The client's flags: weights, stages, durations and the load model, and a refusal naming the flag
// for anything it cannot run with.
import { describe, expect, it } from "vitest";
import { parseMix, picker } from "./mix.ts";
import { parseDuration, parseOptions, parseStages } from "./options.ts";
import { Recorder } from "./stats.ts";
import { UsageError } from "./usage-error.ts";

const refusal = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error("no UsageError");
};

describe("mix", () => {
  it("parses weights and leaves out the zero ones", () => {
    expect(parseMix("browse=70, book=20,cancel=10,deduct=0")).toEqual({ browse: 70, book: 20, cancel: 10 });
    expect(parseMix("restock=0.5,transfer=1.5")).toEqual({ restock: 0.5, transfer: 1.5 });
  });

  it("refuses unknown names, bad weights, repeats and an all-zero mix, naming the problem", () => {
    expect(refusal(() => parseMix("browse=70,teleport=5"))).toMatch(/--mix: unknown scenario "teleport"/);
    expect(refusal(() => parseMix("browse=-1"))).toMatch(/--mix: "browse=-1" is not name=weight/);
    expect(refusal(() => parseMix("browse"))).toMatch(/not name=weight/);
    expect(refusal(() => parseMix("browse=1,browse=2"))).toMatch(/browse is given twice/);
    expect(refusal(() => parseMix("browse=0"))).toMatch(/no scenario has a weight above 0/);
  });

  it("draws each scenario with probability weight / total", () => {
    // browse [0, 0.7), book [0.7, 0.9), cancel [0.9, 1)
    const xs = [0, 0.69, 0.7, 0.89, 0.9, 0.999];
    let i = 0;
    const next = picker(parseMix("browse=70,book=20,cancel=10"), () => xs[i++]!);
    expect(xs.map(() => next())).toEqual(["browse", "browse", "book", "book", "cancel", "cancel"]);
  });
});

describe("load flags", () => {
  it("parses durations and stepped stages", () => {
    expect(parseDuration("500ms", "--duration")).toBe(500);
    expect(parseDuration("1.5s", "--duration")).toBe(1_500);
    expect(parseDuration("2m", "--duration")).toBe(120_000);
    expect(parseStages("10s:50,20s:100")).toEqual([
      { durationMs: 10_000, ratePerSecond: 50 },
      { durationMs: 20_000, ratePerSecond: 100 },
    ]);
    expect(refusal(() => parseDuration("10", "--duration"))).toMatch(/--duration: "10" is not a duration/);
    expect(refusal(() => parseStages("10s"))).toMatch(/--stages: "10s" is not duration:rate/);
    expect(refusal(() => parseStages("10s:0"))).toMatch(/every stage has rate 0/);
  });

  it("builds the open model from --rate (default 10/s for 10 s) and the closed one from --vus", () => {
    const open = parseOptions([]);
    expect(open !== "help" && open.load).toEqual({
      kind: "open",
      stages: [{ durationMs: 10_000, ratePerSecond: 10 }],
      inFlightMax: 512,
    });
    const rate = parseOptions(["--rate", "25", "--duration", "3s", "--in-flight-max", "8"]);
    expect(rate !== "help" && rate.load).toEqual({
      kind: "open",
      stages: [{ durationMs: 3_000, ratePerSecond: 25 }],
      inFlightMax: 8,
    });
    const closed = parseOptions(["--vus", "4", "--duration", "2s"]);
    expect(closed !== "help" && closed.load).toEqual({ kind: "closed", vus: 4, durationMs: 2_000 });
    expect(parseOptions(["--help"])).toBe("help");
  });

  it("refuses conflicting or malformed flags, naming them", () => {
    expect(refusal(() => parseOptions(["--rate", "5", "--vus", "2"]))).toMatch(
      /--rate and --vus: choose one/,
    );
    expect(refusal(() => parseOptions(["--stages", "1s:5", "--duration", "2s"]))).toMatch(
      /--duration: not with/,
    );
    expect(refusal(() => parseOptions(["--rate", "fast"]))).toMatch(/--rate: "fast" must be a number/);
    expect(refusal(() => parseOptions(["--vus", "1.5"]))).toMatch(/--vus: "1.5" must be an integer/);
    expect(refusal(() => parseOptions(["--target", "nope"]))).toMatch(/--target: "nope" is not a URL/);
    expect(refusal(() => parseOptions(["--from", "2031-02-30"]))).toMatch(/--from/);
    expect(refusal(() => parseOptions(["--inventory-peers", "inv-1@x"]))).toMatch(/--inventory-peers/);
    expect(refusal(() => parseOptions(["--bogus"]))).toMatch(/Unknown option '--bogus'/);
    expect(refusal(() => parseOptions(["--scenario", "/nonexistent/mix.json"]))).toMatch(
      /--scenario: cannot read/,
    );
  });
});

describe("stock defaults", () => {
  it("name medications npm start's demo stocks, so a default run meets stock that is there", async () => {
    // A test may look across modules; the client itself may not import the CLI.
    const { demoMedications } = await import("../cli/seed-stock.ts");
    const o = parseOptions([]);
    if (o === "help") throw new Error("no options");
    expect([...demoMedications]).toEqual(expect.arrayContaining(o.medications));
  });
});

describe("token flags", () => {
  it("mints by default with the key beside AUTH_JWKS_FILE; --token or MEDISYNC_TOKEN gives one", () => {
    const env = { AUTH_JWKS_FILE: "/keys/auth/jwks.json", AUTH_ISSUER: "iss-x", AUTH_AUDIENCE: "aud-x" };
    const minted = parseOptions([], env);
    expect(minted !== "help" && minted.auth).toEqual({
      kind: "minted",
      jwksFile: "/keys/auth/jwks.json",
      issuer: "iss-x",
      audience: "aud-x",
    });
    const flag = parseOptions(["--token", "a.b.c"], { ...env, MEDISYNC_TOKEN: "x.y.z" });
    expect(flag !== "help" && flag.auth).toEqual({ kind: "given", token: "a.b.c", flag: "--token" });
    const fromEnv = parseOptions([], { ...env, MEDISYNC_TOKEN: "x.y.z" });
    expect(fromEnv !== "help" && fromEnv.auth).toEqual({
      kind: "given",
      token: "x.y.z",
      flag: "MEDISYNC_TOKEN",
    });
  });

  it("gives each simulated patient half the gateway's per-patient budget unless told", () => {
    const dflt = parseOptions([], { RATE_LIMIT_PATIENT_PER_MINUTE: "600" });
    expect(dflt !== "help" && dflt.requestsPerPatient).toBe(300);
    const low = parseOptions([], { RATE_LIMIT_PATIENT_PER_MINUTE: "3" });
    expect(low !== "help" && low.requestsPerPatient).toBe(2);
    const told = parseOptions(["--requests-per-patient", "5000"]);
    expect(told !== "help" && told.requestsPerPatient).toBe(5000);
    expect(refusal(() => parseOptions(["--requests-per-patient", "1"]))).toMatch(/--requests-per-patient/);
  });

  it("refuses minting against a real identity provider, and a token with --grpc", () => {
    expect(refusal(() => parseOptions([], { AUTH_JWKS_URL: "https://idp.example/jwks" }))).toMatch(
      /--token: AUTH_JWKS_URL is set/,
    );
    const withIdp = parseOptions(["--token", "a.b.c"], { AUTH_JWKS_URL: "https://idp.example/jwks" });
    expect(withIdp !== "help" && withIdp.auth.kind).toBe("given");
    expect(refusal(() => parseOptions(["--grpc", "--token", "a.b.c"]))).toMatch(/--token: not with --grpc/);
  });
});

describe("recorder", () => {
  it("counts outcomes per scenario and reports percentiles in ms", () => {
    const r = new Recorder();
    for (let i = 1; i <= 100; i++) r.record("browse", { kind: "ok", status: 200 }, i, i / 2);
    r.record("book", { kind: "4xx", status: 409, code: "SLOT_TAKEN" }, 3, 3);
    r.record("book", { kind: "error", status: 0, code: "ECONNRESET" }, 4, 4);
    r.record("restock", { kind: "4xx", status: 429, code: "RATE_LIMITED" }, 1, 1);
    r.skip("cancel");
    r.drop("book");
    const { scenarios, total } = r.summaries();
    expect(scenarios.browse).toMatchObject({ count: 100, ok: 100, "429": 0, statuses: { "200": 100 } });
    // A 429 is a 4xx, and named.
    expect(scenarios.restock).toMatchObject({
      count: 1,
      "4xx": 1,
      "429": 1,
      statuses: { "429 RATE_LIMITED": 1 },
    });
    // HdrHistogram with 3 significant digits: within 0.1% of the recorded value.
    const l = scenarios.browse!.latencyMs;
    for (const [got, want] of [
      [l.p50, 50],
      [l.p90, 90],
      [l.p99, 99],
      [l.max, 100],
      [scenarios.browse!.serviceMs.max, 50],
    ] as const) {
      expect(Math.abs(got - want)).toBeLessThanOrEqual(want / 1_000);
    }
    expect(scenarios.book).toMatchObject({
      count: 2,
      ok: 0,
      "4xx": 1,
      errors: 1,
      dropped: 1,
      statuses: { "409 SLOT_TAKEN": 1, "error ECONNRESET": 1 },
    });
    expect(scenarios.cancel).toMatchObject({ count: 0, skipped: 1 });
    expect(total).toMatchObject({
      count: 103,
      ok: 100,
      "4xx": 2,
      "429": 1,
      errors: 1,
      skipped: 1,
      dropped: 1,
    });
  });
});
