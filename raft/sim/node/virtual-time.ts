// Owns virtual time for the real-node simulator: one event queue for every process, each process
// life seeing it through its own Scheduler. A crash ends a life: its timers, callbacks and any
// disk or network completion still queued for it never run, so the dead process's promises stay
// pending forever, as they would. After each event the queue waits for every promise continuation
// that event started (one real macrotask turn), so async code runs to its next wait before time
// moves on: a seed replays exactly.
import type { Scheduler, Timer } from "../../node/scheduler.ts";
import { EventHeap } from "../heap.ts";
import type { Random } from "../prng.ts";

export class Life {
  dead = false;
  constructor(readonly name: string) {}
}

export class VirtualTime {
  private readonly heap = new EventHeap();
  private t = 0;
  events = 0;

  get now(): number {
    return this.t;
  }

  at(ms: number, life: Life, fn: () => void): Timer {
    let cancelled = false;
    this.heap.push(this.t + Math.max(0, ms), () => {
      if (!cancelled && !life.dead) fn();
    });
    return {
      cancel: () => {
        cancelled = true;
      },
    };
  }

  /** A Scheduler for one life; `random` is its own seeded stream. */
  scheduler(life: Life, random: Random): Scheduler {
    let uuids = 0;
    return {
      now: () => this.t,
      after: (ms, fn) => this.at(ms, life, fn),
      every: (ms, fn) => {
        let timer: Timer;
        let cancelled = false;
        const arm = () => {
          timer = this.at(ms, life, () => {
            if (cancelled) return;
            arm();
            fn();
          });
        };
        arm();
        return {
          cancel: () => {
            cancelled = true;
            timer.cancel();
          },
        };
      },
      soon: (fn) => void this.at(0, life, fn),
      random,
      // Unique across lives and runs of one seed, and the same on replay.
      uuid: () => `${life.name}-${Math.floor(random() * 2 ** 32).toString(16)}-${++uuids}`,
    };
  }

  /** Runs events up to virtual time `untilMs`; `after` is called after each event has settled. */
  async runUntil(untilMs: number, after?: () => boolean): Promise<void> {
    for (;;) {
      const e = this.heap.peek();
      if (e === undefined || e.t > untilMs) break;
      this.heap.pop();
      this.t = e.t;
      this.events++;
      e.run();
      await settle();
      if (after?.() === false) return;
    }
    this.t = Math.max(this.t, untilMs);
  }
}

/** Resolves once every microtask queued so far (and those they queue) has run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
