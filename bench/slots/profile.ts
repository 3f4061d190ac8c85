// Where the time of a cached slot read goes: starts the compiled appointment service and gateway
// as `npm start` runs them (LOG_LEVEL info), fills the LRU, then reads one day's slots at one
// connection straight over gRPC and through the gateway, printing p50 and requests per second of
// each; with --cpu-prof it writes V8 CPU profiles and prints each process's hottest functions.
// A tool for finding the next cost, not a benchmark with targets. The gateway's reads carry an
// admin token (bench/support/auth.ts), as the gateway requires on every /v1 route.
//   npm run bench:slots-profile [-- --seconds 5 --cpu-prof --tsx]
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { credentials } from "@grpc/grpc-js";
import autocannon from "autocannon";
import pg from "pg";
import { migrate } from "../../src/appointment/migrate.ts";
import { createSlots, insertClinic, insertPractitioner } from "../../src/appointment/repo.ts";
import { AppointmentServiceClient } from "../../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createPool, ensureDatabase } from "../../src/shared/pg.ts";
import { runCli } from "../../test/support/process.ts";
import { numberArg } from "../support/args.ts";
import { authHeader } from "../support/auth.ts";
import { hottest } from "../support/cpu-profile.ts";
import { benchGatewayEnv, freePort, stop, useCompiledBuild, waitForOk } from "../support/processes.ts";

const durationS = numberArg("seconds", 5);
const profile = process.argv.includes("--cpu-prof");
const pgBase = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const databaseUrl = `${pgBase}/medisync_bench_slots_profile`;
const profDir = mkdtempSync(path.join(os.tmpdir(), "medisync-slots-prof-"));

async function prepare(): Promise<{ clinicId: string; date: string }> {
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS "medisync_bench_slots_profile" WITH (FORCE)');
  await admin.end();
  await ensureDatabase(databaseUrl);
  const pool = createPool(databaseUrl, 2);
  await migrate(pool, createLogger({ service: "bench", level: "silent" }));
  const clinicId = randomUUID();
  const practitionerId = randomUUID();
  await insertClinic(pool, { id: clinicId, name: "Bench Clinic", timeZone: "UTC" });
  await insertPractitioner(pool, { id: practitionerId, clinicId, name: "Bench Practitioner" });
  const date = "2033-01-03";
  const start = new Date(`${date}T09:00:00Z`);
  await createSlots(pool, {
    clinicId,
    practitionerId,
    start,
    end: new Date(start.getTime() + 8 * 3_600_000),
    minutes: 30,
  });
  await pool.end();
  return { clinicId, date };
}

const ms = (x: number) => Math.round(x * 1000) / 1000;

async function main() {
  if (!process.argv.includes("--tsx")) useCompiledBuild();
  const { clinicId, date } = await prepare();
  const [grpcPort, opsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const prefix = `bench-slotprof-${process.pid}:`;
  const nodeArgs = (name: string) =>
    profile ? ["--cpu-prof", "--cpu-prof-dir", path.join(profDir, name)] : [];
  const appointment = runCli(
    ["appointment"],
    {
      DATABASE_URL: databaseUrl,
      APPOINTMENT_GRPC_PORT: String(grpcPort),
      APPOINTMENT_OPS_PORT: String(opsPort),
      REDIS_KEY_PREFIX: prefix,
      LOG_LEVEL: "info",
    },
    nodeArgs("appointment"),
  );
  const gateway = runCli(
    ["gateway"],
    {
      ...benchGatewayEnv("slots_profile"),
      PORT: String(httpPort),
      APPOINTMENT_ADDRS: `127.0.0.1:${grpcPort}`,
      REDIS_KEY_PREFIX: prefix,
      LOG_LEVEL: "info",
    },
    nodeArgs("gateway"),
  );
  // The logs go nowhere here; a real deployment writes them, which this does not measure.
  let fromUs = 0;
  let toUs = 0;
  try {
    await waitForOk(`http://127.0.0.1:${opsPort}/readyz`);
    await waitForOk(`http://127.0.0.1:${httpPort}/healthz`);
    const url = `http://127.0.0.1:${httpPort}/v1/clinics/${clinicId}/slots?date=${date}`;
    const auth = await authHeader({ role: "admin", sub: "bench-slots-profile" });
    const warm = await fetch(url, { headers: auth });
    if (warm.status !== 200) throw new Error(`GET slots: ${warm.status} ${await warm.text()}`);
    for (let i = 0; i < 200; i++) await (await fetch(url, { headers: auth })).arrayBuffer();
    const client = new AppointmentServiceClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
    const call = () =>
      callUnary(client.listSlots.bind(client), { clinicId, date, practitionerId: "" }, 2_000);
    const first = await call();
    for (let i = 0; i < 500; i++) await call();
    fromUs = Number(process.hrtime.bigint() / 1000n);
    const lat: number[] = [];
    const until = performance.now() + durationS * 1000;
    while (performance.now() < until) {
      const t = performance.now();
      await call();
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    console.log(
      `grpc ListSlots (tier ${first.tier}, ${first.slots.length} slots): ${Math.round(lat.length / durationS)}/s p50 ${ms(lat[lat.length >> 1]!)} ms p99 ${ms(lat[Math.floor(lat.length * 0.99)]!)} ms`,
    );
    client.close();
    const r = await autocannon({ url, connections: 1, duration: durationS, headers: auth });
    if (r.non2xx > 0) throw new Error(`gateway GET slots: ${r.non2xx} answers were not 2xx`);
    console.log(
      `gateway GET slots: ${Math.round(r.requests.average)}/s p50 ${r.latency.p50} ms p99 ${r.latency.p99} ms`,
    );
    toUs = Number(process.hrtime.bigint() / 1000n);
  } catch (err) {
    console.error(appointment.lines.slice(-5).join("\n"), gateway.lines.slice(-5).join("\n"));
    throw err;
  } finally {
    await stop(gateway);
    await stop(appointment);
  }
  if (profile) {
    for (const name of ["appointment", "gateway"]) {
      const dir = path.join(profDir, name);
      for (const f of readdirSync(dir)) {
        console.log(`\n## ${name}\n`);
        console.log(hottest(path.join(dir, f), fromUs, toUs, 25));
      }
    }
  }
}

await main();
