// Service discovery with real processes (DISCOVERY=redis): two appointment instances register in
// Redis and a gateway finds them there, none of their addresses configured. Under steady slot
// reads through the gateway, one instance is SIGKILLed: within its TTL (plus slack) the gateway's
// list no longer has it, and no request failed (a try on the dead instance is retried on the
// other). An instance started later is found; one stopped with SIGTERM withdraws and goes too.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { datesFrom, makeClinic } from "./support/fixtures.ts";
import { http } from "./support/gateway.ts";
import { freePortRange, runCli, type Watched } from "./support/process.ts";
import { resetState, testConfig } from "./support/services.ts";
import { until } from "./support/stock-load.ts";

const cfg = testConfig("discovery");
const ttlMs = 3_000;
const env = {
  DATABASE_URL: cfg.DATABASE_URL,
  AUDIT_DATABASE_URL: cfg.AUDIT_DATABASE_URL,
  REDIS_URL: cfg.REDIS_URL,
  REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
  DISCOVERY: "redis",
  REGISTRY_TTL_MS: String(ttlMs),
  LOG_LEVEL: "info",
  SHUTDOWN_UNREADY_MS: "0",
};
const [date] = datesFrom("2032-03-01", 1) as [string];
const procs: Watched[] = [];
let base = "";
let gateway: Watched;
let clinicId = "";

function appointment(id: string): Watched {
  const p = runCli(["appointment"], {
    ...env,
    INSTANCE_ID: id,
    APPOINTMENT_GRPC_PORT: "0",
    APPOINTMENT_OPS_PORT: "0",
  });
  procs.push(p);
  return p;
}

type Services = {
  services: {
    service: string;
    source: string;
    stale: boolean;
    instances: { id: string; address: string; ageMs: number; expiresInMs: number }[];
  }[];
};

async function appointmentIds(): Promise<string[]> {
  const r = await http(base, "GET", "/v1/cluster/services");
  expect(r.status).toBe(200);
  const s = (r.json as unknown as Services).services.find((x) => x.service === "appointment")!;
  expect(s.source).toBe("redis");
  return s.instances.map((i) => i.id).sort();
}

/** Slot reads back to back from `workers` loops until stop(); every answer's status is kept. */
function readLoad(workers: number) {
  const statuses: (number | string)[] = [];
  let stopped = false;
  const loops = Array.from({ length: workers }, async () => {
    while (!stopped) {
      try {
        const r = await http(base, "GET", `/v1/clinics/${clinicId}/slots?date=${date}`);
        statuses.push(
          r.status === 200 && Array.isArray(r.json.slots) ? 200 : `${r.status} ${JSON.stringify(r.json)}`,
        );
      } catch (err) {
        statuses.push((err as Error).message);
      }
    }
  });
  return {
    statuses,
    ok: () => statuses.filter((s) => s === 200).length,
    failed: () => statuses.filter((s) => s !== 200),
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

beforeAll(async () => {
  await resetState(cfg);
  // One after the other: the first migrates the database.
  await appointment("appt-a").waitFor(/appointment service listening/, 60_000);
  await appointment("appt-b").waitFor(/appointment service listening/, 60_000);
  const pool = new pg.Pool({ connectionString: cfg.DATABASE_URL, max: 2 });
  try {
    clinicId = (await makeClinic(pool, [date], 8)).clinicId;
  } finally {
    await pool.end();
  }
  const port = await freePortRange(1);
  base = `http://127.0.0.1:${port}`;
  // No APPOINTMENT_ADDRS: the registry is the only way to the instances.
  gateway = runCli(["gateway"], { ...env, PORT: String(port), INVENTORY_PEERS: "inv-1=127.0.0.1:1" });
  procs.push(gateway);
  await gateway.waitFor(/gateway listening/, 60_000);
}, 180_000);

afterAll(async () => {
  for (const p of procs) {
    if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill("SIGKILL");
    await p.exited;
  }
}, 60_000);

describe("service discovery through Redis", { timeout: 120_000 }, () => {
  it("finds both registered instances", async () => {
    await until(async () => (await appointmentIds()).join() === "appt-a,appt-b", "both listed", 20_000);
    const r = await http(base, "GET", "/v1/cluster/services");
    const appt = (r.json as unknown as Services).services.find((x) => x.service === "appointment")!;
    for (const i of appt.instances) {
      expect(i.address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(i.expiresInMs).toBeLessThanOrEqual(ttlMs);
      expect(i.ageMs).toBeGreaterThanOrEqual(0);
    }
    expect((await http(base, "GET", `/v1/clinics/${clinicId}/slots?date=${date}`)).status).toBe(200);
  });

  it("an instance SIGKILLed under load drops out within its TTL, and no request fails", async () => {
    const victim = procs.find((p) => p.lines.some((l) => l.includes('"appt-a"')))!;
    const victimAddress = (await http(base, "GET", "/v1/cluster/services")).json as unknown as Services;
    const address = victimAddress.services
      .find((x) => x.service === "appointment")!
      .instances.find((i) => i.id === "appt-a")!.address;
    const load = readLoad(2);
    try {
      await until(() => load.ok() >= 20, "reads flowing before the kill");
      const from = gateway.lines.length;
      victim.proc.kill("SIGKILL");
      await victim.exited;
      const killedAfter = load.statuses.length;
      // Its entry expires a TTL after its last refresh at most; the gateway reads every third.
      await until(
        async () => (await appointmentIds()).join() === "appt-b",
        "appt-a out of the gateway's list",
        ttlMs + ttlMs / 3 + 10_000,
      );
      // The list the gateway routes by dropped that address (the client's, logged as it changed).
      const changed = await gateway.waitFor(/"msg":"instances changed"/, 5_000, from);
      expect(JSON.parse(changed)).toMatchObject({ service: "appointment", removed: [address] });
      const removedAt = load.statuses.length;
      await until(() => load.statuses.length >= removedAt + 20, "reads after the removal");
      expect(removedAt).toBeGreaterThan(killedAfter);
    } finally {
      await load.stop();
    }
    expect(load.failed()).toEqual([]);
    expect(load.ok()).toBeGreaterThan(40);
  });

  it("an instance started later is found; one stopped with SIGTERM withdraws, with no request failing", async () => {
    const load = readLoad(2);
    try {
      await appointment("appt-c").waitFor(/appointment service listening/, 60_000);
      await until(async () => (await appointmentIds()).join() === "appt-b,appt-c", "appt-c found", 20_000);
      const b = procs.find((p) => p.lines.some((l) => l.includes('"appt-b"')))!;
      b.proc.kill("SIGTERM");
      await until(async () => (await appointmentIds()).join() === "appt-c", "appt-b withdrawn", 20_000);
      expect(await b.exited).toEqual({ code: 0, signal: null });
      const at = load.statuses.length;
      await until(() => load.statuses.length >= at + 20, "reads on appt-c alone");
    } finally {
      await load.stop();
    }
    expect(load.failed()).toEqual([]);
  });
});
