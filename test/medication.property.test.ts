// The saga against a model, with fast-check choosing the interleaving: prescriptions issued and
// retried, cancels, the medication service SIGKILLed (plainly or at a crashpoint of the saga) and
// restarted, the inventory leader SIGKILLed and restarted. After each run everything is retried
// until answered, and the cluster's stock must equal the model's: the initial stock minus the
// quantities of the prescriptions that ended dispensed and not cancelled — each key one
// prescription, each deduction and each return applied once.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { as } from "./support/auth.ts";
import { type MedicationStack, medicationStack } from "./support/medication-stack.ts";

let s: MedicationStack;
beforeAll(async () => {
  s = await medicationStack("medication_property");
}, 120_000);
afterAll(async () => {
  await s?.close();
}, 60_000);

const dosage = { amount: 1, unit: "tablet", timesPerDay: 1, days: 5 };
const crashpoints = [
  "medication-after-record",
  "medication-after-deduct-sent",
  "medication-before-complete",
  "medication-before-returned",
] as const;

type Op =
  | { kind: "issue"; quantity: number }
  | { kind: "retry"; pick: number }
  | { kind: "cancel"; pick: number }
  | { kind: "crashMedication"; at: (typeof crashpoints)[number] | "now" }
  | { kind: "killLeader" };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("issue" as const), quantity: fc.integer({ min: 1, max: 6 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("retry" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("cancel" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("crashMedication" as const),
      at: fc.constantFrom(...crashpoints, "now" as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("killLeader" as const) }) },
);

async function call(method: string, path: string, body?: unknown, key?: string) {
  try {
    const res = await fetch(`${s.base}${path}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(key ? { "idempotency-key": key } : {}),
        // A clinician of the stack's clinic prescribes, reads and cancels.
        ...(await as({ role: "clinician", clinics: [s.clinic] })),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch {
    return { status: 599, body: {} };
  }
}

async function until<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let run = 0;

it("stock equals the model's after any interleaving of issue, cancel and crashes of either side", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 4, maxLength: 9 }), async (ops) => {
      run++;
      const medicationCode = `prop-${run}-${randomUUID().slice(0, 8)}`;
      const initial = 25;
      await s.inventory.write("restock", {
        requestId: `${medicationCode}-seed`,
        clinicId: s.clinic,
        medicationCode,
        quantity: initial,
        lot: "L1",
        expiresOn: "",
      });
      const appointmentId = await s.book();
      /** Every issue the test sent: its key and body, and the prescription id once an answer named it. */
      const issued: { key: string; body: Record<string, unknown>; id?: string }[] = [];
      /** Prescription ids the test asked to cancel. */
      const cancelAsked = new Set<string>();
      const medicationUp = () => s.medication.proc.exitCode === null && s.medication.proc.signalCode === null;

      for (const o of ops) {
        switch (o.kind) {
          case "issue":
          case "retry": {
            const target =
              o.kind === "issue"
                ? { key: randomUUID(), body: { appointmentId, medicationCode, quantity: o.quantity, dosage } }
                : issued[o.pick % Math.max(1, issued.length)];
            if (!target) break;
            if (o.kind === "issue") issued.push(target);
            const a = await call("POST", "/v1/prescriptions", target.body, target.key);
            const id = (a.body.id ?? a.body.prescriptionId) as string | undefined;
            if (id) (target as { id?: string }).id = id;
            break;
          }
          case "cancel": {
            const known = issued.filter((i) => i.id);
            const target = known[o.pick % Math.max(1, known.length)];
            if (!target?.id) break;
            cancelAsked.add(target.id);
            await call("POST", `/v1/prescriptions/${target.id}/cancel`);
            break;
          }
          case "crashMedication": {
            if (medicationUp()) {
              s.medication.proc.kill("SIGKILL");
              await s.medication.exited;
            }
            // With a crashpoint on, the next request that reaches that step kills it again.
            await s.restartMedication(o.at === "now" ? [] : [o.at]);
            break;
          }
          case "killLeader": {
            const leader = await s.cluster.waitLeader(30_000);
            await s.cluster.signal(leader, "SIGKILL");
            s.cluster.start(leader);
            await s.cluster.procs.get(leader)!.waitFor(/inventory replica listening/, 60_000);
            break;
          }
        }
        // A crashpoint that fired leaves the service down until the next crash op or the end.
      }

      // Heal: the medication service up without crashpoints, every issue and cancel retried until answered.
      if (medicationUp()) {
        s.medication.proc.kill("SIGKILL");
        await s.medication.exited;
      }
      await s.restartMedication();
      for (const i of issued) {
        const a = await until(async () => {
          const r = await call("POST", "/v1/prescriptions", i.body, i.key);
          return r.status < 500 ? r : undefined;
        }, `issue ${i.key}`);
        expect([201, 409]).toContain(a.status);
        i.id = (a.body.id ?? a.body.prescriptionId) as string | undefined;
        expect(i.id, JSON.stringify(a.body)).toBeDefined();
      }
      for (const id of cancelAsked) {
        const a = await until(async () => {
          const r = await call("POST", `/v1/prescriptions/${id}/cancel`);
          return r.status < 500 ? r : undefined;
        }, `cancel ${id}`);
        expect([200, 409]).toContain(a.status);
      }
      await until(async () => {
        const r = await s.medicationDb.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM dispenses WHERE status = 'in-progress' OR return_status = 'in-progress'",
        );
        return r.rows[0]!.n === 0 ? true : undefined;
      }, "recovery settles everything");

      // The model: one prescription per key; what is dispensed and not cancelled is what left the stock.
      let expected = initial;
      const ids = new Set<string>();
      for (const i of issued) {
        const got = await until(async () => {
          const r = await call("GET", `/v1/prescriptions/${i.id}`);
          return r.status === 200 ? r.body : undefined;
        }, `read ${i.id}`);
        ids.add(got.id as string);
        const dispense = got.dispense as { status: string; returnStatus: string };
        expect(["completed", "declined"]).toContain(dispense.status);
        if (cancelAsked.has(i.id!)) {
          expect(got.status).toBe("cancelled");
          if (dispense.status === "completed") expect(dispense.returnStatus).toBe("returned");
        } else if (dispense.status === "completed") {
          expect(got.status).toBe("completed");
          expected -= (i.body as { quantity: number }).quantity;
        } else {
          expect(got.status).toBe("stopped");
        }
      }
      expect(ids.size).toBe(issued.length);
      const st = await s.cluster.converged();
      expect(new Set(st.map((x) => x.stateHash)).size).toBe(1);
      const left = (await s.inventory.getStock(s.clinic, medicationCode, false)).item!.quantity;
      expect(left).toBe(expected);
    }),
    { numRuns: 6, endOnFailure: true },
  );
}, 600_000);
