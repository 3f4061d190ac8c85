// Owns the REST backend: MediSync's HTTP API through the gateway (README "The API, by example"),
// over keep-alive connections with a bounded pool, each request with its own timeout and the bearer
// token of whoever the policy lets make it (identity.ts). Network failures are outcomes (kind
// "error"), never exceptions; a 401/403 is an outcome that names the role and the route refused.
import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { appointmentLimits } from "../shared/validation.ts";
import {
  type Answer,
  type Backend,
  type ClinicInfo,
  type PrescriptionOrder,
  type SlotInfo,
  type StockInfo,
  usableUnits,
} from "./backend.ts";
import type { Credential, Identity, Patient } from "./identity.ts";
import { kindOfStatus, type Outcome } from "./stats.ts";
import { AuthRefusedError, TargetDownError } from "./usage-error.ts";

interface Raw {
  outcome: Outcome;
  body: unknown;
}

/** A request: its method and path, and the route template its refusal names (as policy.ts keys it). */
interface Call {
  method: string;
  path: string;
  route: string;
  as: Credential | undefined;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One line for a 401/403: who was refused where, what the gateway said, and what to do. */
function refusalOf(status: number, route: string, as: Credential | undefined, body: unknown): string {
  const p = (body ?? {}) as { code?: unknown; detail?: unknown };
  const said = [p.code, p.detail].filter((x) => typeof x === "string" && x !== "").join(": ");
  const who = as ? `the ${as.role} token` : "a request without a token";
  const hint =
    status === 401
      ? "the gateway does not accept the client's tokens: it must trust the key beside AUTH_JWKS_FILE (npm start's data/auth/), or pass --token"
      : "that role may not do this there (src/shared/access-policy.ts)";
  return `the gateway refused ${who} on ${route} (${status}${said ? ` ${said}` : ""}): ${hint}`;
}

const probeTimeoutMs = 2_000;
/**
 * An idle keep-alive socket is closed by the client after this, before a server with Node's default
 * keep-alive timeout (5 s, the gateway's) closes it: a request sent on a socket the server is
 * closing that moment ends in ECONNRESET, counted as an error though the system never saw it.
 */
const idleSocketMs = 4_000;
/** How long the inventory probe keeps asking through 5xx (a leader being elected). */
const inventoryProbeMs = 10_000;
const probePauseMs = 200;
/** Items per page when the client reads a whole list: the gateway's maximum (docs/pagination.md). */
const listPageMax = appointmentLimits.pageLimitMax;

export class RestBackend implements Backend {
  readonly describe: string;
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;

  constructor(
    private readonly target: URL,
    connectionsMax: number,
    private readonly timeoutMs: number,
    private readonly identity: Identity,
  ) {
    this.describe = `gateway ${target.origin}`;
    this.lib = target.protocol === "https:" ? https : http;
    const Agent = target.protocol === "https:" ? https.Agent : http.Agent;
    // The agent's timeout covers idle sockets only: each request sets its own (timeoutMs).
    this.agent = new Agent({ keepAlive: true, maxSockets: connectionsMax, timeout: idleSocketMs });
  }

