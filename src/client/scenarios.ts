// Owns what each scenario does and the state they share: the free slots that browsing found (the
// only slots booking ever tries: no made-up ids), the appointments this run booked (the only ones
// cancelling and prescribing touch: a cancel by the patient who booked it, a prescription by a
// clinician of its clinic, for a medication that clinic's stock list showed), and the stock change
// the run's acknowledged writes add up to.
import { randomBytes } from "node:crypto";
import type { Backend, Dosage } from "./backend.ts";
import type { Patient } from "./identity.ts";
import type { ScenarioName } from "./mix.ts";
import type { Outcome } from "./stats.ts";

/** A set to draw random members from in O(1). */
export class Pool<T> {
  private readonly items: T[] = [];
  private readonly index = new Map<T, number>();

  get size(): number {
    return this.items.length;
  }

  add(x: T): void {
    if (this.index.has(x)) return;
    this.index.set(x, this.items.length);
    this.items.push(x);
  }

  delete(x: T): void {
    const i = this.index.get(x);
    if (i === undefined) return;
    const last = this.items.pop()!;
    this.index.delete(x);
    if (i < this.items.length) {
      this.items[i] = last;
      this.index.set(last, i);
    }
  }

  take(random: () => number = Math.random): T | undefined {
    if (this.items.length === 0) return undefined;
    const x = this.items[Math.floor(random() * this.items.length)]!;
    this.delete(x);
    return x;
  }
}

export interface InventoryCatalog {
  clinics: string[];
  medications: string[];
}

export interface ScenarioContext {
  backend: Backend;
  /** Clinics (id and code) with the dates (in each clinic's zone) browsing looks at. */
  days: { clinicId: string; clinicCode: string; date: string }[];
  /**
   * Usable units per medication at each clinic prescriptions are written for (by clinic code), from
   * its stock list before the run; the run's own acknowledged writes keep it current.
   */
  clinicStock: Map<string, Map<string, number>>;
  inventory: InventoryCatalog;
  /** The patient the next `requests` requests act for (identity.ts; over gRPC a fresh id each time). */
  patient(requests: number): Promise<Patient>;
}

/** What a scenario reports: its outcome, or "skipped" when it had nothing to act on. */
export type Result = Outcome | "skipped";

/** Slots starting sooner than this are not booked. */
const bookableAfterMs = 60_000;

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const between = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

export class Scenarios {
  readonly freeSlots = new Pool<string>();
  readonly booked = new Pool<string>();
  /** Who booked each appointment in `booked`: the one whose token cancels it. */
  private readonly bookedBy = new Map<string, Patient>();
  /** The clinic (code) of each free slot known and of each appointment booked. */
  private readonly slotClinic = new Map<string, string>();
  private readonly bookedAt = new Map<string, string>();
  /** Appointments with a prescription of this run: attended, so never cancelled by it. */
  prescribed = 0;
  /** Net stock change per "clinic/medication" from the writes that were acknowledged. */
  readonly stockDelta = new Map<string, number>();
  /** Idempotency keys of this run: unique, so no write is a replay of another. */
  private readonly runId = randomBytes(4).toString("hex");
  private seq = 0;

  constructor(private readonly ctx: ScenarioContext) {}

  private key(kind: string): string {
    return `mc-${this.runId}-${kind}-${++this.seq}`;
  }

  private addDelta(clinic: string, medication: string, by: number): void {
    const k = `${clinic}/${medication}`;
    this.stockDelta.set(k, (this.stockDelta.get(k) ?? 0) + by);
  }

  /** An acknowledged stock write: the delta, and the stock prescriptions may draw on. */
  private applied(clinic: string, medication: string, by: number): void {
    this.addDelta(clinic, medication, by);
    this.adjustKnown(clinic, medication, by);
  }

  /** The stock a prescription may draw on, where the run knows a clinic's stock. */
  private adjustKnown(clinic: string, medication: string, by: number): void {
    const lines = this.ctx.clinicStock.get(clinic);
    if (lines) lines.set(medication, (lines.get(medication) ?? 0) + by);
  }

  /**
   * Browses a day; its free slots that start later than a minute from now join the pool (a patient
   * books a future slot; the service refuses past ones), the others leave it.
   */
  async browse(day = pick(this.ctx.days)): Promise<Outcome> {
    const r = await this.ctx.backend.listSlots(day.clinicId, day.date, await this.ctx.patient(1));
    const earliest = Date.now() + bookableAfterMs;
    for (const s of r.value ?? []) {
      if (s.free && Date.parse(s.start) > earliest) {
        this.freeSlots.add(s.id);
        this.slotClinic.set(s.id, day.clinicCode);
      } else {
        this.freeSlots.delete(s.id);
        this.slotClinic.delete(s.id);
      }
    }
    return r.outcome;
  }

