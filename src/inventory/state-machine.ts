// Owns the inventory state machine: stock per (clinic, medication) in lots, applied in log order.
// Apply is deterministic (no clock, no randomness: time comes inside the command), so every replica
// that applies the same log reaches the same state, which stateHash() lets tests compare.
// Rules: stock never goes negative; Deduct takes non-expired lots first-expiry-first-out; Transfer
// is all or nothing; a request id applied before returns its first result and changes nothing.
import { createHash } from "node:crypto";
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

export type ApplyResult =
  | { ok: true; quantity: number; index: number }
  | { ok: false; code: "INSUFFICIENT_STOCK"; available: number; index: number }
  | { ok: false; code: "INVALID"; reason: string; index: number };

export interface LowStockEvent {
  clinicId: string;
  medicationCode: string;
  quantity: number;
  reorderLevel: number;
  index: number;
}

/** Lot name used when a restock names none. */
export const defaultLot = "unlotted";
/** Bound on the applied-request table; the oldest entries go first (same order on every replica). */
export const appliedRequestsMaxDefault = 100_000;
export const lotsPerItemMax = 1_000;
/** Recent low-stock events kept; more than one entry can raise, so none of an entry's is dropped. */
export const lowStockEventsMax = 2 * entryCommandsMax;

export class InventoryStateMachine {
  private stock = new Map<string, Map<string, Item>>();
  private applied = new Map<string, ApplyResult>();
  private appliedIndex = 0;
  readonly events: LowStockEvent[] = [];

  constructor(private readonly appliedRequestsMax = appliedRequestsMaxDefault) {}

  get lastApplied(): number {
    return this.appliedIndex;
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
    for (const cmd of cmds) {
      const seen = this.applied.get(cmd.requestId);
      if (seen) {
        results.push(seen);
        continue;
      }
      const result = this.execute(index, cmd);
      this.applied.set(cmd.requestId, result);
      results.push(result);
    }
    while (this.applied.size > this.appliedRequestsMax) {
      const oldest = this.applied.keys().next().value as string;
      this.applied.delete(oldest);
    }
    return results;
  }

  /** Marks an index applied that carries no command (a Raft no-op or membership entry). */
  skip(index: number): void {
    if (index <= this.appliedIndex)
      throw new Error(`invariant: skip index ${index} not after ${this.appliedIndex}`);
    this.appliedIndex = index;
  }

  resultOf(requestId: string): ApplyResult | undefined {
    return this.applied.get(requestId);
  }

  item(clinicId: string, medicationCode: string): Item | undefined {
    return this.stock.get(clinicId)?.get(medicationCode);
  }

  items(clinicId: string): [string, Item][] {
    return [...(this.stock.get(clinicId)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  private execute(index: number, cmd: Command): ApplyResult {
    const today = new Date(cmd.ts).toISOString().slice(0, 10);
    switch (cmd.type) {
      case "restock": {
        const item = this.itemFor(cmd.clinicId, cmd.medicationCode);
        const name = cmd.lot ?? defaultLot;
        const lot = item.lots.find((l) => l.lot === name);
        if (lot) {
          if (lot.expiresOn !== cmd.expiresOn) {
            return { ok: false, code: "INVALID", reason: "lot exists with another expiry", index };
          }
          lot.quantity += cmd.quantity;
        } else {
          if (item.lots.length >= lotsPerItemMax)
            return { ok: false, code: "INVALID", reason: "too many lots", index };
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
        const item = this.itemFor(cmd.clinicId, cmd.medicationCode);
        const available = usable(item, today);
        if (cmd.quantity > available) return { ok: false, code: "INSUFFICIENT_STOCK", available, index };
        const before = total(item);
        take(item, cmd.quantity, today);
        this.lowStock(cmd.clinicId, cmd.medicationCode, item, before, index);
        return { ok: true, quantity: total(item), index };
      }
      case "transfer": {
        if (cmd.fromClinicId === cmd.toClinicId) {
          return { ok: false, code: "INVALID", reason: "source and destination are the same clinic", index };
        }
        const from = this.itemFor(cmd.fromClinicId, cmd.medicationCode);
        const available = usable(from, today);
        if (cmd.quantity > available) return { ok: false, code: "INSUFFICIENT_STOCK", available, index };
        const to = this.itemFor(cmd.toClinicId, cmd.medicationCode);
        const before = total(from);
        for (const moved of take(from, cmd.quantity, today)) {
          const same = to.lots.find((l) => l.lot === moved.lot && l.expiresOn === moved.expiresOn);
          if (same) same.quantity += moved.quantity;
          else to.lots.push(moved);
        }
        to.lots.sort(fefo);
        this.lowStock(cmd.fromClinicId, cmd.medicationCode, from, before, index);
        return { ok: true, quantity: total(from), index };
      }
      case "setReorderLevel": {
        const item = this.itemFor(cmd.clinicId, cmd.medicationCode);
        item.reorderLevel = cmd.level;
        return { ok: true, quantity: total(item), index };
      }
    }
  }

  private lowStock(clinicId: string, medicationCode: string, item: Item, before: number, index: number) {
    const after = total(item);
    if (item.reorderLevel > 0 && before > item.reorderLevel && after <= item.reorderLevel) {
      this.events.push({ clinicId, medicationCode, quantity: after, reorderLevel: item.reorderLevel, index });
      if (this.events.length > lowStockEventsMax) {
        this.events.splice(0, this.events.length - lowStockEventsMax);
      }
    }
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

  /** Deterministic bytes of the whole state: sorted keys, the applied table in eviction order. */
  snapshot(): Uint8Array {
    const clinics = [...this.stock.keys()].sort().map((c) => [c, this.items(c)] as const);
    const doc = { v: 1, appliedIndex: this.appliedIndex, clinics, applied: [...this.applied.entries()] };
    return new TextEncoder().encode(JSON.stringify(doc));
  }

  restore(data: Uint8Array): void {
    const doc = JSON.parse(new TextDecoder().decode(data)) as {
      v: number;
      appliedIndex: number;
      clinics: [string, [string, Item][]][];
      applied: [string, ApplyResult][];
    };
    if (doc.v !== 1) throw new Error(`unknown inventory snapshot version ${doc.v}`);
    this.stock = new Map(doc.clinics.map(([c, items]) => [c, new Map(items)]));
    this.applied = new Map(doc.applied);
    this.appliedIndex = doc.appliedIndex;
  }

  /** Hash of the stock alone (not of the index), so replicas at the same index compare equal. */
  stateHash(): string {
    const clinics = [...this.stock.keys()].sort().map((c) => [c, this.items(c)]);
    return createHash("sha256").update(JSON.stringify(clinics)).digest("hex");
  }
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
