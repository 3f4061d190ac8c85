// Owns consuming the event stream with a Redis Streams consumer group, at least once: a consumer
// first re-reads its own pending entries (from ID 0) and then new ones (>), acknowledges an entry
// only after it was handled, claims entries left idle by dead consumers (XAUTOCLAIM), and after
// deliveriesMax deliveries moves an entry to the dead-letter stream and acknowledges it. Each
// service that reacts to events runs one with a group of its own (notification, medication).

import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Counter, Gauge } from "prom-client";
import { counter, gauge } from "./metrics.ts";
import { parseEntry, type StreamEvent } from "./stream-events.ts";

/** What handling an entry came to: the first time, again, not ours to act on, or unusable. */
export type HandleResult = "new" | "duplicate" | "ignored" | "poison";

export interface ConsumerOptions {
  /** Shared connection (short command timeout): acks, claims, metrics. Never used to block. */
  redis: Redis;
  stream: string;
  group: string;
  deadLetterStream: string;
  consumer: string;
  claimIdleMs: number;
  deliveriesMax: number;
  handle(ev: StreamEvent): Promise<HandleResult>;
  log: Logger;
  /** Names this consumer's metrics: <prefix>_events_total, _stream_lag, _stream_pending, _dead_letters. */
  metricsPrefix: string;
}

const blockMs = 2_000;
const batchEntriesMax = 100;
const deadLetterLengthMax = 10_000;
const errorBackoffMsMax = 2_000;

interface ConsumerMetrics {
  handled: Counter<"result">;
  lag: Gauge<string>;
  pending: Gauge<string>;
  dead: Gauge<string>;
}

/** One set per prefix: prom-client refuses a metric registered twice. */
const metricsByPrefix = new Map<string, ConsumerMetrics>();

/**
 * The metrics of a consumer with this prefix, registered on first call. A service calls it when its
 * module loads, so /metrics lists them (at zero) before the consumer starts.
 */
export function streamConsumerMetrics(prefix: string): ConsumerMetrics {
  let m = metricsByPrefix.get(prefix);
  if (!m) {
    m = {
      handled: counter(`${prefix}_events_total`, "stream entries handled, by result", ["result"]),
      lag: gauge(`${prefix}_stream_lag`, "entries not yet delivered to the group (XINFO GROUPS lag)", []),
      pending: gauge(
        `${prefix}_stream_pending`,
        "entries delivered but not acknowledged (XINFO GROUPS pending)",
        [],
      ),
      dead: gauge(`${prefix}_dead_letters`, "entries in the dead-letter stream", []),
    };
    metricsByPrefix.set(prefix, m);
  }
  return m;
}

type Entry = [id: string, fields: string[] | null];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function entriesOf(reply: unknown): Entry[] {
  // XREADGROUP of one stream: [[stream, entries]] (RESP2) or [stream, entries] (ioredis 6 flattens
  // the RESP3 map), or null when nothing arrived.
  if (!Array.isArray(reply) || reply.length === 0) return [];
  if (typeof reply[0] === "string") return (reply[1] as Entry[] | undefined) ?? [];
  return ((reply[0] as [string, Entry[]])[1] as Entry[] | undefined) ?? [];
}

export class StreamConsumer {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private claimTimer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  /** Its own connection: a blocking XREADGROUP holds a connection for up to blockMs. */
  private readonly blocking: Redis;
  private readonly m: ConsumerMetrics;

  constructor(private readonly o: ConsumerOptions) {
    this.m = streamConsumerMetrics(o.metricsPrefix);
    this.blocking = o.redis.duplicate({ commandTimeout: blockMs + 1_000 });
    this.blocking.on("error", () => undefined);
  }

