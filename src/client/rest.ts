// Owns the REST backend: MediSync's HTTP API through the gateway (README "The API, by example"),
// over keep-alive connections with a bounded pool, each request with its own timeout. Network
// failures are outcomes (kind "error"), never exceptions.
import http from "node:http";
import https from "node:https";
import type { Answer, Backend, ClinicInfo, SlotInfo } from "./backend.ts";
import { kindOfStatus, type Outcome } from "./stats.ts";
import { TargetDownError } from "./usage-error.ts";

interface Raw {
  outcome: Outcome;
  body: unknown;
}

const probeTimeoutMs = 2_000;

export class RestBackend implements Backend {
  readonly describe: string;
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;

  constructor(
    private readonly target: URL,
    connectionsMax: number,
    private readonly timeoutMs: number,
  ) {
    this.describe = `gateway ${target.origin}`;
    this.lib = target.protocol === "https:" ? https : http;
    const Agent = target.protocol === "https:" ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: connectionsMax });
  }

  private request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    timeoutMs = this.timeoutMs,
  ): Promise<Raw> {
    return new Promise((resolve) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const h: Record<string, string> = { accept: "application/json", ...headers };
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
            done({ outcome: code ? { kind, status, code } : { kind, status }, body: parsed });
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

  private async probe(path: string, what: string): Promise<void> {
    const r = await this.request("GET", path, undefined, {}, probeTimeoutMs);
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
  }

  async probeAppointments(): Promise<void> {
    await this.probe("/healthz", "the gateway");
    await this.probe("/v1/clinics", "the appointment service");
  }

  async probeInventory(): Promise<void> {
    await this.probe("/healthz", "the gateway");
    const r = await this.request("GET", "/v1/cluster", undefined, {}, probeTimeoutMs);
    const replicas = (r.body as { replicas?: { healthy?: boolean }[] } | undefined)?.replicas;
    if (r.outcome.kind !== "ok" || !Array.isArray(replicas) || !replicas.some((x) => x.healthy)) {
      throw new TargetDownError(
        `the gateway at ${this.target.origin} reaches no inventory replica (GET /v1/cluster): start them, or leave restock, deduct and transfer out of the mix`,
      );
    }
  }

  async listClinics(): Promise<Answer<ClinicInfo[]>> {
    const r = await this.request("GET", "/v1/clinics");
    if (r.outcome.kind !== "ok" || !Array.isArray(r.body)) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: (r.body as { id: string; timeZone: string }[]).map((c) => ({ id: c.id, timeZone: c.timeZone })),
    };
  }

  async listSlots(clinicId: string, date: string): Promise<Answer<SlotInfo[]>> {
    const q = new URLSearchParams({ date });
    const r = await this.request("GET", `/v1/clinics/${encodeURIComponent(clinicId)}/slots?${q}`);
    const slots = (r.body as { slots?: { id: string; status: string; start: string }[] } | undefined)?.slots;
    if (r.outcome.kind !== "ok" || !Array.isArray(slots)) return { outcome: r.outcome };
    return {
      outcome: r.outcome,
      value: slots.map((s) => ({ id: s.id, free: s.status === "free", start: s.start })),
    };
  }

  async book(slotId: string, patientId: string, idempotencyKey: string): Promise<Answer<{ id: string }>> {
    const r = await this.request(
      "POST",
      "/v1/appointments",
      { slotId, patientId },
      { "Idempotency-Key": idempotencyKey },
    );
    const id = (r.body as { id?: unknown } | undefined)?.id;
    if (r.outcome.kind !== "ok" || typeof id !== "string") return { outcome: r.outcome };
    return { outcome: r.outcome, value: { id } };
  }

  async cancel(appointmentId: string): Promise<Answer<void>> {
    const r = await this.request("POST", `/v1/appointments/${encodeURIComponent(appointmentId)}/cancel`);
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
    const r = await this.request(
      "POST",
      this.stockPath(clinicId, medicationCode, "restock"),
      { quantity },
      { "Idempotency-Key": key },
    );
    return { outcome: r.outcome };
  }

  async deduct(
    clinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    const r = await this.request(
      "POST",
      this.stockPath(clinicId, medicationCode, "deduct"),
      { quantity },
      { "Idempotency-Key": key },
    );
    return { outcome: r.outcome };
  }

  async transfer(
    fromClinicId: string,
    toClinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>> {
    const r = await this.request(
      "POST",
      "/v1/inventory/transfers",
      { fromClinicId, toClinicId, medicationCode, quantity },
      { "Idempotency-Key": key },
    );
    return { outcome: r.outcome };
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
