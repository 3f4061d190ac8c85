// Runs the whole prescription path for tests: a real 3-replica inventory cluster (processes), an
// appointment instance and a gateway in this process, and the medication service as a process of
// its own (so a test can SIGKILL it, or have it kill itself at a crashpoint, and start it again).
import pg from "pg";
import { runGateway } from "../../src/gateway/server.ts";
import type { Config } from "../../src/shared/config.ts";
import type { InventoryClient } from "../../src/shared/inventory-client.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { admin as adminToken, as } from "./auth.ts";
import { datesFrom, makeClinic } from "./fixtures.ts";
import { InventoryCluster } from "./inventory-cluster.ts";
import { freePortRange, runCli, type Watched } from "./process.ts";
import {
  type Instance,
  PG_BASE,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./services.ts";

export interface MedicationStack {
  cluster: InventoryCluster;
  inventory: InventoryClient;
  base: string;
  /** The clinic's code (the stock) and a supply of free slots to book. */
  clinic: string;
  slots: string[];
  medicationDb: pg.Pool;
  medication: Watched;
  /** Starts the medication process again (after a crash), with these crashpoints on. */
  restartMedication(crashpoints?: string[]): Promise<Watched>;
  book(): Promise<string>;
  close(): Promise<void>;
}

export async function medicationStack(
  name: string,
  env: Record<string, string> = {},
): Promise<MedicationStack> {
  const cluster = new InventoryCluster({ name });
  await cluster.init();
  try {
    return await withCluster(cluster, name, env);
  } catch (err) {
    // No replica may outlive a failed start.
    await cluster.stop();
    throw err;
  }
}

async function withCluster(
  cluster: InventoryCluster,
  name: string,
  env: Record<string, string>,
): Promise<MedicationStack> {
  await cluster.startAll();
  await cluster.waitFormed();
  const peers = cluster.peers.map((p) => `${p.id}=${p.address}`).join(",");
  const base: Config = testConfig(name, { INVENTORY_PEERS: peers, REDIS_KEY_PREFIX: cluster.prefix });
  await resetState(base);
  const medicationUrl = `${base.DATABASE_URL}_medication`;
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${new URL(medicationUrl).pathname.slice(1)}" WITH (FORCE)`);
  await admin.end();

  const appointment: Instance = await startInstance(base);
  const appointmentAddr = `127.0.0.1:${appointment.service.grpcPort}`;
  const medPort = await freePortRange(2);
  const medEnv = {
    MEDICATION_DATABASE_URL: medicationUrl,
    MEDICATION_GRPC_PORT: String(medPort),
    MEDICATION_OPS_PORT: String(medPort + 1),
    APPOINTMENT_ADDRS: appointmentAddr,
    INVENTORY_PEERS: peers,
    REDIS_URL: base.REDIS_URL,
    REDIS_KEY_PREFIX: cluster.prefix,
    LOG_LEVEL: "info",
    // Recovery quickly, so a test waits seconds, not the production defaults.
    MEDICATION_SETTLE_AFTER_MS: "300",
    MEDICATION_RECOVERY_INTERVAL_MS: "100",
    ...env,
  };
  const startMedication = async (crashpoints: string[] = []) => {
    const w = runCli(["medication"], { ...medEnv, MEDISYNC_CRASHPOINTS: crashpoints.join(",") });
    try {
      await w.waitFor(/medication service listening/, 60_000);
    } catch (err) {
      w.proc.kill("SIGKILL");
      throw err;
    }
    return w;
  };
  const stack = { medication: await startMedication() } as MedicationStack;
  const gw = await runGateway(
    { ...base, APPOINTMENT_ADDRS: [appointmentAddr], MEDICATION_ADDRS: [`127.0.0.1:${medPort}`] },
    createLogger({ service: "gateway", level: "silent" }),
  );
  const pool = testPool(base);
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  const fixture = await makeClinic(pool, datesFrom(tomorrow, 3), 16);
  const code = (
    await pool.query<{ code: string }>("SELECT code FROM clinics WHERE id = $1", [fixture.clinicId])
  ).rows[0]!.code;
  const slots = [...fixture.days.values()].flat().map((s) => s.id);
  const medicationDb = new pg.Pool({ connectionString: medicationUrl, max: 2 });
  const httpBase = `http://127.0.0.1:${gw.port}`;
  const inventory = cluster.client(20_000);

  return Object.assign(stack, {
    cluster,
    inventory,
    base: httpBase,
    clinic: code,
    slots,
    medicationDb,
    async restartMedication(crashpoints: string[] = []) {
      stack.medication = await startMedication(crashpoints);
      return stack.medication;
    },
    async book() {
      const slotId = slots.shift();
      if (!slotId) throw new Error("the test ran out of slots");
      const res = await fetch(`${httpBase}/v1/appointments`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(await as(adminToken)) },
        body: JSON.stringify({ slotId, patientId: crypto.randomUUID() }),
      });
      if (res.status !== 201) throw new Error(`booking answered ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    },
    async close() {
      stack.medication.proc.kill("SIGKILL");
      await stack.medication.exited;
      await gw.close();
      await stopInstance(appointment);
      await pool.end();
      await medicationDb.end();
      inventory.close();
      await cluster.stop();
    },
  });
}
