// Owns the gRPC backend (--grpc): straight to the appointment and medication instances (round
// robin) and to the inventory leader. A follower answers NOT_LEADER naming the leader; the client follows the name,
// or walks the replicas when none is named, with the same request id on every try, so a write is
// applied at most once whatever the retries. Outcomes are classed as the gateway would answer them
// (the error code's HTTP status); a call that got no answer from a server is a network error.
import { randomUUID } from "node:crypto";
import { type ClientUnaryCall, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { AppointmentServiceClient, SlotStatus } from "../gen/medisync/v1/appointment.ts";
import { InventoryServiceClient, ReadConsistency } from "../gen/medisync/v1/inventory.ts";
import { MedicationServiceClient } from "../gen/medisync/v1/medication.ts";
import { errorCodes, fromGrpcError } from "../shared/errors.ts";
import { clientChannelOptions } from "../shared/grpc.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";
import {
  type Answer,
  type Backend,
  type ClinicInfo,
  type PrescriptionOrder,
  type SlotInfo,
  type StockInfo,
  usableUnits,
} from "./backend.ts";
import type { Patient } from "./identity.ts";
import { kindOfStatus, type Outcome } from "./stats.ts";
import { TargetDownError } from "./usage-error.ts";

type Unary<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

const probeDeadlineMs = 2_000;
/** Pause before walking to the next replica when no leader is known (an election is running). */
const noLeaderPauseMs = 25;

/** One unary call with a deadline; never rejects. */
function call<Req, Res>(method: Unary<Req, Res>, req: Req, deadlineMs: number): Promise<Answer<Res>> {
  return new Promise((resolve) => {
    method(req, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (!err) return resolve({ outcome: { kind: "ok", status: 200 }, value: res });
      resolve({ outcome: outcomeOf(err) });
    });
  });
}

function outcomeOf(err: ServiceError): Outcome & { leaderId?: string } {
  // The services send their error code in trailing metadata; without one, no server answered.
  const coded = Object.keys(err.metadata?.getMap() ?? {}).some((k) => k.startsWith("medisync-"));
  if (!coded && (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED)) {
    return {
      kind: "error",
      status: 0,
      code: err.code === status.UNAVAILABLE ? "UNAVAILABLE" : "timeout",
    };
  }
  const app = fromGrpcError(err);
  const http = errorCodes[app.code].http;
  const o: Outcome & { leaderId?: string } = { kind: kindOfStatus(http), status: http, code: app.code };
  if (app.code === "NOT_LEADER") o.leaderId = app.meta.leaderid ?? "";
  return o;
}

export interface GrpcTargets {
  appointmentAddrs: string[];
  inventoryPeers: { id: string; address: string }[];
  medicationAddrs: string[];
}

export class GrpcBackend implements Backend {
  readonly describe: string;
  private readonly appointments: AppointmentServiceClient[];
  private readonly inventory = new Map<string, InventoryServiceClient>();
  private readonly medications: MedicationServiceClient[];
  private rr = 0;
  private rrMedication = 0;
  private leaderId: string | undefined;
  private walk = 0;

  constructor(
    private readonly t: GrpcTargets,
    private readonly timeoutMs: number,
    /** The services refuse a client without a certificate of their CA (TLS_* in the environment). */
    security: ClientSecurity = plaintextClients,
  ) {
    this.describe = `appointment ${t.appointmentAddrs.join(",")}; inventory ${t.inventoryPeers.map((p) => p.address).join(",")}; medication ${t.medicationAddrs.join(",")}`;
    const ch = security.channel({ service: "appointment" });
    this.appointments = t.appointmentAddrs.map(
      (a) => new AppointmentServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
    );
    const med = security.channel({ service: "medication" });
    this.medications = t.medicationAddrs.map(
      (a) => new MedicationServiceClient(a, med.credentials, { ...clientChannelOptions, ...med.options }),
    );
    for (const p of t.inventoryPeers) {
      const inv = security.channel({ service: "inventory", id: p.id });
      this.inventory.set(
        p.id,
        new InventoryServiceClient(p.address, inv.credentials, { ...clientChannelOptions, ...inv.options }),
      );
    }
  }

  private appointment(): AppointmentServiceClient {
    const c = this.appointments[this.rr % this.appointments.length]!;
    this.rr = (this.rr + 1) % this.appointments.length;
    return c;
  }

  async probeAppointments(): Promise<void> {
    for (const [i, c] of this.appointments.entries()) {
      const r = await call(c.listClinics.bind(c), {}, probeDeadlineMs);
      if (r.outcome.kind !== "ok") {
        throw new TargetDownError(
          `the appointment service at ${this.t.appointmentAddrs[i]} does not answer (${r.outcome.code}): start it (npm start) or pass --appointment-addrs`,
        );
      }
    }
  }

  async probeInventory(_clinicCode: string): Promise<void> {
    const answers = await Promise.all(
      [...this.inventory.values()].map((c) => call(c.status.bind(c), {}, probeDeadlineMs)),
    );
    if (!answers.some((a) => a.outcome.kind === "ok")) {
      throw new TargetDownError(
        `no inventory replica answers at ${this.t.inventoryPeers.map((p) => p.address).join(", ")}: start them (npm start) or pass --inventory-peers`,
      );
    }
  }

  private medication(): MedicationServiceClient {
    const c = this.medications[this.rrMedication % this.medications.length]!;
    this.rrMedication = (this.rrMedication + 1) % this.medications.length;
    return c;
  }

