// Owns the fault proxy on one directed link: a node:net TCP proxy that the dialing side connects to
// instead of its peer. Between inventory replicas every link A→B carries what A sends to B (A's
// transport dials B), so cutting link A→B alone is a one-way partition. Modes, switchable while
// connections are open:
//   pass       bytes flow.
//   blackhole  bytes in both directions are dropped and connections held open, as a partition
//              looks from user space: nothing arrives, nothing is refused. A connection that lost
//              bytes is corrupt (an HTTP/2 stream with a hole is garbage), so when the link heals it
//              is reset, as the peer's TCP would give up on it; new connections then work.
//   reset      every open connection is destroyed, new ones are accepted and destroyed at once.
//   delay      every chunk waits delayMs ± jitterMs, in order (TCP never reorders).
//   loss       "drop a fraction" on a stream: a lost segment is not a hole but a retransmission,
//              so each chunk is held with probability `fraction` for retransmitMs (Linux's minimum
//              RTO is 200 ms) and everything behind it waits: the stall packet loss really causes.
//   flaky      each chunk resets its connection with probability `fraction` (a middlebox killing
//              connections), else it passes.
import net from "node:net";

export type LinkMode =
  | { kind: "pass" }
  | { kind: "blackhole" }
  | { kind: "reset" }
  | { kind: "delay"; delayMs: number; jitterMs: number }
  | { kind: "loss"; fraction: number; retransmitMs: number }
  | { kind: "flaky"; fraction: number };

export interface LinkStats {
  connections: number;
  bytesForwarded: number;
  bytesDropped: number;
  resets: number;
}

interface Pipe {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes were dropped on it: reset when the link heals. */
  holed: boolean;
}

/** One direction of one connection: releases chunks in order, each no earlier than its due time. */
class Lane {
  private queue: { due: number; data: Buffer }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastDue = 0;
  constructor(private readonly out: net.Socket) {}

  push(data: Buffer, waitMs: number): void {
    if (waitMs <= 0 && this.queue.length === 0) {
      this.out.write(data);
      return;
    }
    const due = Math.max(Date.now() + waitMs, this.lastDue);
    this.lastDue = due;
    this.queue.push({ due, data });
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.queue.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        while (this.queue.length > 0 && this.queue[0]!.due <= now) {
          if (!this.out.destroyed) this.out.write(this.queue.shift()!.data);
          else this.queue.shift();
        }
        this.arm();
      },
      Math.max(0, this.queue[0]!.due - Date.now()),
    );
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
  }
}

export class LinkProxy {
  readonly stats: LinkStats = { connections: 0, bytesForwarded: 0, bytesDropped: 0, resets: 0 };
  private mode: LinkMode = { kind: "pass" };
  private readonly pipes = new Set<Pipe>();
  private constructor(
    readonly name: string,
    private readonly server: net.Server,
    readonly port: number,
    private readonly random: () => number,
  ) {}

  /** Listens on 127.0.0.1 (an ephemeral port unless `port` is given) and forwards to the target. */
  static async start(o: {
    name: string;
    targetHost: string;
    targetPort: number;
    port?: number;
    random?: () => number;
  }): Promise<LinkProxy> {
    let self: LinkProxy | undefined;
    const server = net.createServer((client) => self!.accept(client, o.targetHost, o.targetPort));
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port ?? 0, "127.0.0.1", () => {
        const a = server.address();
        resolve(typeof a === "object" && a ? a.port : 0);
      });
    });
    self = new LinkProxy(o.name, server, port, o.random ?? Math.random);
    return self;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get current(): LinkMode {
    return this.mode;
  }

  setMode(mode: LinkMode): void {
    const was = this.mode.kind;
    this.mode = mode;
    if (mode.kind === "reset") {
      for (const p of [...this.pipes]) this.kill(p);
    } else if (was === "blackhole" && mode.kind !== "blackhole") {
      for (const p of [...this.pipes]) if (p.holed) this.kill(p);
    }
  }

  private accept(client: net.Socket, host: string, port: number): void {
    this.stats.connections++;
    client.setNoDelay(true);
    if (this.mode.kind === "reset") {
      this.stats.resets++;
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host, port, noDelay: true });
    const pipe: Pipe = { client, upstream, holed: false };
    this.pipes.add(pipe);
    const toUpstream = new Lane(upstream);
    const toClient = new Lane(client);
    const end = () => {
      toUpstream.clear();
      toClient.clear();
      client.destroy();
      upstream.destroy();
      this.pipes.delete(pipe);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.on("data", (d: Buffer) => this.carry(pipe, d, toUpstream));
    upstream.on("data", (d: Buffer) => this.carry(pipe, d, toClient));
  }

  private carry(pipe: Pipe, data: Buffer, lane: Lane): void {
    const m = this.mode;
    switch (m.kind) {
      case "pass":
        this.stats.bytesForwarded += data.length;
        lane.push(data, 0);
        return;
      case "blackhole":
        pipe.holed = true;
        this.stats.bytesDropped += data.length;
        return;
      case "reset":
        this.stats.bytesDropped += data.length;
        this.kill(pipe);
        return;
      case "delay": {
        this.stats.bytesForwarded += data.length;
        const jitter = (this.random() * 2 - 1) * m.jitterMs;
        lane.push(data, Math.max(0, m.delayMs + jitter));
        return;
      }
      case "loss":
        this.stats.bytesForwarded += data.length;
        lane.push(data, this.random() < m.fraction ? m.retransmitMs : 0);
        return;
      case "flaky":
        if (this.random() < m.fraction) {
          this.stats.bytesDropped += data.length;
          this.kill(pipe);
          return;
        }
        this.stats.bytesForwarded += data.length;
        lane.push(data, 0);
        return;
    }
  }

  private kill(p: Pipe): void {
    this.stats.resets++;
    if (!p.client.destroyed) p.client.resetAndDestroy();
    if (!p.upstream.destroyed) p.upstream.resetAndDestroy();
    this.pipes.delete(p);
  }

  /** Open connections through the link. */
  get open(): number {
    return this.pipes.size;
  }

  async close(): Promise<void> {
    for (const p of [...this.pipes]) this.kill(p);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
