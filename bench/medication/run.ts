// Measures prescriptions end to end: POST /v1/prescriptions through the gateway → medication
// (record, then inventory Deduct through Raft on a 3-replica cluster, then record the answer), at 1
// and 16 clients, each request with its own Idempotency-Key. Afterwards it checks the books: the
// stock went down by exactly the number of completed dispenses. Prescribing is a clinician's act:
// the load carries clinician tokens of the stack's clinic, one per client. Writes
// bench/reports/medication.md.
//   npm run bench:medication [-- --seconds 10]
import { writeFileSync } from "node:fs";
import { medicationStack } from "../../test/support/medication-stack.ts";
import { numberArg } from "../support/args.ts";
import { staffAuthorizations } from "../support/auth.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import { useCompiledBuild } from "../support/processes.ts";
import { runLoad } from "../support/wrk.ts";

const seconds = numberArg("seconds", 10);

useCompiledBuild();
const s = await medicationStack("bench_medication");
try {
  const units = 100_000_000;
  await s.inventory.write("restock", {
    requestId: "bench-seed",
    clinicId: s.clinic,
    medicationCode: "paracetamol",
    quantity: units,
    lot: "P1",
    expiresOn: "",
  });
  const appointmentId = await s.book();
  const body = JSON.stringify({
    appointmentId,
    medicationCode: "paracetamol",
    quantity: 1,
    dosage: { amount: 1, unit: "tablet", timesPerDay: 3, days: 7 },
  });
  const rows: (string | number)[][] = [];
  for (const connections of [1, 16]) {
    const r = await runLoad({
      url: s.base,
      method: "POST",
      path: "/v1/prescriptions",
      headers: { "content-type": "application/json" },
      body,
      uniqueHeader: "idempotency-key",
      authorizations: await staffAuthorizations(
        { role: "clinician", sub: "bench-clinician", clinics: [s.clinic] },
        connections,
      ),
      connections,
      durationS: seconds,
    });
    rows.push([connections, Math.round(r.rps), r.p50.toFixed(1), r.p99.toFixed(1), r.ok, r.errors, r.tool]);
    process.stdout.write(`${connections} clients: ${Math.round(r.rps)}/s p50 ${r.p50} ms p99 ${r.p99} ms\n`);
  }
  // Requests still in flight when the load stopped finish on their own (or by the recovery loop):
  // the books are read once nothing is in progress.
  for (let waited = 0; ; waited += 100) {
    const r = await s.medicationDb.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM dispenses WHERE status = 'in-progress'",
    );
    if (r.rows[0]!.n === 0) break;
    if (waited > 60_000) throw new Error(`${r.rows[0]!.n} dispenses still in progress after a minute`);
    await new Promise((res) => setTimeout(res, 100));
  }
  const completed = (
    await s.medicationDb.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM dispenses WHERE status = 'completed'",
    )
  ).rows[0]!.n;
  const left = (await s.inventory.getStock(s.clinic, "paracetamol", false)).item!.quantity;
  const books = units - left === completed ? "balance" : "DO NOT BALANCE";
  const report = `# Prescriptions end to end

\`npm run bench:medication\`: \`POST /v1/prescriptions\` through the gateway (compiled build), each
request with its own Idempotency-Key and a clinician's token of the clinic (one per client), for
${seconds} s per row. Each prescription is recorded in
PostgreSQL, deducted through the Raft leader of a 3-replica inventory cluster (fsync on), and its
answer recorded: three PostgreSQL transactions and one replicated write per request.

${machineDescription()}

${markdownTable(["clients", "prescriptions/s", "p50 ms", "p99 ms", "2xx", "errors", "load"], rows)}

Books after the run: ${completed} completed dispenses, stock down by ${units - left}: the books ${books}.
`;
  writeFileSync("bench/reports/medication.md", report);
  process.stdout.write(report);
} finally {
  await s.close();
}