  start(): void {
    this.loop = this.run();
    const every = Math.max(100, Math.min(Math.floor(this.o.claimIdleMs / 2), 5_000));
    this.claimTimer = setInterval(() => {
      if (this.stopped || this.claiming) return;
      this.claiming = this.claimRound()
        .catch((err: unknown) => this.o.log.debug({ err: (err as Error).message }, "claim round failed"))
        .finally(() => {
          this.claiming = undefined;
        });
    }, every);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.claimTimer) clearInterval(this.claimTimer);
    this.blocking.disconnect();
    await this.loop;
    await this.claiming;
  }

  /** Creates the group from the stream's beginning (ID 0), so no entry added before it is skipped. */
  private async ensureGroup(): Promise<void> {
    try {
      await this.o.redis.call("XGROUP", "CREATE", this.o.stream, this.o.group, "0", "MKSTREAM");
      this.o.log.info({ stream: this.o.stream, group: this.o.group }, "consumer group created");
    } catch (err) {
      if (!String((err as Error).message).startsWith("BUSYGROUP")) throw err;
    }
  }

  private async run(): Promise<void> {
    let backoffMs = 50;
    /** Where the re-read of this consumer's own pending entries stands; undefined once done. */
    let ownFrom: string | undefined = "0";
    let groupReady = false;
    while (!this.stopped) {
      try {
        if (!groupReady) {
          await this.ensureGroup();
          groupReady = true;
        }
        const from = ownFrom ?? ">";
        const args = ["GROUP", this.o.group, this.o.consumer, "COUNT", String(batchEntriesMax)];
        if (!ownFrom) args.push("BLOCK", String(blockMs));
        const reply = await this.blocking.call("XREADGROUP", ...args, "STREAMS", this.o.stream, from);
        const entries = entriesOf(reply);
        if (ownFrom) {
          if (entries.length === 0) ownFrom = undefined;
          else ownFrom = entries[entries.length - 1]![0];
        }
        await this.process(entries);
        backoffMs = 50;
      } catch (err) {
        if (this.stopped) break;
        const message = String((err as Error).message);
        // The stream or the group vanished (Redis lost them): recreate, then re-read our own (none).
        if (message.startsWith("NOGROUP")) {
          groupReady = false;
          ownFrom = "0";
        }
        this.o.log.debug({ err: message }, "stream read failed");
        await sleep(backoffMs);
        backoffMs = Math.min(errorBackoffMsMax, backoffMs * 2);
      }
    }
  }

  private async process(entries: Entry[]): Promise<void> {
    for (const [id, fields] of entries) {
      if (this.stopped) return;
      // A pending entry trimmed from the stream comes back without fields: nothing to handle.
      if (!fields) {
        await this.o.redis.call("XACK", this.o.stream, this.o.group, id);
        continue;
      }
      const ev = parseEntry(id, fields);
      let result: HandleResult;
      try {
        result = ev ? await this.o.handle(ev) : "poison";
      } catch (err) {
        // Left pending: redelivered by a claim once idle, dead-lettered after deliveriesMax.
        this.o.log.warn({ entryId: id, err: (err as Error).message }, "event handling failed; left pending");
        continue;
      }
      if (result === "poison") {
        await this.deadLetter(id, fields, "unusable");
        continue;
      }
      await this.o.redis.call("XACK", this.o.stream, this.o.group, id);
      this.m.handled.inc({ result });
      if (result === "new") this.o.log.debug({ entryId: id, eventId: ev?.eventId }, "event handled");
    }
  }

  private async deadLetter(id: string, fields: string[], reason: string): Promise<void> {
    await this.o.redis.call(
      "XADD",
      this.o.deadLetterStream,
      "MAXLEN",
      "~",
      String(deadLetterLengthMax),
      "*",
      ...fields,
      "entryId",
      id,
      "reason",
      reason,
    );
    await this.o.redis.call("XACK", this.o.stream, this.o.group, id);
    this.m.handled.inc({ result: "dead-lettered" });
    this.o.log.warn({ entryId: id, reason }, "stream entry dead-lettered");
  }

  /** Dead-letters entries delivered too often, claims the idle rest, and refreshes the gauges. */
  private async claimRound(): Promise<void> {
    const { redis, stream, group } = this.o;
    const idle = String(this.o.claimIdleMs);
    const pending = (await redis.call(
      "XPENDING",
      stream,
      group,
      "IDLE",
      idle,
      "-",
      "+",
      String(batchEntriesMax),
    )) as [string, string, number, number][];
    for (const [id, , , deliveries] of pending) {
      if (deliveries < this.o.deliveriesMax) continue;
      const found = (await redis.call("XRANGE", stream, id, id)) as Entry[];
      const fields = found[0]?.[1];
      if (fields) await this.deadLetter(id, fields, "deliveries-exceeded");
      else await redis.call("XACK", stream, group, id);
    }
    let cursor = "0-0";
    for (let round = 0; round < 10 && !this.stopped; round++) {
      const reply = (await redis.call(
        "XAUTOCLAIM",
        stream,
        group,
        this.o.consumer,
        idle,
        cursor,
        "COUNT",
        String(batchEntriesMax),
      )) as [string, Entry[], string[]];
      if (reply[1].length > 0) this.o.log.info({ claimed: reply[1].length }, "claimed idle stream entries");
      await this.process(reply[1]);
      cursor = reply[0];
      if (cursor === "0-0") break;
    }
    await this.refreshGauges();
  }

  private async refreshGauges(): Promise<void> {
    const groups = (await this.o.redis.call("XINFO", "GROUPS", this.o.stream)) as unknown[][];
    for (const g of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
      if (info.get("name") !== this.o.group) continue;
      this.m.pending.set(Number(info.get("pending") ?? 0));
      const lag = info.get("lag");
      if (typeof lag === "number") this.m.lag.set(lag);
    }
    this.m.dead.set(Number(await this.o.redis.call("XLEN", this.o.deadLetterStream)));
  }
}
