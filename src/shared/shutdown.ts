// Owns graceful shutdown: closers registered by a service run in reverse order on SIGTERM/SIGINT,
// bounded by a deadline so a stuck closer cannot keep a dying process alive.
import type { Logger } from "pino";

type Closer = { name: string; close: () => Promise<unknown> };

/**
 * Time the closers get beyond a service's own drain (SHUTDOWN_UNREADY_MS + SHUTDOWN_DRAIN_MS): gRPC
 * clients, Redis and pools close in well under this.
 */
export const closeReserveMs = 3_000;

export class Shutdown {
  private readonly closers: Closer[] = [];
  private started = false;

  constructor(
    private readonly log: Logger,
    private readonly timeoutMs = 5_000,
  ) {}

  add(name: string, close: () => Promise<unknown>): void {
    this.closers.push({ name, close });
  }

  /** Installs the signal handlers; the process exits once every closer ran (or the deadline hit). */
  onSignals(): void {
    for (const sig of ["SIGTERM", "SIGINT"] as const) {
      process.once(sig, () => {
        this.log.info({ signal: sig }, "shutting down");
        void this.run().then((code) => process.exit(code));
      });
    }
  }

  async run(): Promise<number> {
    if (this.started) return 0;
    this.started = true;
    let code = 0;
    const timer = setTimeout(() => {
      this.log.error({ timeoutMs: this.timeoutMs }, "shutdown deadline passed, exiting");
      process.exit(1);
    }, this.timeoutMs);
    timer.unref();
    for (const c of [...this.closers].reverse()) {
      try {
        await c.close();
      } catch (err) {
        code = 1;
        this.log.error({ closer: c.name, err }, "closer failed");
      }
    }
    clearTimeout(timer);
    return code;
  }
}
