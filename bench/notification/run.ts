// Measures notifications end to end: bookings through the real appointment service (outbox → relay
// → Redis Stream) consumed by the notification service (its own process, compiled build, consumer
// group, inbox, one notification per event). Two phases:
//  1. steady load: bookings at a fixed rate for a while; delivery lag per event = the notification
//     row's creation minus the outbox row's (both PostgreSQL's clock), p50/p99/max;
//  2. backlog: events written while the consumer is stopped, then the consumer started: events/s it
//     drains at.
// Writes bench/reports/notification.md.   npm run bench:notification [-- --rate 50 --seconds 10 --backlog 2000]
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import pg from "pg";
import { callUnary } from "../../src/shared/grpc.ts";
import {
  bigClinic,
  notificationTestConfig,
  resetNotificationState,
} from "../../test/support/notification.ts";
import { runCli, type Watched } from "../../test/support/process.ts";
import { startInstance, stopInstance, testPool } from "../../test/support/services.ts";
import { numberArg } from "../support/args.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import { useCompiledBuild } from "../support/processes.ts";

const rate = numberArg("rate", 50);
const seconds = numberArg("seconds", 10);
const backlog = numberArg("backlog", 2000);

useCompiledBuild();
const cfg = notificationTestConfig("bench_notification");
await resetNotificationState(cfg);
const appt = await startInstance(cfg, undefined, "bench-appointment");
const apptPool = testPool(cfg);
const fx = await bigClinic(apptPool, rate * seconds + backlog + 32);
const slots = [...fx.days.values()].flat().map((s) => s.id);
let consumer: Watched | undefined;
const notifPool = () => new pg.Pool({ connectionString: cfg.NOTIFICATION_DATABASE_URL, max: 2 });

function startConsumer(): Watched {
  return runCli(["notification"], {
    NOTIFICATION_DATABASE_URL: cfg.NOTIFICATION_DATABASE_URL,
    REDIS_URL: cfg.REDIS_URL,
    REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
    NOTIFICATION_OPS_PORT: "0",
    NOTIFICATION_GRPC_PORT: "0",
    INSTANCE_ID: "bench-notification",
    LOG_LEVEL: "info",
  });
}

const book = (slotId: string) =>
  callUnary(
    appt.client.book.bind(appt.client),
    { slotId, patientId: randomUUID(), idempotencyKey: randomUUID() },
    10_000,
  );

async function countNotifications(pool: pg.Pool): Promise<number> {
  return (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM notifications")).rows[0]!.n;
}

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

try {
  consumer = startConsumer();
  await consumer.waitFor(/notification service listening/, 60_000);
  const pool = notifPool();
  // 1. Steady: one booking every 1/rate s, for `seconds`.
  const steady = rate * seconds;
  const started = Date.now();
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < steady; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    inFlight.push(book(slots.shift()!));
  }
  await Promise.all(inFlight);
  await until(async () => (await countNotifications(pool)) >= steady, "steady notifications");
  // Lag per event: outbox row (appointment database) → notification row (notification database).
  const made = await pool.query<{ event_id: string; at: string }>(
    "SELECT event_id, extract(epoch FROM created_at) * 1000 AS at FROM notifications",
  );
  const outbox = await apptPool.query<{ id: string; at: string }>(
    "SELECT id::text, extract(epoch FROM created_at) * 1000 AS at FROM outbox",
  );
  const written = new Map(outbox.rows.map((r) => [`appointment:${r.id}`, Number(r.at)]));
  const lags = made.rows
    .map((r) => Number(r.at) - (written.get(r.event_id) ?? Number.NaN))
    .filter((x) => Number.isFinite(x))
    .sort((a, b) => a - b);

  // 2. Backlog: the consumer stopped, events written, the consumer started again.
  consumer.proc.kill("SIGTERM");
  await consumer.exited;
  const before = await countNotifications(pool);
  for (let i = 0; i < backlog; i += 32) {
    await Promise.all(slots.splice(0, Math.min(32, backlog - i)).map((id) => book(id)));
  }
  const drainStart = Date.now();
  consumer = startConsumer();
  await until(async () => (await countNotifications(pool)) >= before + backlog, "backlog drained");
  const drainS = (Date.now() - drainStart) / 1000;
  await pool.end();

  const report = `# Notifications end to end

\`npm run bench:notification\`: bookings through a real appointment instance (outbox → relay every
200 ms → Redis Stream), consumed by the notification service (compiled build, its own process): the
consumer group, the inbox and one notification row per event, in one PostgreSQL transaction each.

${machineDescription()}

${markdownTable(
  ["phase", "events", "result"],
  [
    [
      `steady, ${rate} bookings/s for ${seconds} s`,
      lags.length,
      `delivery lag p50 ${pct(lags, 50).toFixed(0)} ms, p99 ${pct(lags, 99).toFixed(0)} ms, max ${lags[lags.length - 1]!.toFixed(0)} ms`,
    ],
    [
      "backlog drained after a restart",
      backlog,
      `${(backlog / drainS).toFixed(0)} events/s (${drainS.toFixed(1)} s, the process start included)`,
    ],
  ],
)}

Lag is measured from the outbox row's creation to the notification row's (both stamped by
PostgreSQL's clock), so it holds the relay's polling interval (200 ms), the stream and the consumer.
`;
  writeFileSync("bench/reports/notification.md", report);
  process.stdout.write(report);
} finally {
  if (consumer && consumer.proc.exitCode === null && consumer.proc.signalCode === null) {
    consumer.proc.kill("SIGKILL");
    await consumer.exited;
  }
  await apptPool.end();
  await stopInstance(appt);
}
