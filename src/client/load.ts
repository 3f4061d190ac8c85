// Owns the load models. Open: requests arrive on a schedule (a constant or stepped rate, as k6's
// constant-arrival-rate and wrk2's -R), whatever the system's speed, and each request's latency
// runs from its INTENDED start, so a stall of the system (or of this process) shows in the
// numbers instead of silently thinning the load (coordinated omission). Outstanding requests are
// bounded: an arrival that finds the bound reached is dropped and counted, not queued. Closed: N
// virtual users, each sending its next request when the last one answered.

export interface Stage {
  durationMs: number;
  /** Arrivals per second during the stage. */
  ratePerSecond: number;
}

export type LoadModel =
  | { kind: "open"; stages: Stage[]; inFlightMax: number }
  | { kind: "closed"; vus: number; durationMs: number };

/** Time and waiting, as a seam: the real clock, or a test's. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** The longest single sleep of the open loop. */
const sleepSliceMs = 250;

/** A request that left more than this after its intended start counts as late. */
export const lateThresholdMs = 10;

/**
 * The intended start of every arrival, as milliseconds from the run's start: evenly spaced at each
 * stage's rate, the stages one after the other.
 */
export function* arrivalOffsets(stages: Stage[]): Generator<number> {
  let stageStartMs = 0;
  for (const s of stages) {
    if (s.ratePerSecond > 0) {
      const gapMs = 1_000 / s.ratePerSecond;
      for (let i = 0; ; i++) {
        const t = i * gapMs;
        if (t >= s.durationMs) break;
        yield stageStartMs + t;
      }
    }
    stageStartMs += s.durationMs;
  }
}

export const totalDurationMs = (m: LoadModel): number =>
  m.kind === "open" ? m.stages.reduce((a, s) => a + s.durationMs, 0) : m.durationMs;

/** What the runner learns of one request: its timings from the clock it was given. */
export interface Timing {
  intendedAt: number;
  sentAt: number;
  doneAt: number;
}

export interface LoadHooks<T> {
  /** Chooses what the next arrival does; called at its intended start. */
  next(): T;
  /**
   * Sends one request and records it, timing it from `intendedAt`; never rejects (a failure is a
   * value). In the closed model intendedAt is sentAt.
   */
  run(ticket: T, intendedAt: number, sentAt: number): Promise<void>;
  /** An arrival that found inFlightMax requests outstanding and was not sent. */
  dropped?(ticket: T): void;
}

export interface LoadCounts {
  /** Arrivals the schedule had (open) or requests started (closed). */
  intended: number;
  sent: number;
  dropped: number;
  /** Sent more than lateThresholdMs after the intended start (this process could not keep up). */
  late: number;
  /** Most requests outstanding at once. */
  inFlightPeak: number;
  elapsedMs: number;
}

/**
 * The open model. The loop wakes for the next arrival and sends every one that is due, so an event
 * loop that slept too long sends the backlog at once (each late request still timed from its
 * intended start).
 */
export async function runOpen<T>(
  stages: Stage[],
  inFlightMax: number,
  hooks: LoadHooks<T>,
  clock: Clock = realClock,
  shouldStop: () => boolean = () => false,
): Promise<LoadCounts> {
  const counts: LoadCounts = { intended: 0, sent: 0, dropped: 0, late: 0, inFlightPeak: 0, elapsedMs: 0 };
  const start = clock.now();
  const outstanding = new Set<Promise<void>>();
  for (const offset of arrivalOffsets(stages)) {
    if (shouldStop()) break;
    const intendedAt = start + offset;
    // A timer may fire a little early by this clock: never send before the intended start. Long
    // gaps (low rates) are slept in pieces, so a stop request is seen soon.
    for (
      let waitMs = intendedAt - clock.now();
      waitMs > 0 && !shouldStop();
      waitMs = intendedAt - clock.now()
    ) {
      await clock.sleep(Math.min(waitMs, sleepSliceMs));
    }
    if (shouldStop()) break;
    counts.intended++;
    const ticket = hooks.next();
    if (outstanding.size >= inFlightMax) {
      counts.dropped++;
      hooks.dropped?.(ticket);
      continue;
    }
    const sentAt = clock.now();
    counts.sent++;
    if (sentAt - intendedAt > lateThresholdMs) counts.late++;
    const p: Promise<void> = hooks.run(ticket, intendedAt, sentAt).finally(() => outstanding.delete(p));
    outstanding.add(p);
    if (outstanding.size > counts.inFlightPeak) counts.inFlightPeak = outstanding.size;
  }
  await Promise.all(outstanding);
  counts.elapsedMs = clock.now() - start;
  return counts;
}

/** The closed model: `vus` loops, each sending its next request when the last one answered. */
export async function runClosed<T>(
  vus: number,
  durationMs: number,
  hooks: LoadHooks<T>,
  clock: Clock = realClock,
  shouldStop: () => boolean = () => false,
): Promise<LoadCounts> {
  const counts: LoadCounts = { intended: 0, sent: 0, dropped: 0, late: 0, inFlightPeak: vus, elapsedMs: 0 };
  const start = clock.now();
  const end = start + durationMs;
  const user = async () => {
    while (clock.now() < end && !shouldStop()) {
      const ticket = hooks.next();
      const at = clock.now();
      counts.intended++;
      counts.sent++;
      await hooks.run(ticket, at, at);
    }
  };
  await Promise.all(Array.from({ length: vus }, user));
  counts.elapsedMs = clock.now() - start;
  return counts;
}
