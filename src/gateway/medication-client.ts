// Owns the gateway's side of the medication contract: one gRPC client per instance (the instances
// may change at run time: setAddresses, fed by src/shared/service-registry.ts), calls spread
// round-robin, retried on another instance when a call may not have been served. Issue is retried
// freely (it carries its idempotency key); cancel like the appointment's (a retry that finds it
// cancelled after a lost reply answers the prescription).
import { type Dosage, MedicationServiceClient, type Prescription } from "../gen/medisync/v1/medication.ts";
import { ClientPool } from "../shared/client-pool.ts";
import { AppError } from "../shared/errors.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { defaultRetryPolicy, type RetryPolicy, withRetries } from "../shared/retry.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";

export class MedicationClient {
  private readonly pool: ClientPool<MedicationServiceClient>;
  private readonly overallDeadlineMs: number;

  /**
   * addrs: the instances to start with (none when the service registry is to tell); security: the
   * process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted.
   */
  constructor(private readonly opts: { addrs: string[]; deadlineMs: number; security?: ClientSecurity }) {
    const ch = (opts.security ?? plaintextClients).channel({ service: "medication" });
    // An issue waits for inventory (leader discovery up to its own 5 s): room for that, once.
    this.overallDeadlineMs = Math.max(defaultRetryPolicy.overallDeadlineMs, opts.deadlineMs * 2);
    this.pool = new ClientPool(
      "medication",
      (a) => new MedicationServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
      opts.addrs,
      this.overallDeadlineMs,
    );
  }

  /** The instances to call from now on: new ones get a client, removed ones are closed. */
  setAddresses(addrs: readonly string[]): { added: string[]; removed: string[] } {
    return this.pool.setAddresses(addrs);
  }

  private call<T>(fn: (c: MedicationServiceClient, deadlineMs: number, attempt: number) => Promise<T>) {
    const retry: RetryPolicy = {
      ...defaultRetryPolicy,
      attemptsMax: Math.max(defaultRetryPolicy.attemptsMax, this.pool.size + 1),
      overallDeadlineMs: this.overallDeadlineMs,
    };
    // Each try goes to an instance not tried yet (while one is left).
    const tried = new Set<MedicationServiceClient>();
    return withRetries(retry, ({ n, remainingMs }) => {
      const c = this.pool.pick(tried);
      tried.add(c);
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
    this.pool.close();
  }
}

function required(p: Prescription | undefined): Prescription {
  if (!p) throw new AppError("INTERNAL", "medication service answered without a prescription");
  return p;
}
