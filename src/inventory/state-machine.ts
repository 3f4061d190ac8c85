// Owns the inventory state machine: stock per (clinic, medication) in lots, applied in log order.
// Apply is deterministic (no clock, no randomness: time comes inside the command), so every replica
// that applies the same log reaches the same state, which stateHash() lets tests compare.
// Rules: stock never goes negative; Deduct takes non-expired lots first-expiry-first-out and answers
// which; ReturnStock puts such lots back; Transfer and ReturnStock are all or nothing; a request id
// applied before returns its first result (a deduct's lots included) and changes nothing.
// Idempotency window: each request id is remembered with a fingerprint of its command and the
// leader's timestamp, for windowMs of the log's own clock (the largest leader timestamp applied so
// far, so it never runs backwards and every replica agrees); a reused id with another command is
// refused; at idsMax remembered ids (or their snapshot bytes' budget) new writes are refused (fail
// closed) rather than forgetting early.
import { createHash, hash } from "node:crypto";
import { failpoints } from "../shared/failpoints.ts";
import { inventoryLimits } from "../shared/validation.ts";
import { type Command, entryCommandsMax } from "./commands.ts";

export interface Lot {
  lot: string;
  quantity: number;
  /** YYYY-MM-DD; undefined: never expires. */
  expiresOn?: string;
}

export interface Item {
  reorderLevel: number;
  /** Kept in first-expiry-first-out order: earliest expiry first, never-expiring last. */
  lots: Lot[];
}

export type ApplyResult = (
  | {
      ok: true;
      quantity: number;
      index: number;
      /** A deduct's: what it took from each lot, first-expiry-first-out; a return's: what it put back. */
      lots?: Lot[];
    }
  | { ok: false; code: "INSUFFICIENT_STOCK"; available: number; index: number }
  | { ok: false; code: "INVALID"; reason: string; index: number }
  | { ok: false; code: "IDEMPOTENCY_KEY_REUSED"; index: number }
  | { ok: false; code: "LOT_EXPIRED"; index: number }
  | { ok: false; code: "IDEMPOTENCY_WINDOW_FULL"; retryAfterMs: number; index: number }
) & {
  /** Set on the answer to a request id seen before: its first result, nothing changed. */
  replayed?: true;
};

/**
 * A remembered request id, small on purpose: a 48-bit fingerprint, the window clock when it applied,
 * and its first result — quantity and index for a success (nearly all), plus in one slot either the
 * result object of a refusal or the lots of a deduct or return (a replay must answer the same lots).
 * About 200 bytes per id before lots (40-character ids: key, map entry, this, FIFO slot), measured
 * on Node 20; the result and fingerprint objects of the first design cost ~50 more. One slot for
 * both keeps every other write at that size; a deduct from one lot adds that Lot (~50 bytes, see
 * docs/inventory.md "Memory").
 */
class Remembered {
  constructor(
    /** Fingerprint of the command without its request id and timestamp; -1 (v1 snapshot): any. */
    readonly fp: number,
    /** The window clock when it applied; -1 (v1 snapshot) until the next command applies. */
    public ts: number,
    readonly quantity: number,
    readonly index: number,
    /**
     * A refusal's result (it has `ok`); a deduct's or return's lots: the Lot itself when there is
     * one (most deducts: an array of one costs ~100 bytes more), else an array of its exact size;
     * else undefined. Never mutated once here.
     */
    readonly detail: ApplyResult | Lot | Lot[] | undefined,
  ) {}

  static of(fp: number, ts: number, r: ApplyResult): Remembered {
    return r.ok
      ? new Remembered(fp, ts, r.quantity, r.index, Remembered.lotsDetail(r.lots))
      : new Remembered(fp, ts, 0, 0, r);
  }

  static lotsDetail(lots: Lot[] | undefined): Lot | Lot[] | undefined {
    // slice(): the array push() grew keeps spare capacity (~17 slots) for as long as it is held.
    return lots === undefined ? undefined : lots.length === 1 ? lots[0] : lots.slice();
  }

  get refusal(): ApplyResult | undefined {
    const d = this.detail;
    return d !== undefined && !Array.isArray(d) && "ok" in d ? d : undefined;
  }

  get lots(): Lot[] | undefined {
    const d = this.detail;
    if (d === undefined || Array.isArray(d)) return d;
    return "ok" in d ? undefined : [d];
  }