  /** Every medication instance answers: a prescription that does not exist is an answer too. */
  async probeMedication(): Promise<void> {
    for (const [i, c] of this.medications.entries()) {
      const r = await call(c.getPrescription.bind(c), { id: randomUUID() }, probeDeadlineMs);
      if (r.outcome.kind === "error") {
        throw new TargetDownError(
          `the medication service at ${this.t.medicationAddrs[i]} does not answer (${r.outcome.code}): start it (npm start) or pass --medication-addrs`,
        );
      }
    }
  }

  async listClinics(): Promise<Answer<ClinicInfo[]>> {
    const c = this.appointment();
    const r = await call(c.listClinics.bind(c), {}, this.timeoutMs);
    if (!r.value) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: r.value.clinics.map((k) => ({ id: k.id, code: k.code, timeZone: k.timeZone })),
    };
  }

  async listSlots(clinicId: string, date: string, _by: Patient): Promise<Answer<SlotInfo[]>> {
    const c = this.appointment();
    const r = await call(c.listSlots.bind(c), { clinicId, date, practitionerId: "" }, this.timeoutMs);
    if (!r.value) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: r.value.slots.map((s) => ({
        id: s.id,
        free: s.status === SlotStatus.SLOT_STATUS_FREE,
        start: s.start,
      })),
    };
  }

  async book(slotId: string, by: Patient, idempotencyKey: string): Promise<Answer<{ id: string }>> {
    const c = this.appointment();
    const r = await call(c.book.bind(c), { slotId, patientId: by.id, idempotencyKey }, this.timeoutMs);
    const id = r.value?.appointment?.id;
    return id ? { outcome: { kind: "ok", status: 201 }, value: { id } } : { outcome: r.outcome };
  }

  async cancel(appointmentId: string, _by: Patient): Promise<Answer<void>> {
    const c = this.appointment();
    return { outcome: (await call(c.cancel.bind(c), { appointmentId }, this.timeoutMs)).outcome };
  }

  /** A clinic's stock, every page, each read on the leader (linearizable). */
  async listStock(clinicCode: string): Promise<Answer<StockInfo[]>> {
    const lines: StockInfo[] = [];
    let pageToken = "";
    for (;;) {
      const r = await this.onLeader((c) => c.listStock.bind(c), {
        clinicId: clinicCode,
        consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE,
        pageSize: 0,
        pageToken,
      });
      if (!r.value) return { outcome: r.outcome };
      for (const i of r.value.items) lines.push({ medicationCode: i.medicationCode, usable: usableUnits(i) });
      pageToken = r.value.nextPageToken;
      if (!pageToken) return { outcome: r.outcome, value: lines };
    }
  }

  async prescribe(order: PrescriptionOrder, idempotencyKey: string): Promise<Answer<{ id: string }>> {
    const c = this.medication();
    const { appointmentId, medicationCode, quantity, dosage } = order;
    const r = await call(
      c.issuePrescription.bind(c),
      { appointmentId, medicationCode, quantity, dosage, idempotencyKey },
      this.timeoutMs,
    );
    const id = r.value?.prescription?.id;
    return id ? { outcome: { kind: "ok", status: 201 }, value: { id } } : { outcome: r.outcome };
  }

  /**
   * A call on the leader: the known one, else the replicas in turn; NOT_LEADER with a name goes
   * there next. Gives up with the last answer when the request's timeout is spent.
   */
  private async onLeader<Req, Res>(
    pick: (c: InventoryServiceClient) => Unary<Req, Res>,
    req: Req,
  ): Promise<Answer<Res>> {
    const deadline = Date.now() + this.timeoutMs;
    const ids = [...this.inventory.keys()];
    let last: Outcome = { kind: "error", status: 0, code: "timeout" };
    for (;;) {
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) return { outcome: last };
      const id = this.leaderId ?? ids[this.walk++ % ids.length]!;
      const r = await call(pick(this.inventory.get(id)!), req, remainingMs);
      const o = r.outcome as Outcome & { leaderId?: string };
      if (o.code === "NOT_LEADER" || o.kind === "error") {
        last = o;
        const named = o.leaderId;
        this.leaderId = named && named !== id && this.inventory.has(named) ? named : undefined;
        if (!this.leaderId) await new Promise((r) => setTimeout(r, noLeaderPauseMs));
        continue;
      }
      this.leaderId = id;
      return o.kind === "ok" ? { outcome: { kind: "ok", status: 200 }, value: r.value } : { outcome: o };
    }
  }

  /** A write on the leader: its outcome only. */
  private async write<Req, Res>(
    pick: (c: InventoryServiceClient) => Unary<Req, Res>,
    req: Req,
  ): Promise<Answer<void>> {
    return { outcome: (await this.onLeader(pick, req)).outcome };
  }

  restock(clinicId: string, medicationCode: string, quantity: number, key: string): Promise<Answer<void>> {
    return this.write((c) => c.restock.bind(c), {
      requestId: key,
      clinicId,
      medicationCode,
      quantity,
      lot: "",
      expiresOn: "",
    });
  }

  deduct(clinicId: string, medicationCode: string, quantity: number, key: string): Promise<Answer<void>> {
    return this.write((c) => c.deduct.bind(c), { requestId: key, clinicId, medicationCode, quantity });
  }

  transfer(
    fromClinicId: string,
    toClinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    return this.write((c) => c.transfer.bind(c), {
      requestId: key,
      fromClinicId,
      toClinicId,
      medicationCode,
      quantity,
    });
  }

  async close(): Promise<void> {
    for (const c of this.appointments) c.close();
    for (const c of this.inventory.values()) c.close();
    for (const c of this.medications) c.close();
  }
}
