// Owns the node's view of time and chance: timers, the next-turn callback, the clock and random
// numbers. Production backs it with Node's own (nodeScheduler); the simulator backs it with virtual
// time and one seeded generator, so a seed replays the real node's every decision.
import { randomUUID } from "node:crypto";

export interface Timer {
  cancel(): void;
}

export interface Scheduler {
  /** Milliseconds on a monotonic clock (only differences matter). */
  now(): number;
  /** Runs `fn` once after `ms`; `unref`: does not keep the process alive on its own. */
  after(ms: number, fn: () => void, unref?: boolean): Timer;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Timer;
  /** Runs `fn` on the next turn, after everything already queued for this one (setImmediate). */
  soon(fn: () => void): void;
  /** Uniform in [0, 1). */
  random(): number;
  /** A fresh unique id (incarnations, read contexts). */
  uuid(): string;
}

export const nodeScheduler: Scheduler = {
  now: () => performance.now(),
  after(ms, fn, unref = false) {
    const t = setTimeout(fn, ms);
    if (unref) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
  soon: (fn) => void setImmediate(fn),
  random: Math.random,
  uuid: () => randomUUID(),
};