  get result(): ApplyResult {
    const refusal = this.refusal;
    if (refusal) return refusal;
    const lots = this.lots;
    return lots
      ? { ok: true, quantity: this.quantity, index: this.index, lots }
      : { ok: true, quantity: this.quantity, index: this.index };
  }

  /**
   * What this id adds to a snapshot, at most (bytes: ids and lot names carry no JSON escapes, the
   * gRPC checks hold them to their alphabets). Without lots, an id of requestIdMax characters costs
   * at most idempotencyIdBytesMax, as before lots existed, so the ids bound is reached first.
   */
  snapshotBytes(id: string): number {
    let n = id.length + idNumbersBytesMax;
    const d = this.detail;
    if (d === undefined) return n;
    if (Array.isArray(d)) for (const l of d) n += l.lot.length + lotBytesMax;
    else if ("ok" in d) n += refusalBytesMax;
    else n += d.lot.length + lotBytesMax;
    return n;
  }
}

const { idempotencyIdBytesMax, requestIdMax } = inventoryLimits;
/**
 * Snapshot bytes of one remembered id's columns besides the id's own characters: its quotes, a
 * fingerprint (≤ 15 digits), a timestamp (≤ 16), a quantity (≤ 13), an index (≤ 16) and commas.
 */
export const idNumbersBytesMax = 72;
/**
 * A kept refusal in the refusals column: [position, result] with the longest reason there is
 * (idempotency.test.ts measures them). With idNumbersBytesMax and the longest id it fills exactly
 * idempotencyIdBytesMax.
 */
export const refusalBytesMax = idempotencyIdBytesMax - requestIdMax - idNumbersBytesMax;
/**
 * One remembered lot's row in the lot columns besides its name: its id's position (≤ 7 digits), the
 * name's quotes, a quantity (≤ 10 digits: at most quantityMax), an expiry, and commas.
 */
export const lotBytesMax = 36;

/** The idempotency window in a v2 snapshot, in log order, one column per field. */
interface SnapshotWindow {
  ids: string[];
  fingerprints: number[];
  timestamps: number[];
  quantities: number[];
  indexes: number[];
  /** [position, result] of the ids whose first result was a refusal. */
  refusals: [number, ApplyResult][];
  /**
   * The lots of the ids whose first result carries them (deducts and returns), in columns too, a
   * row per lot in id and answer order: the position of its id, name, quantity, expiry ("": none).
   * Nearly every deduct has a lot, and columns serialise in a third of the time of a [position,
   * Lot[]] row per id (300,000 lots: ~45 ms against ~150) while the apply loop waits. Absent in
   * snapshots written before lots were answered: their ids replay without lots.
   */
  lotOwners?: number[];
  lotNames?: string[];
  lotQuantities?: number[];
  lotExpiries?: string[];
}

export interface IdempotencyLimits {
  /** How long (by leader timestamps) a request id is remembered. */
  windowMs: number;
  /**
   * Remembered ids at most; a new id beyond it is refused (IDEMPOTENCY_WINDOW_FULL). So is one once
   * the ids' snapshot bytes reach idsMax × idempotencyIdBytesMax: ids without lots never reach it
   * first, deducts that took many lots with long names can (the snapshot must stay writable).
   */
  idsMax: number;
  /**
   * Stock items (clinic × medication) and clinics the state holds at most: a write that would add
   * one more is refused (INVALID) and adds nothing. Constants in production (every replica must
   * agree); tests set them small.
   */
  itemsMax: number;
  clinicsMax: number;
}

export const idempotencyDefaults: IdempotencyLimits = {
  windowMs: 24 * 60 * 60 * 1000,
  idsMax: 1_000_000,
  itemsMax: 200_000,
  clinicsMax: 10_000,
};

export interface LowStockEvent {
  clinicId: string;
  medicationCode: string;
  quantity: number;
  reorderLevel: number;
  index: number;
}

/** Lot name used when a restock names none. */
export const defaultLot = "unlotted";
export const lotsPerItemMax = 1_000;
/** Clinics with a zone set, at most: each is a replicated entry forever. */
export const clinicZonesMax = 100_000;
/** Units one item may hold: far below 2^53, so every int64 answer is an exact number. */
export const { stockQuantityMax } = inventoryLimits;
/** Recent low-stock events kept; more than one entry can raise, so none of an entry's is dropped. */
export const lowStockEventsMax = 2 * entryCommandsMax;