  private request(c: Call): Promise<Raw> {
    const { method, path, body, headers = {}, timeoutMs = this.timeoutMs } = c;
    return new Promise((resolve) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const h: Record<string, string> = { accept: "application/json", ...headers };
      if (c.as) h.authorization = c.as.authorization;
      if (payload !== undefined) {
        h["content-type"] = "application/json";
        h["content-length"] = String(Buffer.byteLength(payload));
      }
      let settled = false;
      const done = (r: Raw) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      const req = this.lib.request(
        new URL(path, this.target),
        { method, headers: h, agent: this.agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", (err: NodeJS.ErrnoException) =>
            done({ outcome: { kind: "error", status: 0, code: err.code ?? "ERESPONSE" }, body: undefined }),
          );
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            let parsed: unknown;
            try {
              parsed = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
            } catch {
              parsed = undefined;
            }
            const kind = kindOfStatus(status);
            const code =
              kind !== "ok" && parsed && typeof parsed === "object" && "code" in parsed
                ? String((parsed as { code: unknown }).code)
                : undefined;
            const outcome: Outcome = code ? { kind, status, code } : { kind, status };
            if (status === 401 || status === 403) outcome.refusal = refusalOf(status, c.route, c.as, parsed);
            done({ outcome, body: parsed });
          });
        },
      );
      req.setTimeout(timeoutMs, () => {
        done({ outcome: { kind: "error", status: 0, code: "timeout" }, body: undefined });
        req.destroy();
      });
      req.on("error", (err: NodeJS.ErrnoException) =>
        done({ outcome: { kind: "error", status: 0, code: err.code ?? err.message }, body: undefined }),
      );
      req.end(payload);
    });
  }

  private async probe(path: string, route: string, as: Credential | undefined, what: string): Promise<Raw> {
    const r = await this.request({ method: "GET", path, route, as, timeoutMs: probeTimeoutMs });
    if (r.outcome.refusal) throw new AuthRefusedError(r.outcome.refusal);
    if (r.outcome.kind === "error") {
      throw new TargetDownError(
        `the gateway at ${this.target.origin} is not reachable (${r.outcome.code}): start it (npm start) or point --target at it`,
      );
    }
    if (r.outcome.kind !== "ok") {
      throw new TargetDownError(
        `the gateway at ${this.target.origin} answered ${r.outcome.status}${r.outcome.code ? ` ${r.outcome.code}` : ""} to GET ${path}: ${what} is not ready`,
      );
    }
    return r;
  }

  async probeAppointments(): Promise<void> {
    await this.probe("/healthz", "GET /healthz", undefined, "the gateway");
    await this.probe(
      "/v1/clinics",
      "GET /v1/clinics",
      await this.identity.setup(),
      "the appointment service",
    );
  }

  /**
   * A linearizable stock read through the gateway (the leader confirms its leadership), with the
   * token the stock scenarios will use: proves both a replica set that answers and the grant. A
   * 5xx or no answer (an election under way) is asked again until inventoryProbeMs has passed.
   */
  async probeInventory(clinicCode: string): Promise<void> {
    await this.probe("/healthz", "GET /healthz", undefined, "the gateway");
    const route = "GET /v1/inventory/{clinicId}/stock";
    const deadline = Date.now() + inventoryProbeMs;
    let r: Raw;
    for (;;) {
      r = await this.request({
        method: "GET",
        // One line is proof enough: the read is linearizable however many it returns.
        path: `/v1/inventory/${encodeURIComponent(clinicCode)}/stock?limit=1`,
        route,
        as: await this.identity.stock(),
        timeoutMs: probeTimeoutMs,
      });
      const passing = r.outcome.kind === "5xx" || r.outcome.kind === "error";
      if (!passing || Date.now() >= deadline) break;
      await new Promise((res) => setTimeout(res, probePauseMs));
    }
    if (r.outcome.refusal) throw new AuthRefusedError(r.outcome.refusal);
    if (r.outcome.kind !== "ok") {
      const said = r.outcome.code ?? r.outcome.status;
      throw new TargetDownError(
        `the gateway at ${this.target.origin} could not read clinic ${clinicCode}'s stock (${route}: ${said}): start the inventory replicas, name clinics it knows (--inventory-clinics), or leave restock, deduct and transfer out of the mix`,
      );
    }
  }

  /**
   * Every item of a paged list ({items, nextCursor}, docs/pagination.md), the largest pages the
   * gateway gives, following nextCursor to the last; the first outcome that is not ok ends it.
   */
  private async listAll<T>(path: string, route: string, as: Credential | undefined): Promise<Answer<T[]>> {
    const all: T[] = [];
    let cursor: string | null = null;
    for (;;) {
      const q = new URLSearchParams({ limit: String(listPageMax), ...(cursor ? { cursor } : {}) });
      const r = await this.request({ method: "GET", path: `${path}?${q}`, route, as });
      const page = r.body as { items?: unknown; nextCursor?: unknown } | undefined;
      if (r.outcome.kind !== "ok" || !Array.isArray(page?.items)) return { outcome: r.outcome };
      all.push(...(page.items as T[]));
      cursor = typeof page.nextCursor === "string" ? page.nextCursor : null;
      if (cursor === null) return { outcome: r.outcome, value: all };
    }
  }

  async listClinics(): Promise<Answer<ClinicInfo[]>> {
    const r = await this.listAll<ClinicInfo>("/v1/clinics", "GET /v1/clinics", await this.identity.setup());
    if (!r.value) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: r.value.map((c) => ({ id: c.id, code: c.code, timeZone: c.timeZone })),
    };
  }

  async listSlots(clinicId: string, date: string, by: Patient): Promise<Answer<SlotInfo[]>> {
    const q = new URLSearchParams({ date });
    const r = await this.request({
      method: "GET",
      path: `/v1/clinics/${encodeURIComponent(clinicId)}/slots?${q}`,
      route: "GET /v1/clinics/{clinicId}/slots",
      as: by.credential,
    });
    const slots = (r.body as { slots?: { id: string; status: string; start: string }[] } | undefined)?.slots;
    if (r.outcome.kind !== "ok" || !Array.isArray(slots)) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: slots.map((s) => ({ id: s.id, free: s.status === "free", start: s.start })),
    };
  }

  async book(slotId: string, by: Patient, idempotencyKey: string): Promise<Answer<{ id: string }>> {
    const r = await this.request({
      method: "POST",
      path: "/v1/appointments",
      route: "POST /v1/appointments",
      as: by.credential,
      body: { slotId, patientId: by.id },
      headers: { "Idempotency-Key": idempotencyKey },
    });
    const id = (r.body as { id?: unknown } | undefined)?.id;
    if (r.outcome.kind !== "ok" || typeof id !== "string") return { outcome: r.outcome };
    return { outcome: r.outcome, value: { id } };
  }

  async cancel(appointmentId: string, by: Patient): Promise<Answer<void>> {
    const r = await this.request({
      method: "POST",
      path: `/v1/appointments/${encodeURIComponent(appointmentId)}/cancel`,
      route: "POST /v1/appointments/{id}/cancel",
      as: by.credential,
    });
    return { outcome: r.outcome };
  }

  private async stockWrite(path: string, route: string, body: unknown, key: string): Promise<Answer<void>> {
    const r = await this.request({
      method: "POST",
      path,
      route,
      as: await this.identity.stock(),
      body,
      headers: { "Idempotency-Key": key },
    });
    return { outcome: r.outcome };
  }

  private stockPath(clinicId: string, medicationCode: string, action: string): string {
    return `/v1/inventory/${encodeURIComponent(clinicId)}/stock/${encodeURIComponent(medicationCode)}/${action}`;
  }

  async restock(
    clinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    return this.stockWrite(
      this.stockPath(clinicId, medicationCode, "restock"),
      "POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock",
      { quantity },
      key,
    );
  }

  async deduct(
    clinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    return this.stockWrite(
      this.stockPath(clinicId, medicationCode, "deduct"),
      "POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct",
      { quantity },
      key,
    );
  }

  async transfer(
    fromClinicId: string,
    toClinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    return this.stockWrite(
      "/v1/inventory/transfers",
      "POST /v1/inventory/transfers",
      { fromClinicId, toClinicId, medicationCode, quantity },
      key,
    );
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  /**
   * The medication service answers through the gateway: a prescription that does not exist is its
   * 404 (the gateway looks it up there), anything else but a refusal means it is not reachable.
   */
  async probeMedication(): Promise<void> {
    const route = "GET /v1/prescriptions/{id}";
    const r = await this.request({
      method: "GET",
      path: `/v1/prescriptions/${randomUUID()}`,
      route,
      as: await this.identity.setup(),
      timeoutMs: probeTimeoutMs,
    });
    if (r.outcome.refusal) throw new AuthRefusedError(r.outcome.refusal);
    if (r.outcome.status !== 404 || r.outcome.code !== "PRESCRIPTION_NOT_FOUND") {
      throw new TargetDownError(
        `the gateway at ${this.target.origin} could not reach the medication service (${route}: ${r.outcome.code ?? r.outcome.status}): start it (npm start) or leave prescribe out of the mix`,
      );
    }
  }

  /** A clinic's stock lines as its clinician reads them, every page. */
  async listStock(clinicCode: string): Promise<Answer<StockInfo[]>> {
    const r = await this.listAll<StockLineBody>(
      `/v1/inventory/${encodeURIComponent(clinicCode)}/stock`,
      "GET /v1/inventory/{clinicId}/stock",
      await this.identity.clinician(clinicCode),
    );
    if (!r.value) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: r.value.map((l) => ({ medicationCode: l.medicationCode, usable: usableUnits(l) })),
    };
  }

  async prescribe(order: PrescriptionOrder, idempotencyKey: string): Promise<Answer<{ id: string }>> {
    const { appointmentId, medicationCode, quantity, dosage } = order;
    const r = await this.request({
      method: "POST",
      path: "/v1/prescriptions",
      route: "POST /v1/prescriptions",
      as: await this.identity.clinician(order.clinicCode),
      body: { appointmentId, medicationCode, quantity, dosage },
      headers: { "Idempotency-Key": idempotencyKey },
    });
    const id = (r.body as { id?: unknown } | undefined)?.id;
    if (r.outcome.kind !== "ok" || typeof id !== "string") return { outcome: r.outcome };
    return { outcome: r.outcome, value: { id } };
  }
}

/** A stock line as the gateway answers it. */
interface StockLineBody {
  medicationCode: string;
  quantity: number;
  lots: { quantity: number; expiresOn: string | null }[];
}
