// Owns the client side of the appointment contract (the gateway's, the medication service's): one
// gRPC client per instance, calls spread round-robin, and retries on another instance when a call
// may not have been served. Writes are retried only where a retry cannot do something twice (Book
// always carries an idempotency key). The instances may change at run time (setAddresses, fed by
// the service registry, src/shared/service-registry.ts).
import {
  type Appointment,
  AppointmentServiceClient,
  AppointmentStatus,
  type ListPatientAppointmentsResponse,
  type ListSlotsRequest,
  ListSlotsResponse,
  type ListSlotsStreamRequest,
  type ListSlotsStreamResponse,
} from "../gen/medisync/v1/appointment.ts";
import { CallStreamClient } from "./call-stream.ts";
import { ClientPool } from "./client-pool.ts";
import { AppError, fromWireError } from "./errors.ts";
import { callUnary, clientChannelOptions } from "./grpc.ts";
import { defaultRetryPolicy, type RetryPolicy, withRetries } from "./retry.ts";
import { type ClientSecurity, plaintextClients } from "./tls.ts";

export interface AppointmentClientOptions {
  /** The instances to start with; none when the service registry is to tell (setAddresses). */
  addrs: string[];
  /** Deadline of one try; the retry policy's overall deadline bounds all tries together. */
  deadlineMs: number;
  retry?: RetryPolicy;
  /** The process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted. */
  security?: ClientSecurity;
}

/** One appointment instance: its gRPC client, and its ListSlots calls on one ListSlotsStream. */
class Instance {
  readonly slots: CallStreamClient<
    ListSlotsStreamRequest,
    ListSlotsRequest,
    ListSlotsResponse,
    ListSlotsStreamResponse
  >;

  constructor(readonly grpc: AppointmentServiceClient) {
    this.slots = new CallStreamClient({
      open: () => grpc.listSlotsStream(),
      frame: (id, requestId, query): ListSlotsStreamRequest => ({ id, requestId, query }),
      read: (a: ListSlotsStreamResponse) => {
        const err = fromWireError(a);
        if (err) return { id: a.id, err, res: undefined };
        try {
          return { id: a.id, err: undefined, res: ListSlotsResponse.decode(a.answer) };
        } catch {
          // What grpc-js answers for a unary response that does not decode.
          return {
            id: a.id,
            err: new AppError("INTERNAL", "upstream answer did not decode"),
            res: undefined,
          };
        }
      },
      unaryCall: (req: ListSlotsRequest, deadlineMs, requestId) =>
        callUnary(grpc.listSlots.bind(grpc), req, deadlineMs, requestId),
    });
  }

  close(): void {
    this.slots.close();
    this.grpc.close();
  }
}

export class AppointmentClient {
  private readonly pool: ClientPool<Instance>;
  private readonly overallDeadlineMs: number;

  constructor(private readonly opts: AppointmentClientOptions) {
    const ch = (opts.security ?? plaintextClients).channel({ service: "appointment" });
    this.overallDeadlineMs =
      opts.retry?.overallDeadlineMs ?? Math.max(defaultRetryPolicy.overallDeadlineMs, opts.deadlineMs * 2);
    // A removed instance's client stays open while calls begun on it may still run.
    this.pool = new ClientPool(
      "appointment",
      (a) =>
        new Instance(
          new AppointmentServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
        ),
      opts.addrs,
      this.overallDeadlineMs,
    );
  }

  /** Every instance may be tried once, and one more: the instance count may change at run time. */
  private policy(): RetryPolicy {
    return (
      this.opts.retry ?? {
        ...defaultRetryPolicy,
        attemptsMax: Math.max(defaultRetryPolicy.attemptsMax, this.pool.size + 1),
        overallDeadlineMs: this.overallDeadlineMs,
      }
    );
  }

  /** The instances to call from now on: new ones get a client, removed ones are closed. */
  setAddresses(addrs: readonly string[]): { added: string[]; removed: string[] } {
    return this.pool.setAddresses(addrs);
  }

  addresses(): string[] {
    return this.pool.addresses();
  }

  private pick(): AppointmentServiceClient {
    return this.pool.pick().grpc;
  }