export class InventoryStateMachine {
  private stock = new Map<string, Map<string, Item>>();
  /** Each clinic's IANA zone (setClinicTimeZone); a clinic not here keeps UTC. */
  private zones = new Map<string, string>();
  /** Insertion order is log order, and so (the clock never runs back) timestamp order. */
  private applied = new Map<string, Remembered>();
  /**
   * The same ids in the same order, consumed from `head`: forgetting the oldest by iterating the Map
   * from its start costs time proportional to the entries deleted before (V8 keeps their holes until
   * a rehash), which at 100,000 ids made every apply ~40 µs.
   */
  private order: string[] = [];
  private head = 0;
  /** Snapshot bytes of the remembered ids, at most (Remembered.snapshotBytes), and their bound. */
  private windowBytes = 0;
  private readonly windowBytesMax: number;
  private appliedIndex = 0;
  private clock = 0;
  /** A v1 snapshot's ids carry no timestamp: they get the next command's. */
  private undatedIds = false;
  /** New writes refused because the window was full (deterministic: the same on every replica). */
  windowFullRefusals = 0;
  /**
   * Low-stock events not yet published, oldest first (at most lowStockEventsMax: past it the oldest
   * are dropped and counted). Carried in the snapshot with the cursor, so a replica that becomes
   * leader after a restore still publishes them.
   */
  events: LowStockEvent[] = [];
  /** Entries up to this index had their low-stock events published (markEventsPublished). */
  private eventCursor = 0;
  /** Events dropped unpublished because the buffer was full (deterministic, as the buffer is). */
  eventsDropped = 0;
  private readonly limits: IdempotencyLimits;

  constructor(limits: Partial<IdempotencyLimits> = {}) {
    this.limits = { ...idempotencyDefaults, ...limits };
    if (!(this.limits.windowMs > 0 && this.limits.idsMax > 0)) {
      throw new Error("idempotency windowMs and idsMax must be positive");
    }
    this.windowBytesMax = this.limits.idsMax * idempotencyIdBytesMax;
  }

  get lastApplied(): number {
    return this.appliedIndex;
  }

  /** The window clock: the largest leader timestamp applied so far (ms since epoch). */
  get clockMs(): number {
    return this.clock;
  }

  /** Request ids remembered now. */
  get rememberedIds(): number {
    return this.applied.size;
  }

  /** Applies the command committed at `index`. Indexes must arrive in order, each once. */
  apply(index: number, cmd: Command): ApplyResult {
    return this.applyAll(index, [cmd])[0]!;
  }

  /**
   * Applies the commands of the entry committed at `index`, in order; each has its own result (and
   * its own request id, so a retried command inside a later batch still returns its first result).
   */
  applyAll(index: number, cmds: Command[]): ApplyResult[] {
    if (index <= this.appliedIndex) {
      throw new Error(`invariant: apply index ${index} not after last applied ${this.appliedIndex}`);
    }
    this.appliedIndex = index;
    const results: ApplyResult[] = [];
    for (const cmd of cmds) results.push(this.applyOne(index, cmd));
    return results;
  }

  private applyOne(index: number, cmd: Command): ApplyResult {
    // Leaders stamp monotonically, but a new leader's clock may be behind its predecessor's: the
    // max keeps the window clock monotone, and it is a function of the log alone.
    if (cmd.ts > this.clock) this.clock = cmd.ts;
    if (this.undatedIds) {
      for (const rem of this.applied.values()) if (rem.ts < 0) rem.ts = this.clock;
      this.undatedIds = false;
    }
    this.forget();
    const fp = fingerprint(cmd);
    const seen = failpoints.skipDedup ? undefined : this.applied.get(cmd.requestId);
    if (seen) {
      if (seen.fp !== -1 && seen.fp !== fp) return { ok: false, code: "IDEMPOTENCY_KEY_REUSED", index };
      return { ...seen.result, replayed: true };
    }
    if (this.applied.size >= this.limits.idsMax || this.windowBytes >= this.windowBytesMax) {
      // Fail closed: forgetting an id inside its window could apply a retry twice. (The bytes bound
      // is checked before the write, so one write's lots may pass it: a few KB over at most.)
      this.windowFullRefusals++;
      const oldest = this.applied.get(this.order[this.head]!)!;
      const retryAfterMs = Math.max(1, oldest.ts + this.limits.windowMs - this.clock);
      return { ok: false, code: "IDEMPOTENCY_WINDOW_FULL", retryAfterMs, index };
    }
    const r = this.execute(index, cmd);
    const m = Remembered.of(fp, this.clock, r);
    this.applied.set(cmd.requestId, m);
    this.windowBytes += m.snapshotBytes(cmd.requestId);
    this.order.push(cmd.requestId);
    return r;
  }

