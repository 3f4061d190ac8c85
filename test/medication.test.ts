// The prescription saga end to end against real processes: a 3-replica inventory cluster, the
// medication service as its own process (killed at each step of the saga by crashpoints), an
// appointment instance and the gateway; real PostgreSQL and Redis.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadConsistency } from "../src/gen/medisync/v1/inventory.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { admin, as } from "./support/auth.ts";
import { type MedicationStack, medicationStack } from "./support/medication-stack.ts";

// biome-ignore lint/suspicious/noExplicitAny: answers are JSON read field by field
type J = any;

let s: MedicationStack;
const dosage = { amount: 1, unit: "tablet", timesPerDay: 3, days: 7 };

beforeAll(async () => {
  s = await medicationStack("medication");
  await s.inventory.write("restock", {
    requestId: "seed-a",
    clinicId: s.clinic,
    medicationCode: "amoxicillin",
    quantity: 30,
    lot: "A",
    expiresOn: "2099-01-01",
  });
  await s.inventory.write("restock", {
    requestId: "seed-b",
    clinicId: s.clinic,
    medicationCode: "amoxicillin",
    quantity: 1_000,
    lot: "B",
    expiresOn: "2099-06-01",
  });
}, 120_000);

afterAll(async () => {
  await s?.close();
}, 60_000);

interface Answer {
  status: number;
  body: Record<string, J>;
  headers: Headers;
}

/**
 * A prescription, retried with its key on 503/504 as the answer tells a client to do (a loaded
 * machine can leave a dispense unsettled past the gateway's deadline; the retry reads its result).
 */
function prescribe(body: Record<string, unknown>, key: string | undefined = randomUUID()): Promise<Answer> {
  return untilAnswered(() => prescribeOnce(body, key));
}