  /** Each try goes to an instance not tried yet, so one dead instance costs a retry, not an error. */
  private call<T>(
    fn: (c: AppointmentServiceClient, deadlineMs: number, attempt: number, instance: Instance) => Promise<T>,
  ): Promise<T> {
    const tried = new Set<Instance>();
    return withRetries(this.policy(), ({ n, remainingMs }) => {
      const i = this.pool.pick(tried);
      tried.add(i);
      return fn(i.grpc, Math.min(this.opts.deadlineMs, remainingMs), n, i);
    });
  }

  listClinics(requestId?: string) {
    return this.call((c, d) => callUnary(c.listClinics.bind(c), {}, d, requestId));
  }

  listPractitioners(clinicId: string, requestId?: string) {
    return this.call((c, d) => callUnary(c.listPractitioners.bind(c), { clinicId }, d, requestId));
  }

  /**
   * Not retried: a lost reply after the slots were made would turn a success into SLOT_OVERLAP.
   * The caller sees 503/504 and can list the day to learn what exists.
   */
  createSlots(
    req: {
      clinicId: string;
      practitionerId: string;
      start: string;
      end: string;
      minutes: number;
    },
    requestId?: string,
  ) {
    const c = this.pick();
    return callUnary(c.createSlots.bind(c), req, this.opts.deadlineMs, requestId);
  }

  listSlots(
    clinicId: string,
    date: string,
    practitionerId: string | undefined,
    requestId?: string,
  ): Promise<ListSlotsResponse> {
    // The hot read: on the instance's ListSlotsStream (shared/call-stream.ts), not a unary call.
    return this.call((_c, d, _n, i) =>
      i.slots.call({ clinicId, date, practitionerId: practitionerId ?? "" }, d, requestId),
    );
  }

  /** `clinicCodesAllowed`: a clinician's booking, refused (FORBIDDEN) at a slot of any other clinic. */
  async book(
    slotId: string,
    patientId: string,
    idempotencyKey: string,
    requestId?: string,
    clinicCodesAllowed?: readonly string[],
  ) {
    const scope = clinicCodesAllowed
      ? { clinicScope: { clinicIds: [], clinicCodes: [...clinicCodesAllowed] } }
      : {};
    const res = await this.call((c, d) =>
      callUnary(c.book.bind(c), { slotId, patientId, idempotencyKey, ...scope }, d, requestId),
    );
    return { appointment: requireAppointment(res.appointment), replayed: res.replayed };
  }

  async get(appointmentId: string, requestId?: string): Promise<Appointment> {
    const res = await this.call((c, d) => callUnary(c.get.bind(c), { appointmentId }, d, requestId));
    return requireAppointment(res.appointment);
  }

  /** One page of a patient's appointments, newest first; a read, so retried on another instance. */
  listPatientAppointments(
    req: {
      patientId: string;
      /** 0: the service's default. */
      pageSize: number;
      /** "": the first page. */
      pageToken: string;
      /** Staff: only these clinics' appointments (none when both lists are empty). */
      clinicScope?: { clinicIds: string[]; clinicCodes: string[] };
      status?: AppointmentStatus;
    },
    requestId?: string,
  ): Promise<ListPatientAppointmentsResponse> {
    const msg = { ...req, status: req.status ?? AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED };
    return this.call((c, d) => callUnary(c.listPatientAppointments.bind(c), msg, d, requestId));
  }

  /**
   * Retried like a read. A retry after a lost reply finds the appointment already cancelled; only
   * then is ALREADY_CANCELLED taken as our own earlier success and answered with the appointment.
   */
  async cancel(appointmentId: string, requestId?: string): Promise<Appointment> {
    let retried = false;
    try {
      const res = await this.call((c, d, attempt) => {
        retried = attempt > 0;
        return callUnary(c.cancel.bind(c), { appointmentId }, d, requestId);
      });
      return requireAppointment(res.appointment);
    } catch (err) {
      if (err instanceof AppError && err.code === "ALREADY_CANCELLED" && retried)
        return this.get(appointmentId, requestId);
      throw err;
    }
  }

  close(): void {
    this.pool.close();
  }
}

function requireAppointment(a: Appointment | undefined): Appointment {
  if (!a) throw new AppError("INTERNAL", "appointment service answered without an appointment");
  return a;
}
