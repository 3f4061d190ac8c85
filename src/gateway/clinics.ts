// Owns the gateway's knowledge of which clinic codes name a clinic: the appointment service's
// clinics (ListClinics) held in memory, so an inventory request pays a Set lookup, not a gRPC call,
// to learn that its clinic exists. The list is read at start, every refreshMs after, and again when
// a request names a code it does not hold — at most once per missRefreshMs, however many such
// requests come — so a clinic added a moment ago is found and a storm of bad codes costs at most
// one ListClinics a second. A code still missing from a list read within that second is 404
// clinic-not-found; when the list could not be read it is 503 (retry), never a 404 that may be false.
import type { Logger } from "pino";
import { AppError } from "../shared/errors.ts";

/** What the directory needs of a clinic. */
export interface ClinicListing {
  id: string;
  code: string;
}

export interface ClinicDirectoryOptions {
  /** Reads the whole list (the appointment service's ListClinics), within the caller's deadlines. */
  list: (requestId?: string) => Promise<ClinicListing[]>;
  log: Logger;
  /** The list is read again this often, so a clinic's code is known before anyone asks for it. */
  refreshMs?: number;
  /** A code not in the list reads the list again, but not sooner than this after the last read. */
  missRefreshMs?: number;
  now?: () => number;
}

export const clinicDirectoryDefaults = { refreshMs: 30_000, missRefreshMs: 1_000 } as const;

/** A clinic a request names: the field that names it (for the problem) and the code it gives. */
export type NamedClinic = readonly [field: string, code: string];

export class ClinicDirectory {
  private codes = new Set<string>();
  /** Clinic id → code: a request that gives a clinic's id where its code belongs is told the code. */
  private codeById = new Map<string, string>();
  /** When the last read began (ms), and whether it succeeded. */
  private lastReadAt = Number.NEGATIVE_INFINITY;
  private lastReadOk = false;
  private reading: Promise<void> | undefined;
  private failedReadsInRow = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly refreshMs: number;
  private readonly missRefreshMs: number;
  private readonly now: () => number;

  constructor(private readonly o: ClinicDirectoryOptions) {
    this.refreshMs = o.refreshMs ?? clinicDirectoryDefaults.refreshMs;
    this.missRefreshMs = o.missRefreshMs ?? clinicDirectoryDefaults.missRefreshMs;
    this.now = o.now ?? Date.now;
  }

  /** Reads the list now (not awaited: the appointment service may not be up yet) and every refreshMs. */
  start(): void {
    void this.read();
    this.timer ??= setInterval(() => void this.read(), this.refreshMs);
    // A timer must not keep a process alive that is otherwise done.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The code of a clinic id in the list held now (token scopes name codes; slot routes take ids). */
  codeOf(id: string): string | undefined {
    return this.codeById.get(id);
  }

  /**
   * The code of a clinic id, reading the list again when it is not held (at most once per
   * missRefreshMs, as check() does): a clinic added a moment ago is found. Undefined: no such clinic
   * in the last list read.
   */
  async codeOfFresh(id: string, requestId?: string): Promise<string | undefined> {
    const held = this.codeById.get(id);
    if (held !== undefined) return held;
    if (this.reading || this.now() - this.lastReadAt >= this.missRefreshMs) await this.read(requestId);
    return this.codeById.get(id);
  }

  /** The codes held now (tests, ops). */
  get size(): number {
    return this.codes.size;
  }

  /**
   * Checks that every code names a clinic. `undefined` when all are held — synchronously, so the
   * hot path awaits nothing; otherwise a promise that resolves once the list, read again if it may
   * be out of date, holds them, and rejects with CLINIC_NOT_FOUND naming the first field that names
   * no clinic, or UNAVAILABLE when the list could not be read.
   */
  check(named: readonly NamedClinic[], requestId?: string): Promise<void> | undefined {
    for (const [, code] of named) if (!this.codes.has(code)) return this.checkAfterRead(named, requestId);
    return undefined;
  }

  private async checkAfterRead(named: readonly NamedClinic[], requestId?: string): Promise<void> {
    if (this.reading || this.now() - this.lastReadAt >= this.missRefreshMs) await this.read(requestId);
    for (const [field, code] of named) {
      if (this.codes.has(code)) continue;
      if (!this.lastReadOk) {
        throw new AppError(
          "UNAVAILABLE",
          "the clinic list could not be read from the appointment service; retry",
          undefined,
          { "retry-after": "1" },
        );
      }
      const owner = this.codeById.get(code);
      const hint = owner
        ? `; that is a clinic's id: inventory routes take its code, "${owner}"`
        : " (inventory routes take a clinic's code, as GET /v1/clinics lists them)";
      throw new AppError("CLINIC_NOT_FOUND", `${field} names no clinic${hint}`, field);
    }
  }

  /** One read at a time: whoever asks while one is out waits for that one. Never rejects. */
  private read(requestId?: string): Promise<void> {
    this.reading ??= this.readOnce(requestId).finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async readOnce(requestId?: string): Promise<void> {
    this.lastReadAt = this.now();
    try {
      const clinics = (await this.o.list(requestId)).filter((c) => c.code !== "");
      // Replaced whole: what the directory holds is the last list read, never more.
      this.codes = new Set(clinics.map((c) => c.code));
      this.codeById = new Map(clinics.map((c) => [c.id, c.code]));
      if (!this.lastReadOk) this.o.log.info({ clinics: this.codes.size }, "clinic list read");
      this.lastReadOk = true;
      this.failedReadsInRow = 0;
    } catch (err) {
      this.lastReadOk = false;
      // Logged when reads start failing, not on every failed read of an outage.
      if (++this.failedReadsInRow === 1)
        this.o.log.warn({ err: (err as Error).message, requestId }, "clinic list could not be read");
    }
  }
}
