// Owns the gateway's slot tier: a small in-process LRU of finished slot answers (the JSON the route
// sends) in front of the appointment service, so that a hit costs one Redis GET and no gRPC call.
//
// It is held to the rule every slot cache keeps (src/shared/slot-version.ts): an answer is served
// only while the Redis version key of its (clinic, date) set equals the version the appointment
// service said those slots are exactly (ListSlotsResponse.version). The service bumps that key
// after its commit and before it acknowledges a booking, so a read that starts after the booking's
// acknowledgement sees a newer version here and goes to the service. No key, a claim, Redis slow
// or away: the gateway asks the service, whose three tiers stay as they were. The gateway never
// writes a version key; pub/sub is not needed (a stale entry is never served, only kept until the
// LRU drops it).
//
// Trade-off (docs/slot-cache.md): every gateway holds its own copies (bounded by entriesMax), and a
// hit skips the service's own LRU, so the service's hit counters no longer see those reads.
import type { Redis } from "ioredis";
import { LRUCache } from "lru-cache";
import type { ListSlotsResponse } from "../gen/medisync/v1/appointment.ts";
import { counter } from "../shared/metrics.ts";
import { servableSlotVersion, slotSetKey, slotVersionKey } from "../shared/slot-version.ts";

export interface SlotTierOptions {
  redis: Redis;
  /** REDIS_KEY_PREFIX: the appointment service's, so both read the same version keys. */
  keyPrefix: string;
  /** Answers kept; 0 turns the tier off (every read goes to the service). */
  entriesMax: number;
  /** How long an answer is kept at most; its version is checked on every hit regardless. */
  ttlMs: number;
}

/** What a read answered with: the route's JSON body and who served it. */
export interface SlotTierAnswer {
  body: string;
  /** "gateway" for a hit here; otherwise the service's tier, as the service named it. */
  tier: string;
}

interface Entry {
  /** The clinic id the service resolved the request's clinic to (the version key names it). */
  clinicId: string;
  date: string;
  version: number;
  body: string;
}

const lookups = counter("medisync_gateway_slot_tier_total", "Gateway slot tier lookups by result", [
  "result",
]);

export class SlotTier {
  private readonly lru: LRUCache<string, Entry> | undefined;

  constructor(private readonly o: SlotTierOptions) {
    if (!Number.isInteger(o.entriesMax) || o.entriesMax < 0) throw new Error("entriesMax must be ≥ 0");
    this.lru = o.entriesMax > 0 ? new LRUCache({ max: o.entriesMax, ttl: o.ttlMs }) : undefined;
  }

  /**
   * The answer for (clinic, date, practitioner): from this tier while its version is current,
   * otherwise from `load` (the service), kept for the next read when the service named a version.
   */
  async read(
    q: { clinicId: string; date: string; practitionerId: string | undefined },
    load: () => Promise<ListSlotsResponse>,
    render: (r: ListSlotsResponse) => string,
    tierOf: (r: ListSlotsResponse) => string,
  ): Promise<SlotTierAnswer> {
    if (!this.lru) return this.fromService(undefined, load, render, tierOf);
    const key = `${q.clinicId}|${q.date}|${q.practitionerId ?? ""}`;
    const hit = this.lru.get(key);
    if (hit) {
      let raw: string | null;
      try {
        raw = await this.o.redis.get(slotVersionKey(this.o.keyPrefix, slotSetKey(hit.clinicId, hit.date)));
      } catch {
        // Redis slow or away: the service decides (its own rules for an outage apply).
        lookups.inc({ result: "redis_error" });
        return this.fromService(undefined, load, render, tierOf);
      }
      if (servableSlotVersion(raw) === hit.version) {
        lookups.inc({ result: "hit" });
        return { body: hit.body, tier: "gateway" };
      }
      lookups.inc({ result: "stale" });
    } else {
      lookups.inc({ result: "miss" });
    }
    return this.fromService(key, load, render, tierOf);
  }

  private async fromService(
    key: string | undefined,
    load: () => Promise<ListSlotsResponse>,
    render: (r: ListSlotsResponse) => string,
    tierOf: (r: ListSlotsResponse) => string,
  ): Promise<SlotTierAnswer> {
    const r = await load();
    const body = render(r);
    // Version 0 is also what an older service that does not send versions answers: never kept.
    if (key !== undefined && this.lru && r.version > 0) {
      this.lru.set(key, { clinicId: r.clinicId, date: r.date, version: r.version, body });
    }
    return { body, tier: tierOf(r) };
  }

  /** Answers held now (tests, the ops page). */
  get size(): number {
    return this.lru?.size ?? 0;
  }
}