async function prescribeOnce(
  body: Record<string, unknown>,
  key: string | undefined = randomUUID(),
): Promise<Answer> {
  const res = await fetch(`${s.base}/v1/prescriptions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key ? { "idempotency-key": key } : {}),
      // Prescribing is a clinician's act, at the clinic of the appointment.
      ...(await as({ role: "clinician", clinics: [s.clinic] })),
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, J>, headers: res.headers };
}

async function post(path: string): Promise<Answer> {
  const res = await fetch(`${s.base}${path}`, { method: "POST", headers: await as(admin) });
  return { status: res.status, body: (await res.json()) as Record<string, J>, headers: res.headers };
}

async function stock(medicationCode: string): Promise<{ quantity: number; lots: Record<string, number> }> {
  const r = await s.inventory.getStock(s.clinic, medicationCode, false);
  return {
    quantity: r.item!.quantity,
    lots: Object.fromEntries(r.item!.lots.map((l) => [l.lot, l.quantity])),
  };
}

/** Every replica has applied the same log and holds the same stock. */
async function replicasAgree(medicationCode: string): Promise<number> {
  const st = await s.cluster.converged();
  expect(new Set(st.map((x) => x.stateHash)).size).toBe(1);
  const quantities = await Promise.all(
    s.cluster.ids.map(async (id) => {
      const c = s.cluster.clients.get(id)!;
      const r = await callUnary(
        c.getStock.bind(c),
        { clinicId: s.clinic, medicationCode, consistency: ReadConsistency.READ_CONSISTENCY_STALE },
        2_000,
      );
      return r.item!.quantity;
    }),
  );
  expect(new Set(quantities).size).toBe(1);
  return quantities[0]!;
}

/** Until the medication database has no dispense or return left in-progress (the recovery loop). */
async function settled(timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await s.medicationDb.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM dispenses WHERE status = 'in-progress' OR return_status = 'in-progress'",
    );
    if (r.rows[0]!.n === 0) return;
    if (Date.now() > deadline) throw new Error(`${r.rows[0]!.n} dispenses still in-progress`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function until<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A request retried with its key until the answer is not 503 (the medication process restarting). */
async function untilAnswered(fn: () => Promise<Answer>, timeoutMs = 30_000): Promise<Answer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await fn().catch(() => undefined);
    if (a && a.status !== 503 && a.status !== 504) return a;
    if (Date.now() > deadline) throw new Error(`still unanswered: ${JSON.stringify(a?.body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("prescriptions", () => {
  it("book → prescribe: stock goes down by exactly the quantity on every replica, from the first-expiring lot", async () => {
    const before = await stock("amoxicillin");
    const appointmentId = await s.book();
    const a = await prescribe({ appointmentId, medicationCode: "amoxicillin", quantity: 21, dosage });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({
      appointmentId,
      clinic: s.clinic,
      medicationCode: "amoxicillin",
      quantity: 21,
      dosage,
      status: "completed",
      dispense: { status: "completed", lots: [{ lot: "A", quantity: 21, expiresOn: "2099-01-01" }] },
    });
    expect(a.body.dispense.inventoryIndex).toBeGreaterThan(0);
    expect(await replicasAgree("amoxicillin")).toBe(before.quantity - 21);
    const got = await fetch(`${s.base}/v1/prescriptions/${a.body.id}`, { headers: await as(admin) });
    expect(await got.json()).toEqual(a.body);
    const page = (await (
      await fetch(`${s.base}/v1/appointments/${appointmentId}/prescriptions`, { headers: await as(admin) })
    ).json()) as J;
    expect(page.items.map((p: { id: string }) => p.id)).toEqual([a.body.id]);
    expect(page.nextCursor).toBeNull();
  });

  it("50 concurrent requests with one Idempotency-Key: one prescription, one deduction; another body → 422", async () => {
    const before = (await stock("amoxicillin")).quantity;
    const appointmentId = await s.book();
    const key = randomUUID();
    const body = { appointmentId, medicationCode: "amoxicillin", quantity: 5, dosage };
    const answers = await Promise.all(Array.from({ length: 50 }, () => prescribe(body, key)));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(201));
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    // At most one answer is the first (none when its own try was retried after a 503).
    expect(answers.filter((a) => a.headers.get("idempotent-replayed") !== "true").length).toBeLessThanOrEqual(
      1,
    );
    expect((await stock("amoxicillin")).quantity).toBe(before - 5);
    const other = await prescribe({ ...body, quantity: 6 }, key);
    expect(other.status).toBe(422);
    expect(other.body.code).toBe("IDEMPOTENCY_KEY_REUSED");
    expect((await stock("amoxicillin")).quantity).toBe(before - 5);
  });

  it("stock runs out mid-burst: the dispenses that fit complete, the rest are declined and on record, stock never negative", async () => {
    await s.inventory.write("restock", {
      requestId: "seed-ibu",
      clinicId: s.clinic,
      medicationCode: "ibuprofen",
      quantity: 10,
      lot: "I1",
      expiresOn: "",
    });
    const appointmentId = await s.book();
    const answers = await Promise.all(
      Array.from({ length: 16 }, () =>
        prescribe({ appointmentId, medicationCode: "ibuprofen", quantity: 1, dosage }),
      ),
    );
    const ok = answers.filter((a) => a.status === 201);
    const declined = answers.filter((a) => a.status === 409);
    expect(ok).toHaveLength(10);
    expect(declined).toHaveLength(6);
    for (const d of declined) {
      expect(d.body.code).toBe("INSUFFICIENT_STOCK");
      const onRecord = (await (
        await fetch(`${s.base}/v1/prescriptions/${d.body.prescriptionId}`, { headers: await as(admin) })
      ).json()) as J;
      expect(onRecord).toMatchObject({ status: "stopped", dispense: { status: "declined" } });
    }
    expect((await stock("ibuprofen")).quantity).toBe(0);
    const page = (await (
      await fetch(`${s.base}/v1/appointments/${appointmentId}/prescriptions?limit=100`, {
        headers: await as(admin),
      })
    ).json()) as J;
    const statuses = page.items.map((p: J) => `${p.status}/${p.dispense.status}`).sort();
    expect(statuses.filter((x: string) => x === "completed/completed")).toHaveLength(10);
    expect(statuses.filter((x: string) => x === "stopped/declined")).toHaveLength(6);
    // Pagination walks the same 16, in pages of 5.
    const seen: string[] = [];
    let cursor: string | null = "";
    while (cursor !== null) {
      const q = cursor ? `&cursor=${cursor}` : "";
      const p = (await (
        await fetch(`${s.base}/v1/appointments/${appointmentId}/prescriptions?limit=5${q}`, {
          headers: await as(admin),
        })
      ).json()) as J;
      seen.push(...p.items.map((x: J) => x.id));
      cursor = p.nextCursor;
    }
    expect(seen).toEqual(page.items.map((p: J) => p.id));
  });

  it("cancel of a completed prescription returns exactly its lots; twice → 409 already-cancelled, returned once", async () => {
    const appointmentId = await s.book();
    const before = await stock("amoxicillin");
    const a = await prescribe({ appointmentId, medicationCode: "amoxicillin", quantity: 7, dosage });
    expect(a.status).toBe(201);
    const c1 = await post(`/v1/prescriptions/${a.body.id}/cancel`);
    expect(c1.status).toBe(200);
    expect(c1.body.status).toBe("cancelled");
    expect(c1.body.dispense.returnStatus).toBe("returned");
    expect(await stock("amoxicillin")).toEqual(before);
    const c2 = await post(`/v1/prescriptions/${a.body.id}/cancel`);
    expect(c2.status).toBe(409);
    expect(c2.body.code).toBe("ALREADY_CANCELLED");
    expect(await stock("amoxicillin")).toEqual(before);
  });

  it("cancelling the appointment cancels its prescriptions and returns their stock", async () => {
    const appointmentId = await s.book();
    const before = await stock("amoxicillin");
    for (const quantity of [2, 3]) {
      expect(
        (await prescribe({ appointmentId, medicationCode: "amoxicillin", quantity, dosage })).status,
      ).toBe(201);
    }
    expect((await stock("amoxicillin")).quantity).toBe(before.quantity - 5);
    expect((await post(`/v1/appointments/${appointmentId}/cancel`)).status).toBe(200);
    // The medication service hears of it on the event stream (its own consumer group).
    await until(async () => {
      const page = (await (
        await fetch(`${s.base}/v1/appointments/${appointmentId}/prescriptions`, { headers: await as(admin) })
      ).json()) as J;
      const statuses = page.items.map((p: J) => `${p.status}/${p.dispense.returnStatus}`);
      return statuses.join() === "cancelled/returned,cancelled/returned" ? true : undefined;
    }, "the appointment's prescriptions cancelled and their stock returned");
    expect(await stock("amoxicillin")).toEqual(before);
    // A cancelled appointment takes no new prescription.
    const late = await prescribe({ appointmentId, medicationCode: "amoxicillin", quantity: 1, dosage });
    expect(late.status).toBe(409);
    expect(late.body.code).toBe("APPOINTMENT_NOT_BOOKED");
  });

  it("bad input names the field; an unknown appointment is 404", async () => {
    const appointmentId = await s.book();
    const cases: [Record<string, unknown>, string][] = [
      [{ appointmentId: "nope", medicationCode: "amoxicillin", quantity: 1, dosage }, "appointmentId"],
      [{ appointmentId, medicationCode: "a b", quantity: 1, dosage }, "medicationCode"],
      [{ appointmentId, medicationCode: "amoxicillin", quantity: 0, dosage }, "quantity"],
      [
        { appointmentId, medicationCode: "amoxicillin", quantity: 1, dosage: { ...dosage, unit: "handful" } },
        "dosage.unit",
      ],
      [
        { appointmentId, medicationCode: "amoxicillin", quantity: 1, dosage: { ...dosage, days: 0 } },
        "dosage.days",
      ],
      [{ appointmentId, medicationCode: "amoxicillin", quantity: 1 }, "dosage"],
    ];
    for (const [body, field] of cases) {
      const a = await prescribe(body);
      expect(a.status, JSON.stringify(body)).toBe(400);
      expect(a.headers.get("content-type")).toMatch(/problem\+json/);
      expect(JSON.stringify(a.body)).toContain(field);
    }
    const unknown = await prescribe({
      appointmentId: randomUUID(),
      medicationCode: "amoxicillin",
      quantity: 1,
      dosage,
    });
    expect(unknown.status).toBe(404);
    expect(
      (await fetch(`${s.base}/v1/prescriptions/${randomUUID()}`, { headers: await as(admin) })).status,
    ).toBe(404);
    expect(
      (
        await fetch(`${s.base}/v1/appointments/${appointmentId}/prescriptions?cursor=zzz`, {
          headers: await as(admin),
        })
      ).status,
    ).toBe(400);
  });
});

describe("a crash at each step of the saga loses nothing and deducts once", () => {
  for (const point of [
    "medication-after-record",
    "medication-after-deduct-sent",
    "medication-before-complete",
  ]) {
    it(`SIGKILL at ${point}, restart: the prescription ends completed, stock down exactly once`, async () => {
      const appointmentId = await s.book();
      const before = (await stock("amoxicillin")).quantity;
      await s.cluster.converged();
      s.medication.proc.kill("SIGKILL");
      await s.medication.exited;
      const dying = await s.restartMedication([point]);
      const key = randomUUID();
      const body = { appointmentId, medicationCode: "amoxicillin", quantity: 4, dosage };
      const first = await prescribeOnce(body, key);
      expect(first.status).toBeGreaterThanOrEqual(500);
      expect((await dying.exited).signal).toBe("SIGKILL");
      expect(dying.lines.join("\n")).toContain(`crashpoint ${point}`);
      await s.restartMedication();
      await settled();
      const again = await prescribe(body, key);
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.body.status).toBe("completed");
      expect(await replicasAgree("amoxicillin")).toBe(before - 4);
    }, 90_000);
  }

  it("SIGKILL at a cancel's return, restart: the lots come back exactly once", async () => {
    const appointmentId = await s.book();
    const before = await stock("amoxicillin");
    const a = await prescribe({ appointmentId, medicationCode: "amoxicillin", quantity: 3, dosage });
    expect(a.status).toBe(201);
    s.medication.proc.kill("SIGKILL");
    await s.medication.exited;
    const dying = await s.restartMedication(["medication-before-returned"]);
    expect((await post(`/v1/prescriptions/${a.body.id}/cancel`)).status).toBeGreaterThanOrEqual(500);
    expect((await dying.exited).signal).toBe("SIGKILL");
    await s.restartMedication();
    await settled();
    const { body: got } = await untilAnswered(async () => {
      const res = await fetch(`${s.base}/v1/prescriptions/${a.body.id}`, { headers: await as(admin) });
      return { status: res.status, body: (await res.json()) as J, headers: res.headers };
    });
    expect(got.status).toBe("cancelled");
    expect(got.dispense.returnStatus).toBe("returned");
    expect(await stock("amoxicillin")).toEqual(before);
  }, 90_000);

  it("the inventory leader SIGKILLed during a burst: every prescription ends completed, deducted once each", async () => {
    const appointmentId = await s.book();
    const before = (await stock("amoxicillin")).quantity;
    const leader = await s.cluster.waitLeader();
    const bodies = Array.from({ length: 20 }, (_, i) => ({
      key: randomUUID(),
      body: { appointmentId, medicationCode: "amoxicillin", quantity: 1 + (i % 3), dosage },
    }));
    const burst = bodies.map((b) => prescribeOnce(b.body, b.key).catch(() => undefined));
    await s.cluster.signal(leader, "SIGKILL");
    await Promise.all(burst);
    s.cluster.start(leader);
    await s.cluster.procs.get(leader)!.waitFor(/inventory replica listening/, 60_000);
    await settled(60_000);
    const answers = await Promise.all(
      bodies.map((b) => untilAnswered(() => prescribeOnce(b.body, b.key), 60_000)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    const total = bodies.reduce((n, b) => n + b.body.quantity, 0);
    expect(await replicasAgree("amoxicillin")).toBe(before - total);
  }, 120_000);
});
