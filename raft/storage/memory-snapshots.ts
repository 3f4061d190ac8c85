// Owns the in-memory twin of the snapshot store (PgSnapshots): snapshots by index, the newest one
// served, a second save of an index ignored (ON CONFLICT DO NOTHING). With a scheduler a save takes
// simulated time, can fail, or stall (PostgreSQL slow or down); a save lands only when it completes,
// so a crash before then loses it, as a transaction that never committed.
import type { Snapshot } from "../core/types.ts";
import type { SnapshotStore } from "../node/node.ts";
import type { Scheduler } from "../node/scheduler.ts";

export interface SnapshotFaults {
  saveMsMin: number;
  saveMsMax: number;
  failRate: number;
  stallRate: number;
  stallMs: number;
}

export const noSnapshotFaults: SnapshotFaults = {
  saveMsMin: 0,
  saveMsMax: 0,
  failRate: 0,
  stallRate: 0,
  stallMs: 0,
};

export class MemorySnapshots {
  private readonly byIndex = new Map<number, Snapshot>();
  faults: SnapshotFaults;
  saves = 0;
  failures = 0;
  /** Saves issued and not yet completed: a crash may find PostgreSQL committed them, or not. */
  private readonly inFlight = new Set<Snapshot>();

  constructor(faults: SnapshotFaults = noSnapshotFaults) {
    this.faults = { ...faults };
  }

  /** A store handle for one process life (its saves complete on `clock`, or at once without one). */
  open(clock?: Scheduler): SnapshotStore {
    return {
      save: (s) => {
        const copy: Snapshot = { meta: structuredClone(s.meta), data: s.data.slice() };
        if (!clock) {
          this.land(copy);
          return Promise.resolve();
        }
        const f = this.faults;
        const stall = clock.random() < f.stallRate;
        const fail = clock.random() < f.failRate;
        const ms = (stall ? f.stallMs : 0) + f.saveMsMin + clock.random() * (f.saveMsMax - f.saveMsMin);
        if (!fail) this.inFlight.add(copy);
        return new Promise((resolve, reject) =>
          clock.after(ms, () => {
            this.inFlight.delete(copy);
            if (fail) {
              this.failures++;
              reject(new Error("snapshot store unavailable (simulated)"));
              return;
            }
            this.land(copy);
            resolve();
          }),
        );
      },
      latest: async () => {
        const top = this.latestIndex();
        const s = top === undefined ? undefined : this.byIndex.get(top);
        return s && { meta: structuredClone(s.meta), data: s.data.slice() };
      },
    };
  }

  /** The process died: each save still in flight was committed by the store or not, at random. */
  crash(random: () => number): void {
    for (const s of this.inFlight) if (random() < 0.5) this.land(s);
    this.inFlight.clear();
  }

  latestIndex(): number | undefined {
    let top: number | undefined;
    for (const i of this.byIndex.keys()) if (top === undefined || i > top) top = i;
    return top;
  }

  private land(s: Snapshot): void {
    this.saves++;
    if (!this.byIndex.has(s.meta.index)) this.byIndex.set(s.meta.index, s);
  }
}
