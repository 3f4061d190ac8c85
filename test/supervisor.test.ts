// `npm start` as a user runs it: the supervisor prepares the database, runs the gateway and two
// appointment instances, restarts a child that dies, and stops everything on Ctrl-C.
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePortRange, isAlive, runCli, type Watched } from "./support/process.ts";
import { PG_BASE, REDIS_URL, resetState, testConfig, testName } from "./support/services.ts";

const cfg = testConfig("supervisor");
let running: Watched | undefined;

afterAll(() => {
  running?.proc.kill("SIGKILL");
});

const childPids = (w: Watched) => {
  const pids = new Map<string, number>();
  for (const l of w.lines) {
    if (!l.startsWith("{")) continue;
    const j = JSON.parse(l) as { event?: string; child?: string; pid?: number };
    if (j.event === "child_started" && j.child && j.pid) pids.set(j.child, j.pid);
  }
  return pids;
};

describe("supervisor (npm start)", { timeout: 120_000 }, () => {
  it("seeds, serves, restarts a killed child with a logged restart, and stops every child on SIGINT", async () => {
    await resetState(cfg);
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "medisync-supervisor-"));
    const base = await freePortRange(12);
    const w = runCli(["supervisor"], {
      DATABASE_URL: cfg.DATABASE_URL,
      REDIS_URL,
      REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
      PORT: String(base),
      APPOINTMENT_GRPC_PORT: String(base + 1),
      APPOINTMENT_OPS_PORT: String(base + 3),
      INVENTORY_GRPC_PORT: String(base + 5),
      INVENTORY_OPS_PORT: String(base + 8),
      INVENTORY_DATA_DIR: dataDir,
      INVENTORY_DATABASE_URL: `${PG_BASE}/medisync_test_${testName("supervisor_inv")}`,
      NOTIFICATION_OPS_PORT: String(base + 11),
      NOTIFICATION_DATABASE_URL: `${PG_BASE}/medisync_test_${testName("supervisor_notification")}`,
      // A folder with no key yet: npm start makes the development signing key and JWKS there.
      AUTH_JWKS_FILE: path.join(dataDir, "auth", "jwks.json"),
      LOG_LEVEL: "info",
    });
    running = w;
    const urlLine = await w.waitFor(/^MediSync gateway: http:\/\/127\.0\.0\.1:\d+/, 60_000);
    const gateway = `http://127.0.0.1:${base}`;
    expect(urlLine).toContain(gateway);

    // `npm run token` mints with the key npm start made; the gateway takes it, and nothing without one.
    const minted = runCli(["token", "--role", "admin"], {
      AUTH_JWKS_FILE: path.join(dataDir, "auth", "jwks.json"),
    });
    expect((await minted.exited).code).toBe(0);
    const token = minted.lines.find((l) => /^ey[\w-]+\.[\w-]+\.[\w-]+$/.test(l));
    expect(token).toBeDefined();
    const headers = { authorization: `Bearer ${token}` };
    expect((await fetch(`${gateway}/v1/clinics`)).status).toBe(401);
    const clinics = (
      (await (await fetch(`${gateway}/v1/clinics`, { headers })).json()) as {
        items: { id: string; timeZone: string }[];
      }
    ).items;
    expect(clinics.map((c) => c.timeZone).sort()).toEqual([
      "America/New_York",
      "Asia/Tokyo",
      "Europe/Berlin",
    ]);
    const practitioners = (
      (await (await fetch(`${gateway}/v1/clinics/${clinics[0]!.id}/practitioners`, { headers })).json()) as {
        items: unknown[];
      }
    ).items;
    expect(practitioners).toHaveLength(2);
    // Output of each child is prefixed with its name.
    await w.waitFor(/^\[appointment-2\] \{/);
    await w.waitFor(/^\[gateway\] \{/);
    for (const id of ["inv-1", "inv-2", "inv-3"]) {
      await w.waitFor(new RegExp(`^\\[${id}\\] .*inventory replica listening`));
    }
    const cluster = (await (await fetch(`${gateway}/v1/cluster`, { headers })).json()) as {
      replicas: unknown[];
    };
    expect(cluster.replicas).toHaveLength(3);

    const victim = childPids(w).get("appointment-1")!;
    const mark = w.lines.length;
    process.kill(victim, "SIGKILL");
    const restart = JSON.parse(
      await w.waitFor(/"event":"child_restart".*"child":"appointment-1"/, 30_000, mark),
    ) as {
      signal: string;
      restarts: number;
    };
    expect(restart.signal).toBe("SIGKILL");
    expect(restart.restarts).toBe(1);
    await w.waitFor(/\[appointment-1\] .*appointment service listening/, 30_000, mark);
    const ops = await fetch(`http://127.0.0.1:${base + 3}/readyz`);
    expect(ops.status).toBe(200);

    const pids = [...childPids(w).values()];
    expect(pids.every(isAlive)).toBe(true);
    w.proc.kill("SIGINT");
    const { code } = await w.exited;
    running = undefined;
    expect(code).toBe(0);
    expect(pids.filter(isAlive)).toEqual([]);
  });

  it("says in one line per dependency that PostgreSQL or Redis is unreachable, with the command to start it", async () => {
    const w = runCli(["supervisor"], {
      DATABASE_URL: `${PG_BASE.replace(/:\d+$/, ":1")}/medisync_nowhere`,
      REDIS_URL: "redis://127.0.0.1:1",
    });
    const { code } = await w.exited;
    expect(code).toBe(1);
    const pgLine = w.lines.find((l) => l.includes("PostgreSQL is not reachable"));
    const redisLine = w.lines.find((l) => l.includes("Redis is not reachable"));
    expect(pgLine).toMatch(/127\.0\.0\.1:1 \(DATABASE_URL\).*Start it with: /);
    expect(redisLine).toMatch(/127\.0\.0\.1:1 \(REDIS_URL\).*Start it with: redis-server/);
  });

  it("stops on a bad variable with one line naming it", async () => {
    const w = runCli(["gateway"], { PORT: "eighty" });
    const { code } = await w.exited;
    expect(code).toBe(2);
    expect(w.lines).toHaveLength(1);
    expect(w.lines[0]).toMatch(/^medisync: invalid environment variable PORT: /);
  });
});
