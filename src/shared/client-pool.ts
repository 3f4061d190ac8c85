// Owns the set of gRPC clients one service's client holds (appointment, medication, notification):
// one client per instance address, picked round-robin, and a set that can change at run time (the
// service registry, src/shared/service-registry.ts, tells it the live addresses). A removed
// instance's client is closed only after the calls that may still be using it are past their
// deadline, so a graceful deregistration never cuts a call in flight.
import { AppError } from "./errors.ts";

interface Closable {
  close(): void;
}

export class ClientPool<C extends Closable> {
  private readonly byAddress = new Map<string, C>();
  private list: C[] = [];
  private next = 0;
  /** Removed clients waiting out the calls that may still use them. */
  private readonly closing = new Map<NodeJS.Timeout, C>();
  private closed = false;

  /**
   * @param make a client of one address
   * @param closeAfterMs how long a removed client stays open for the calls already using it (their
   *   overall deadline)
   */
  constructor(
    private readonly service: string,
    private readonly make: (address: string) => C,
    addresses: readonly string[],
    private readonly closeAfterMs: number,
  ) {
    this.setAddresses(addresses);
  }

  get size(): number {
    return this.list.length;
  }

  addresses(): string[] {
    return [...this.byAddress.keys()];
  }

  /** Makes the pool hold exactly these addresses: new ones get a client, gone ones are closed. */
  setAddresses(addresses: readonly string[]): { added: string[]; removed: string[] } {
    if (this.closed) return { added: [], removed: [] };
    const want = new Set(addresses);
    const added: string[] = [];
    const removed: string[] = [];
    for (const [address, client] of this.byAddress) {
      if (want.has(address)) continue;
      this.byAddress.delete(address);
      removed.push(address);
      const t = setTimeout(() => {
        this.closing.delete(t);
        client.close();
      }, this.closeAfterMs);
      t.unref();
      this.closing.set(t, client);
    }
    for (const address of want) {
      if (this.byAddress.has(address)) continue;
      this.byAddress.set(address, this.make(address));
      added.push(address);
    }
    this.list = [...this.byAddress.values()];
    return { added, removed };
  }

  /**
   * The next client round-robin, skipping those in `tried` (a call's earlier tries) while another is
   * left: the cursor is shared by concurrent calls, so without it a retry could land on the instance
   * that just failed. UNAVAILABLE (retried, then 503) while no instance is known.
   */
  pick(tried?: ReadonlySet<C>): C {
    const n = this.list.length;
    if (n === 0)
      throw new AppError("UNAVAILABLE", `no ${this.service} instance is known; retry later`, undefined, {
        "retry-after": "1",
      });
    let i = this.next % n;
    for (let k = 0; k < n && tried?.has(this.list[i]!); k++) i = (i + 1) % n;
    this.next = (i + 1) % n;
    return this.list[i]!;
  }

  close(): void {
    this.closed = true;
    for (const [t, c] of this.closing) {
      clearTimeout(t);
      c.close();
    }
    this.closing.clear();
    for (const c of this.byAddress.values()) c.close();
    this.byAddress.clear();
    this.list = [];
  }
}
