// Owns the gateway's side of the medication contract: one gRPC client per instance, calls spread
// round-robin, retried on another instance when a call may not have been served. Issue is retried
// freely (it carries its idempotency key); cancel like the appointment's (a retry that finds it
// cancelled after a lost reply answers the prescription).
import { type Dosage, MedicationServiceClient, type Prescription } from "../gen/medisync/v1/medication.ts";
import { AppError } from "../shared/errors.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { defaultRetryPolicy, type RetryPolicy, withRetries } from "../shared/retry.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";

export class MedicationClient {
  private readonly clients: MedicationServiceClient[];
  private next = 0;
  private readonly retry: RetryPolicy;

  /** security: the process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted. */
  constructor(private readonly opts: { addrs: string[]; deadlineMs: number; security?: ClientSecurity }) {
    if (opts.addrs.length === 0) throw new Error("MedicationClient needs at least one address");
    const ch = (opts.security ?? plaintextClients).channel({ service: "medication" });
    this.clients = opts.addrs.map(
      (a) => new MedicationServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
    );
    // An issue waits for inventory (leader discovery up to its own 5 s): room for that, once.
    this.retry = {
      ...defaultRetryPolicy,
      attemptsMax: Math.max(defaultRetryPolicy.attemptsMax, opts.addrs.length + 1),
      overallDeadlineMs: Math.max(defaultRetryPolicy.overallDeadlineMs, opts.deadlineMs * 2),
    };
  }

  private call<T>(fn: (c: MedicationServiceClient, deadlineMs: number, attempt: number) => Promise<T>) {
    return withRetries(this.retry, ({ n, remainingMs }) => {
      const c = this.clients[this.next % this.clients.length]!;
      this.next = (this.next + 1) % this.clients.length;
      return fn(c, Math.min(this.opts.deadlineMs, remainingMs), n);
    });
  }

  async issue(
    req: { appointmentId: string; medicationCode: string; quantity: number; dosage: Dosage },
    idempotencyKey: string,
    requestId: string,
  ): Promise<{ prescription: Prescription; replayed: boolean }> {
    const res = await this.call((c, d) =>
      callUnary(c.issuePrescription.bind(c), { ...req, idempotencyKey }, d, requestId),
    );
    return { prescription: required(res.prescription), replayed: res.replayed };
  }

  async get(id: string, requestId: string): Promise<Prescription> {
    const res = await this.call((c, d) => callUnary(c.getPrescription.bind(c), { id }, d, requestId));
    return required(res.prescription);
  }

  list(appointmentId: string, limit: number, cursor: string, requestId: string) {
    return this.call((c, d) =>
      callUnary(c.listPrescriptions.bind(c), { appointmentId, limit, cursor }, d, requestId),
    );
  }

  async cancel(id: string, requestId: string): Promise<Prescription> {
    let retried = false;
    try {
      const res = await this.call((c, d, attempt) => {
        retried = attempt > 0;
        return callUnary(c.cancelPrescription.bind(c), { id }, d, requestId);
      });
      return required(res.prescription);
    } catch (err) {
      if (err instanceof AppError && err.code === "ALREADY_CANCELLED" && retried)
        return this.get(id, requestId);
      throw err;
    }
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

function required(p: Prescription | undefined): Prescription {
  if (!p) throw new AppError("INTERNAL", "medication service answered without a prescription");
  return p;
}
