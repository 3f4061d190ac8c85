// What the audit trail costs PostgreSQL: the gateway's own AuditLog (src/gateway/audit.ts) against
// the real server, one connection, batches of N requests at a time, and the CPU its backend used
// per request (from /proc, so the server must run on this machine). Three shapes: refused requests
// (one event row each, record()), and admitted ones (begin()/finish()) answered 200 (an event row;
// the next batch's watermark speaks for the outcome) or 409 (an event row and an outcome row, which
// rides with the next batch's INSERT). Writes bench/reports/audit.md.
//   npm run bench:audit [-- --requests 20000]

import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import pg from "pg";
import { type AuditEntry, AuditLog, prepareAuditDatabase } from "../../src/gateway/audit.ts";
import { loadConfig } from "../../src/shared/config.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createPool } from "../../src/shared/pg.ts";
import { numberArg } from "../support/args.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import { cpuMs as backendCpuMs } from "../support/proc.ts";

const requests = numberArg("requests", 20_000);
const batchSizes = [1, 20, 100];
const pgBase = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const url = `${pgBase}/medisync_bench_audit`;
/** A stock deduct's row, as the gateway writes it. */
const deduct = (): AuditEntry => ({
  actor: { sub: "bench-pharmacist-1", role: "pharmacist", clinics: ["bench"] },
  action: "U",
  resourceType: "InventoryItem",
  resourceId: "paracetamol-500",
  clinic: "bench",
  outcome: 200,
  requestId: randomUUID(),
  source: "127.0.0.1",
  route: "POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct",
});

async function main() {
  const log = createLogger({ service: "bench", level: "silent" });
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` });
  await admin.connect();
  await admin.query("DROP DATABASE IF EXISTS medisync_bench_audit WITH (FORCE)");
  await admin.end();
  await prepareAuditDatabase(loadConfig({ AUDIT_DATABASE_URL: url, LOG_LEVEL: "silent" }), log);
  // One connection: every INSERT, and the pid query, go through the same backend.
  const pool = createPool(url, 1);
  const pid = (await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
  const rows: (string | number)[][] = [];
  const shapes = [
    "event rows (record)",
    "answered 200: event rows + one watermark a batch (begin, finish)",
    "answered 409: event + outcome rows (begin, finish)",
  ] as const;
  for (const shape of shapes) {
    for (const batch of batchSizes) {
      const audit = new AuditLog({
        pool,
        log,
        batchRowsMax: 1_000,
        queueRowsMax: 10_000,
        writeTimeoutMs: 10_000,
      });
      const cpu0 = backendCpuMs(pid);
      const t0 = performance.now();
      const inserts0 = audit.stats().inserts;
      for (let done = 0; done < requests; done += batch) {
        // `batch` requests at once: they share one INSERT (group commit), as concurrent requests do.
        const n = Math.min(batch, requests - done);
        if (shape === "event rows (record)") {
          await Promise.all(Array.from({ length: n }, () => audit.record(deduct())));
        } else {
          const attempts = Array.from({ length: n }, () => {
            const { outcome: _o, ...attempt } = deduct();
            return audit.begin(attempt);
          });
          await Promise.all(attempts.map((a) => a.written));
          for (const a of attempts) a.finish(shape === shapes[1] ? 200 : 409);
        }
      }
      await audit.close();
      const wallMs = performance.now() - t0;
      const cpuMs = backendCpuMs(pid) - cpu0;
      const inserts = audit.stats().inserts - inserts0;
      rows.push([
        shape,
        batch,
        inserts,
        ((1000 * cpuMs) / requests).toFixed(1),
        ((1000 * cpuMs) / inserts).toFixed(0),
        (wallMs / inserts).toFixed(2),
      ]);
      console.log(rows[rows.length - 1]!.join("  "));
    }
  }
  await pool.end();
  const report = `# Audit trail benchmark

The gateway's AuditLog (src/gateway/audit.ts) writing to the real PostgreSQL on this machine over one
connection, ${requests} requests per row, \`batch\` of them at a time (so they share an INSERT, as
concurrent requests do). "Backend CPU" is the user + system time of that connection's PostgreSQL
process (/proc), per request and per INSERT (each INSERT is one transaction, committed with its WAL
flush). A stock deduct's row: an actor, the medication code, the clinic, no patient.

## Machine
${machineDescription()}

## Results
${markdownTable(["rows", "batch", "INSERTs", "backend CPU per request µs", "backend CPU per INSERT µs", "wall ms per INSERT"], rows)}

Reproduce: \`npm run bench:audit\` (PostgreSQL on 127.0.0.1, on this machine).
`;
  writeFileSync("bench/reports/audit.md", report);
  console.log("wrote bench/reports/audit.md");
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
