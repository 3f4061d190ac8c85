// Owns what the /ops dashboard shows, gathered by the gateway from what it can see: each inventory
// replica's own status (role, term, commit, applied, lag) and the leader changes seen between polls,
// the slot reads this gateway served per cache tier, the latest low-stock alerts and the consumer
// groups' lag and dead letters on the event stream (Redis). Polled only while a dashboard is open,
// every pollMs, so an idle gateway does no work for it.
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { InventoryClient } from "../shared/inventory-client.ts";
import { registry } from "../shared/metrics.ts";

export interface ReplicaView {
  id: string;
  address: string;
  healthy: boolean;
  role: string;
  term: number;
  leaderId: string;
  commitIndex: number;
  appliedIndex: number;
  /** The leader's commit index minus this replica's applied index. */
  lag: number;
}

export interface OpsSnapshot {
  at: string;
  cluster: { leaderId: string | null; term: number; replicas: ReplicaView[] };
  failovers: { at: string; from: string | null; to: string | null; term: number }[];
  cache: { tiers: Record<string, number>; hitRatio: Record<string, number> };
  lowStock: {
    clinic: string;
    medicationCode: string;
    quantity: number;
    reorderLevel: number;
    index: number;
  }[];
  streams: { groups: { name: string; lag: number | null; pending: number }[]; deadLetters: number } | null;
}

/** Leader changes kept for the dashboard. */
const failoversMax = 20;
/** Stream entries scanned, newest first, for low-stock alerts; and alerts shown. */
const lowStockScanEntriesMax = 500;
const lowStockShownMax = 10;

export class OpsState {
  private last: OpsSnapshot | undefined;
  private failovers: OpsSnapshot["failovers"] = [];
  private lastLeader: { id: string | null; term: number } | undefined;
  private watchers = new Set<(s: OpsSnapshot) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly o: {
      inventory: InventoryClient;
      redis: Redis;
      stream: string;
      log: Logger;
      pollMs: number;
    },
  ) {}

  /** The latest snapshot, gathered now if none is recent. */
  async snapshot(): Promise<OpsSnapshot> {
    if (!this.last || Date.now() - Date.parse(this.last.at) > this.o.pollMs) await this.poll();
    return this.last!;
  }

  /** Calls `fn` with every new snapshot until the returned function is called. */
  watch(fn: (s: OpsSnapshot) => void): () => void {
    this.watchers.add(fn);
    if (!this.timer) {
      this.timer = setInterval(() => void this.poll(), this.o.pollMs);
      this.timer.unref();
    }
    return () => {
      this.watchers.delete(fn);
      if (this.watchers.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private poll(): Promise<void> {
    this.polling ??= this.gather()
      .then((s) => {
        this.last = s;
        for (const w of this.watchers) w(s);
      })
      .catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, "ops poll failed"))
      .finally(() => {
        this.polling = undefined;
      });
    return this.polling;
  }

  private async gather(): Promise<OpsSnapshot> {
    const [cluster, cache, lowStock, streams] = await Promise.all([
      this.cluster(),
      this.cache(),
      this.lowStock().catch(() => []),
      this.streams().catch(() => null),
    ]);
    return {
      at: new Date().toISOString(),
      cluster,
      failovers: [...this.failovers],
      cache,
      lowStock,
      streams,
    };
  }

  private async cluster(): Promise<OpsSnapshot["cluster"]> {
    const all = await this.o.inventory.cluster("ops");
    const leader = all.find((r) => r.status?.role === "leader");
    const commit = leader?.status?.commitIndex ?? Math.max(0, ...all.map((r) => r.status?.commitIndex ?? 0));
    const replicas: ReplicaView[] = all.map((r) => ({
      id: r.id,
      address: r.address,
      healthy: r.status !== undefined,
      role: r.status?.role ?? "unreachable",
      term: r.status?.term ?? 0,
      leaderId: r.status?.leaderId ?? "",
      commitIndex: r.status?.commitIndex ?? 0,
      appliedIndex: r.status?.appliedIndex ?? 0,
      lag: r.status ? Math.max(0, commit - r.status.appliedIndex) : 0,
    }));
    const now = {
      id: leader?.id ?? null,
      term: leader?.status?.term ?? Math.max(0, ...replicas.map((r) => r.term)),
    };
    if (this.lastLeader && (now.id !== this.lastLeader.id || now.term !== this.lastLeader.term)) {
      this.failovers.unshift({
        at: new Date().toISOString(),
        from: this.lastLeader.id,
        to: now.id,
        term: now.term,
      });
      this.failovers.length = Math.min(this.failovers.length, failoversMax);
    }
    this.lastLeader = now;
    return { leaderId: now.id, term: now.term, replicas };
  }

  private async cache(): Promise<OpsSnapshot["cache"]> {
    const metric = await registry.getSingleMetric("medisync_gateway_slot_reads_total")?.get();
    const tiers: Record<string, number> = { lru: 0, redis: 0, db: 0 };
    for (const v of metric?.values ?? []) tiers[String(v.labels.tier)] = v.value;
    const total = Object.values(tiers).reduce((a, b) => a + b, 0);
    const hitRatio = Object.fromEntries(Object.entries(tiers).map(([k, n]) => [k, total ? n / total : 0]));
    return { tiers, hitRatio };
  }

  private async lowStock(): Promise<OpsSnapshot["lowStock"]> {
    const entries = (await this.o.redis.xrevrange(
      this.o.stream,
      "+",
      "-",
      "COUNT",
      lowStockScanEntriesMax,
    )) as [string, string[]][];
    const out: OpsSnapshot["lowStock"] = [];
    const seen = new Set<string>();
    for (const [, fields] of entries) {
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
      const id = f.get("id");
      if (f.get("topic") !== "inventory.low-stock" || !id || seen.has(id)) continue;
      seen.add(id); // a republished alert is the same alert
      try {
        out.push(JSON.parse(f.get("payload")!) as OpsSnapshot["lowStock"][number]);
      } catch {
        // not one of ours
      }
      if (out.length >= lowStockShownMax) break;
    }
    return out;
  }

  private async streams(): Promise<OpsSnapshot["streams"]> {
    const groups = (await this.o.redis.call("XINFO", "GROUPS", this.o.stream)) as unknown[][];
    const parsed = groups.map((g) => {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
      const lag = info.get("lag");
      return {
        name: String(info.get("name")),
        lag: typeof lag === "number" ? lag : null,
        pending: Number(info.get("pending") ?? 0),
      };
    });
    const dead = await Promise.all(
      [`${this.o.stream}:dead`, `${this.o.stream}:dead:medication`].map((k) => this.o.redis.xlen(k)),
    );
    return { groups: parsed, deadLetters: dead.reduce((a, b) => a + b, 0) };
  }
}