  async book(): Promise<Result> {
    const slotId = this.freeSlots.take();
    if (!slotId) return "skipped";
    // Two requests of the patient's budget: the booking, and the cancel that may follow it.
    const by = await this.ctx.patient(2);
    const clinic = this.slotClinic.get(slotId)!;
    this.slotClinic.delete(slotId);
    const r = await this.ctx.backend.book(slotId, by, this.key("book"));
    if (r.value) {
      this.booked.add(r.value.id);
      this.bookedBy.set(r.value.id, by);
      this.bookedAt.set(r.value.id, clinic);
    }
    return r.outcome;
  }

  async cancel(): Promise<Result> {
    const id = this.booked.take();
    if (!id) return "skipped";
    const by = this.bookedBy.get(id)!;
    this.bookedBy.delete(id);
    this.bookedAt.delete(id);
    return (await this.ctx.backend.cancel(id, by)).outcome;
  }

  /**
   * Prescribes for an appointment this run booked, a medication its clinic's stock list showed
   * enough of, as a clinician of that clinic; the medication service deducts the stock. The
   * appointment then counts as attended: no cancel of this run touches it (a cancel would give the
   * stock back later, on the medication service's own time). Refused (4xx), it stays bookable,
   * cancellable, prescribable; with no answer it may have been prescribed, so it is left alone.
   */
  async prescribe(): Promise<Result> {
    const id = this.booked.take();
    if (!id) return "skipped";
    const clinic = this.bookedAt.get(id)!;
    const dosage: Dosage = { amount: 1, unit: "tablet", timesPerDay: between(1, 3), days: between(1, 5) };
    const quantity = dosage.amount * dosage.timesPerDay * dosage.days;
    const stocked = [...(this.ctx.clinicStock.get(clinic) ?? [])].filter(([, n]) => n >= quantity);
    if (stocked.length === 0) {
      this.booked.add(id);
      return "skipped";
    }
    const [medicationCode] = pick(stocked);
    // Held while in flight, so concurrent prescriptions do not count on the same units.
    this.adjustKnown(clinic, medicationCode, -quantity);
    const r = await this.ctx.backend.prescribe(
      { appointmentId: id, clinicCode: clinic, medicationCode, quantity, dosage },
      this.key("prescribe"),
    );
    if (r.outcome.kind === "ok") {
      this.prescribed++;
      this.bookedBy.delete(id);
      this.bookedAt.delete(id);
      this.addDelta(clinic, medicationCode, -quantity);
    } else if (r.outcome.kind === "4xx") {
      this.booked.add(id);
      // The list was out of date (another client's deducts): count on none of it from now.
      if (r.outcome.code === "INSUFFICIENT_STOCK") this.ctx.clinicStock.get(clinic)?.set(medicationCode, 0);
      else this.adjustKnown(clinic, medicationCode, quantity);
    }
    // A 5xx or no answer may have dispensed: the units stay held.
    return r.outcome;
  }

  async restock(): Promise<Outcome> {
    const { clinics, medications } = this.ctx.inventory;
    const [c, m, q] = [pick(clinics), pick(medications), between(10, 50)];
    const r = await this.ctx.backend.restock(c, m, q, this.key("restock"));
    if (r.outcome.kind === "ok") this.applied(c, m, q);
    return r.outcome;
  }

  async deduct(): Promise<Outcome> {
    const { clinics, medications } = this.ctx.inventory;
    const [c, m, q] = [pick(clinics), pick(medications), between(1, 5)];
    const r = await this.ctx.backend.deduct(c, m, q, this.key("deduct"));
    if (r.outcome.kind === "ok") this.applied(c, m, -q);
    return r.outcome;
  }

  async transfer(): Promise<Result> {
    const { clinics, medications } = this.ctx.inventory;
    if (clinics.length < 2) return "skipped";
    const from = pick(clinics);
    const to = pick(clinics.filter((c) => c !== from));
    const [m, q] = [pick(medications), between(1, 5)];
    const r = await this.ctx.backend.transfer(from, to, m, q, this.key("transfer"));
    if (r.outcome.kind === "ok") {
      this.applied(from, m, -q);
      this.applied(to, m, q);
    }
    return r.outcome;
  }

  run(name: ScenarioName): Promise<Result> {
    switch (name) {
      case "browse":
        return this.browse();
      case "book":
        return this.book();
      case "cancel":
        return this.cancel();
      case "prescribe":
        return this.prescribe();
      case "restock":
        return this.restock();
      case "deduct":
        return this.deduct();
      case "transfer":
        return this.transfer();
    }
  }
}