  /** Forgets the ids whose window has passed, oldest first (log order). */
  private forget(): void {
    const horizon = this.clock - this.limits.windowMs;
    while (this.head < this.order.length) {
      const id = this.order[this.head]!;
      const m = this.applied.get(id)!;
      if (m.ts > horizon) break;
      this.applied.delete(id);
      this.windowBytes -= m.snapshotBytes(id);
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /** Marks an index applied that carries no command (a Raft no-op or membership entry). */
  skip(index: number): void {
    if (index <= this.appliedIndex)
      throw new Error(`invariant: skip index ${index} not after ${this.appliedIndex}`);
    this.appliedIndex = index;
  }

  resultOf(requestId: string): ApplyResult | undefined {
    return this.applied.get(requestId)?.result;
  }

  item(clinicId: string, medicationCode: string): Item | undefined {
    return this.stock.get(clinicId)?.get(medicationCode);
  }

  items(clinicId: string): [string, Item][] {
    return [...(this.stock.get(clinicId)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The clinic's zone: set by setClinicTimeZone, else UTC. */
  timeZoneOf(clinicId: string): string {
    return this.zones.get(clinicId) ?? "UTC";
  }

  /** Today's date in the clinic's zone, by the window clock (the leader's timestamps, in log order). */
  private todayAt(clinicId: string): string {
    return localDate(this.clock, this.zones.get(clinicId));
  }

  private execute(index: number, cmd: Command): ApplyResult {
    switch (cmd.type) {
      case "restock": {
        // A lot is usable through its expiry date on the clinic's calendar; one already past it
        // would only be dead weight in the state.
        if (cmd.expiresOn !== undefined && cmd.expiresOn < this.todayAt(cmd.clinicId))
          return { ok: false, code: "LOT_EXPIRED", index };
        const existing = this.item(cmd.clinicId, cmd.medicationCode);
        const name = cmd.lot ?? defaultLot;
        const lot = existing?.lots.find((l) => l.lot === name);
        if (lot && lot.expiresOn !== cmd.expiresOn) {
          return { ok: false, code: "INVALID", reason: "lot exists with another expiry", index };
        }
        if (!lot && existing && existing.lots.length >= lotsPerItemMax)
          return { ok: false, code: "INVALID", reason: `too many lots (at most ${lotsPerItemMax})`, index };
        if (existing && total(existing) + cmd.quantity > stockQuantityMax)
          return { ok: false, code: "INVALID", reason: `stock would exceed ${stockQuantityMax}`, index };
        const full = existing ? undefined : this.noRoomFor(cmd.clinicId);
        if (full) return { ok: false, code: "INVALID", reason: full, index };
        const item = existing ?? this.itemFor(cmd.clinicId, cmd.medicationCode);
        if (lot) lot.quantity += cmd.quantity;
        else {
          item.lots.push(
            cmd.expiresOn
              ? { lot: name, quantity: cmd.quantity, expiresOn: cmd.expiresOn }
              : { lot: name, quantity: cmd.quantity },
          );
          item.lots.sort(fefo);
        }
        return { ok: true, quantity: total(item), index };
      }
      case "deduct": {
        // Looked up, not created: a refused deduct of an unknown medication leaves nothing behind.
        const item = this.item(cmd.clinicId, cmd.medicationCode);
        const today = this.todayAt(cmd.clinicId);
        const available = item ? usable(item, today) : 0;
        if (!item || cmd.quantity > available)
          return { ok: false, code: "INSUFFICIENT_STOCK", available, index };
        const before = total(item);
        const lots = take(item, cmd.quantity, today);
        this.lowStock(cmd.clinicId, cmd.medicationCode, item, before, index);
        return { ok: true, quantity: total(item), index, lots };
      }
      case "returnStock":
        return this.returnStock(index, cmd);
      case "transfer": {
        if (cmd.fromClinicId === cmd.toClinicId) {
          return { ok: false, code: "INVALID", reason: "source and destination are the same clinic", index };
        }
        const from = this.item(cmd.fromClinicId, cmd.medicationCode);
        // What may leave is decided on the source's calendar; at the destination its own applies.
        const today = this.todayAt(cmd.fromClinicId);
        const available = from ? usable(from, today) : 0;
        if (!from || cmd.quantity > available)
          return { ok: false, code: "INSUFFICIENT_STOCK", available, index };
        // The destination's bounds are checked before anything moves: a transfer is all or nothing.
        const existing = this.item(cmd.toClinicId, cmd.medicationCode);
        if (existing) {
          const newLots = plan(from, cmd.quantity, today).filter(
            (m) => !existing.lots.some((l) => l.lot === m.lot && l.expiresOn === m.expiresOn),
          ).length;
          if (existing.lots.length + newLots > lotsPerItemMax) {
            return {
              ok: false,
              code: "INVALID",
              reason: `the destination would hold more than ${lotsPerItemMax} lots`,
              index,
            };
          }
          if (total(existing) + cmd.quantity > stockQuantityMax)
            return {
              ok: false,
              code: "INVALID",
              reason: `destination stock would exceed ${stockQuantityMax}`,
              index,
            };
        }
        const full = existing ? undefined : this.noRoomFor(cmd.toClinicId);
        if (full) return { ok: false, code: "INVALID", reason: full, index };
        const to = existing ?? this.itemFor(cmd.toClinicId, cmd.medicationCode);
        const before = total(from);
        for (const moved of take(from, cmd.quantity, today)) {
          const same = to.lots.find((l) => l.lot === moved.lot && l.expiresOn === moved.expiresOn);
          if (same) same.quantity += moved.quantity;
          else to.lots.push(moved);
        }
        to.lots.sort(fefo);
        if (to.lots.length > lotsPerItemMax) throw new Error("invariant: transfer exceeded the lot bound");
        this.lowStock(cmd.fromClinicId, cmd.medicationCode, from, before, index);
        return { ok: true, quantity: total(from), index };
      }
      case "setReorderLevel": {
        const full = this.item(cmd.clinicId, cmd.medicationCode) ? undefined : this.noRoomFor(cmd.clinicId);
        if (full) return { ok: false, code: "INVALID", reason: full, index };
        const item = this.itemFor(cmd.clinicId, cmd.medicationCode);
        item.reorderLevel = cmd.level;
        return { ok: true, quantity: total(item), index };
      }
      case "markEventsPublished": {
        // Never past what this replica has applied before this entry: those are the only events
        // the publishing leader could have seen.
        const through = Math.min(cmd.throughIndex, index - 1);
        if (through > this.eventCursor) {
          this.eventCursor = through;
          let keep = 0;
          while (keep < this.events.length && this.events[keep]!.index <= through) keep++;
          if (keep > 0) this.events.splice(0, keep);
        }
        return { ok: true, quantity: 0, index };
      }
      case "setClinicTimeZone": {
        if (!this.zones.has(cmd.clinicId) && this.zones.size >= clinicZonesMax)
          return { ok: false, code: "INVALID", reason: `at most ${clinicZonesMax} clinic zones`, index };
        this.zones.set(cmd.clinicId, cmd.timeZone);
        return { ok: true, quantity: 0, index };
      }
    }
  }

  /**
   * Puts the lots back, all or none: worked out on a copy of the item's lots, which replaces them
   * only once every bound holds. A lot's expiry is taken as it comes, even one already past: it is
   * the same physical stock coming back (deducts skip it), unlike a restock of new stock.
   */
  private returnStock(index: number, cmd: Extract<Command, { type: "returnStock" }>): ApplyResult {
    const existing = this.item(cmd.clinicId, cmd.medicationCode);
    const lots = existing ? existing.lots.map((l) => ({ ...l })) : [];
    let added = 0;
    for (let i = 0; i < cmd.lots.length; i++) {
      const back = cmd.lots[i]!;
      const same = lots.find((l) => l.lot === back.lot && l.expiresOn === back.expiresOn);
      if (same) same.quantity += back.quantity;
      // A lot name is one physical batch with one expiry: a clash means these are not its lots.
      else if (lots.some((l) => l.lot === back.lot))
        return { ok: false, code: "INVALID", reason: `lots[${i}] is held with another expiry`, index };
      else lots.push(lotOf(back.lot, back.quantity, back.expiresOn));
      added += back.quantity;
    }
    if (lots.length > lotsPerItemMax)
      return { ok: false, code: "INVALID", reason: `too many lots (at most ${lotsPerItemMax})`, index };
    if ((existing ? total(existing) : 0) + added > stockQuantityMax)
      return { ok: false, code: "INVALID", reason: `stock would exceed ${stockQuantityMax}`, index };
    const full = existing ? undefined : this.noRoomFor(cmd.clinicId);
    if (full) return { ok: false, code: "INVALID", reason: full, index };
    const item = existing ?? this.itemFor(cmd.clinicId, cmd.medicationCode);
    item.lots = lots.sort(fefo);
    // The answer is the lots as asked, in a fixed shape, never the objects the stock holds.
    return {
      ok: true,
      quantity: total(item),
      index,
      lots: cmd.lots.map((l) => lotOf(l.lot, l.quantity, l.expiresOn)),
    };
  }

  private lowStock(clinicId: string, medicationCode: string, item: Item, before: number, index: number) {
    const after = total(item);
    if (item.reorderLevel > 0 && before > item.reorderLevel && after <= item.reorderLevel) {
      this.events.push({ clinicId, medicationCode, quantity: after, reorderLevel: item.reorderLevel, index });
      if (this.events.length > lowStockEventsMax) {
        this.eventsDropped += this.events.length - lowStockEventsMax;
        this.events.splice(0, this.events.length - lowStockEventsMax);
      }
    }
  }

  /** Why a new item of `clinicId` may not be added (its bound, or the clinics'), or undefined. */
  private noRoomFor(clinicId: string): string | undefined {
    if (!this.stock.has(clinicId) && this.stock.size >= this.limits.clinicsMax)
      return `at most ${this.limits.clinicsMax} clinics`;
    if (this.itemCount >= this.limits.itemsMax) return `at most ${this.limits.itemsMax} stock items`;
    return undefined;
  }

  private get itemCount(): number {
    let n = 0;
    for (const c of this.stock.values()) n += c.size;
    return n;
  }

  private itemFor(clinicId: string, medicationCode: string): Item {
    let clinic = this.stock.get(clinicId);
    if (!clinic) {
      clinic = new Map();
      this.stock.set(clinicId, clinic);
    }
    let item = clinic.get(medicationCode);
    if (!item) {
      item = { reorderLevel: 0, lots: [] };
      clinic.set(medicationCode, item);
    }
    return item;
  }

  /**
   * Deterministic bytes of the whole state (v2): sorted keys, the window clock, the clinic zones,
   * and the remembered ids in log order with their fingerprints, timestamps and first results.
   */
  snapshot(): Uint8Array {
    const clinics = [...this.stock.keys()].sort().map((c) => [c, this.items(c)] as const);
    // The window in columns: flat arrays serialise in well under half the time of a row per id
    // (measured with 1,000,000 ids: ~0.4 s against ~0.9 s), and the apply loop waits for it.
    const n = this.applied.size;
    const window: SnapshotWindow = {
      ids: new Array(n),
      fingerprints: new Array(n),
      timestamps: new Array(n),
      quantities: new Array(n),
      indexes: new Array(n),
      refusals: [],
    };
    const lotOwners: number[] = [];
    const lotNames: string[] = [];
    const lotQuantities: number[] = [];
    const lotExpiries: string[] = [];
    const lotRow = (k: number, l: Lot) => {
      lotOwners.push(k);
      lotNames.push(l.lot);
      lotQuantities.push(l.quantity);
      lotExpiries.push(l.expiresOn ?? "");
    };
    let k = 0;
    for (const [id, m] of this.applied) {
      window.ids[k] = id;
      window.fingerprints[k] = m.fp;
      window.timestamps[k] = m.ts;
      window.quantities[k] = m.quantity;
      window.indexes[k] = m.index;
      const d = m.detail;
      if (Array.isArray(d)) for (const l of d) lotRow(k, l);
      else if (d && "ok" in d) window.refusals.push([k, d]);
      else if (d) lotRow(k, d);
      k++;
    }
    Object.assign(window, { lotOwners, lotNames, lotQuantities, lotExpiries });
    const zones = [...this.zones].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const doc = {
      v: 2,
      appliedIndex: this.appliedIndex,
      clockMs: this.clock,
      clinics,
      zones,
      window,
      events: this.events,
      eventCursor: this.eventCursor,
      eventsDropped: this.eventsDropped,
    };
    return new TextEncoder().encode(JSON.stringify(doc));
  }

  /** Reads v2, and v1 (before the time window): its ids replay whatever the command, dated by the next one. */
  restore(data: Uint8Array): void {
    const doc = JSON.parse(new TextDecoder().decode(data)) as
      | {
          v: 2;
          appliedIndex: number;
          clockMs: number;
          clinics: [string, [string, Item][]][];
          zones: [string, string][];
          window: SnapshotWindow;
          /** Absent in snapshots written before the replicated event cursor. */
          events?: LowStockEvent[];
          eventCursor?: number;
          eventsDropped?: number;
        }
      | {
          v: 1;
          appliedIndex: number;
          clinics: [string, [string, Item][]][];
          applied: [string, ApplyResult][];
        };
    if (doc.v === 2) {
      const w = doc.window;
      const refusals = new Map(w.refusals);
      const lots = new Map<number, Lot[]>();
      const owners = w.lotOwners ?? [];
      for (let i = 0; i < owners.length; i++) {
        const l = lotOf(w.lotNames![i]!, w.lotQuantities![i]!, w.lotExpiries![i] || undefined);
        const of = lots.get(owners[i]!);
        if (of) of.push(l);
        else lots.set(owners[i]!, [l]);
      }
      this.applied = new Map();
      for (let k = 0; k < w.ids.length; k++) {
        const m = new Remembered(
          w.fingerprints[k]!,
          w.timestamps[k]!,
          w.quantities[k]!,
          w.indexes[k]!,
          refusals.get(k) ?? Remembered.lotsDetail(lots.get(k)),
        );
        this.applied.set(w.ids[k]!, m);
      }
      this.clock = doc.clockMs;
      this.zones = new Map(doc.zones);
      this.undatedIds = w.timestamps.some((ts) => ts < 0);
      this.events = doc.events ?? [];
      this.eventCursor = doc.eventCursor ?? 0;
      this.eventsDropped = doc.eventsDropped ?? 0;
    } else if (doc.v === 1) {
      this.applied = new Map(doc.applied.map(([id, r]) => [id, Remembered.of(-1, -1, r)]));
      this.clock = 0;
      this.zones = new Map();
      this.undatedIds = this.applied.size > 0;
      this.events = [];
      this.eventCursor = 0;
    } else {
      throw new Error(`unknown inventory snapshot version ${(doc as { v: unknown }).v}`);
    }
    this.order = [...this.applied.keys()];
    this.head = 0;
    this.windowBytes = 0;
    for (const [id, m] of this.applied) this.windowBytes += m.snapshotBytes(id);
    this.stock = new Map(doc.clinics.map(([c, items]) => [c, new Map(items)]));
    this.appliedIndex = doc.appliedIndex;
  }

  /** Hash of the stock alone (not of the index), so replicas at the same index compare equal. */
  stateHash(): string {
    const clinics = [...this.stock.keys()].sort().map((c) => [c, this.items(c)]);
    // Zones decide future answers, so they count; with none set the hash is the stock's alone.
    const zones = [...this.zones].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const doc = zones.length === 0 ? clinics : [clinics, zones];
    return createHash("sha256").update(JSON.stringify(doc)).digest("hex");
  }
}

/**
 * A command's fingerprint without its request id and timestamp: the first 48 bits of SHA-256 over
 * its fields in a fixed order, as a number. It is only ever compared with the fingerprint stored
 * under the same id, so a different command passes for the same one with odds of 2^-48.
 */
export function fingerprint(cmd: Command): number {
  let canon: string;
  switch (cmd.type) {
    case "restock":
      canon = `r|${cmd.clinicId}|${cmd.medicationCode}|${cmd.quantity}|${cmd.lot ?? ""}|${cmd.expiresOn ?? ""}`;
      break;
    case "deduct":
      canon = `d|${cmd.clinicId}|${cmd.medicationCode}|${cmd.quantity}`;
      break;
    case "transfer":
      canon = `t|${cmd.fromClinicId}|${cmd.toClinicId}|${cmd.medicationCode}|${cmd.quantity}`;
      break;
    case "setReorderLevel":
      canon = `l|${cmd.clinicId}|${cmd.medicationCode}|${cmd.level}`;
      break;
    case "setClinicTimeZone":
      canon = `z|${cmd.clinicId}|${cmd.timeZone}`;
      break;
    case "markEventsPublished":
      canon = `e|${cmd.throughIndex}`;
      break;
    case "returnStock":
      // The lots as a set: the same lots in another order are the same return. ';' and ',' are
      // outside the lot-name alphabet, so no two lists read the same.
      canon = `s|${cmd.clinicId}|${cmd.medicationCode}|${cmd.lots
        .map((l) => `${l.lot};${l.quantity};${l.expiresOn ?? ""}`)
        .sort()
        .join(",")}`;
      break;
  }
  // crypto.hash's hex string, its first 12 digits read as a number: the same 48 bits as
  // createHash(…).digest().readUIntBE(0, 6), in a third of the time (no Hash object, no Buffer). It
  // runs for every command on every replica. The value must never change: it is in the snapshots.
  return Number.parseInt(hash("sha256", canon).slice(0, 12), 16);
}

const dayFormats = new Map<string, Intl.DateTimeFormat>();

/**
 * The calendar date YYYY-MM-DD at `ms` in `timeZone` (UTC when undefined). Replicas agree as long as
 * they run the same time zone data (the same Node build: docs/inventory.md).
 */
export function localDate(ms: number, timeZone: string | undefined): string {
  const zone = timeZone ?? "UTC";
  // Every write asks for today's date, many in the same second: the last answer per zone is kept
  // for the second it was computed in. Exact: no zone's offset has ever had a fraction of a second.
  const second = Math.floor(ms / 1000);
  const last = lastDates.get(zone);
  if (last !== undefined && last.second === second) return last.date;
  let date: string;
  if (zone === "UTC") date = new Date(ms).toISOString().slice(0, 10);
  else {
    let f = dayFormats.get(zone);
    if (!f) {
      f = new Intl.DateTimeFormat("en-CA", {
        timeZone: zone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
      });
      dayFormats.set(zone, f);
    }
    const parts = f.formatToParts(ms);
    const part = (t: string) => parts.find((p) => p.type === t)!.value;
    date = `${part("year")}-${part("month")}-${part("day")}`;
  }
  if (last !== undefined) {
    last.second = second;
    last.date = date;
  } else lastDates.set(zone, { second, date });
  return date;
}

/** localDate's last answer per zone (bounded by dayFormats': one entry per zone a clinic uses). */
const lastDates = new Map<string, { second: number; date: string }>();

/** A lot in the one shape the state holds (no expiresOn key when it never expires). */
function lotOf(lot: string, quantity: number, expiresOn: string | undefined): Lot {
  return expiresOn === undefined ? { lot, quantity } : { lot, quantity, expiresOn };
}

function fefo(a: Lot, b: Lot): number {
  if (a.expiresOn !== b.expiresOn) {
    if (a.expiresOn === undefined) return 1;
    if (b.expiresOn === undefined) return -1;
    return a.expiresOn < b.expiresOn ? -1 : 1;
  }
  return a.lot < b.lot ? -1 : a.lot > b.lot ? 1 : 0;
}

const isExpired = (l: Lot, today: string) => l.expiresOn !== undefined && l.expiresOn < today;

export function total(item: Item): number {
  return item.lots.reduce((s, l) => s + l.quantity, 0);
}

export function usable(item: Item, today: string): number {
  return item.lots.reduce((s, l) => s + (isExpired(l, today) ? 0 : l.quantity), 0);
}

/** What take() would remove per lot, without removing it. */
function plan(item: Item, quantity: number, today: string): Lot[] {
  let left = quantity;
  const taken: Lot[] = [];
  for (const lot of item.lots) {
    if (left === 0) break;
    if (isExpired(lot, today) || lot.quantity === 0) continue;
    const n = Math.min(lot.quantity, left);
    left -= n;
    taken.push(
      lot.expiresOn ? { lot: lot.lot, quantity: n, expiresOn: lot.expiresOn } : { lot: lot.lot, quantity: n },
    );
  }
  return taken;
}

/** Removes `quantity` from non-expired lots, earliest expiry first; returns what was taken per lot. */
function take(item: Item, quantity: number, today: string): Lot[] {
  let left = quantity;
  const taken: Lot[] = [];
  for (const lot of item.lots) {
    if (left === 0) break;
    if (isExpired(lot, today) || lot.quantity === 0) continue;
    const n = Math.min(lot.quantity, left);
    lot.quantity -= n;
    left -= n;
    taken.push(
      lot.expiresOn ? { lot: lot.lot, quantity: n, expiresOn: lot.expiresOn } : { lot: lot.lot, quantity: n },
    );
  }
  if (left !== 0) throw new Error("invariant: took less than was checked available");
  item.lots = item.lots.filter((l) => l.quantity > 0);
  for (const l of item.lots) if (l.quantity < 0) throw new Error("invariant: negative lot");
  return taken;
}
