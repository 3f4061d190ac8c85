// The load models in virtual time: arrivals on schedule, latency timed from the intended start when
// the process falls behind, the bound on outstanding requests, and the closed model's users.
import { describe, expect, it } from "vitest";
import { arrivalOffsets, type Clock, lateThresholdMs, runClosed, runOpen } from "./load.ts";

/**
 * A discrete-event clock: sleeps and request delays wait in one queue; `drive` advances time to the
 * earliest waiter whenever the code under test is idle. `stall` makes chosen sleeps overshoot, as a
 * blocked event loop does.
 */
class FakeClock implements Clock {
  t = 0;
  private waiters: { at: number; seq: number; wake: () => void }[] = [];
  private seq = 0;
  sleeps = 0;
  constructor(private readonly stall: (sleepNo: number) => number = () => 0) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number): Promise<void> {
    const extra = this.stall(++this.sleeps);
    return this.after(ms + extra);
  }

  after(ms: number): Promise<void> {
    return new Promise((wake) => this.waiters.push({ at: this.t + ms, seq: this.seq++, wake }));
  }

  async drive<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    const out = p.finally(() => {
      settled = true;
    });
    for (;;) {
      await new Promise((r) => setImmediate(r));
      if (settled) return out;
      this.waiters.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const w = this.waiters.shift();
      if (!w) throw new Error("deadlock: nothing to wait for and not settled");
      this.t = Math.max(this.t, w.at);
      w.wake();
    }
  }
}

describe("arrival schedule", () => {
  it("spaces arrivals evenly per stage and runs the stages one after the other", () => {
    const offsets = [
      ...arrivalOffsets([
        { durationMs: 1_000, ratePerSecond: 4 },
        { durationMs: 500, ratePerSecond: 0 },
        { durationMs: 1_000, ratePerSecond: 2 },
      ]),
    ];
    expect(offsets).toEqual([0, 250, 500, 750, 1_500, 2_000]);
  });
});

describe("open model", () => {
  it("times every request from its intended start, so a stall of the client shows in latency", async () => {
    // The third sleep (toward the arrival at 200 ms) overshoots by 350 ms.
    const clock = new FakeClock((n) => (n === 2 ? 350 : 0));
    const seen: { intendedAt: number; sentAt: number; latencyMs: number }[] = [];
    const counts = await clock.drive(
      runOpen(
        [{ durationMs: 1_000, ratePerSecond: 10 }],
        100,
        {
          next: () => "x",
          run: async (_t, intendedAt, sentAt) => {
            await clock.after(5); // the system answers in 5 ms
            seen.push({ intendedAt, sentAt, latencyMs: clock.now() - intendedAt });
          },
        },
        clock,
      ),
    );
    expect(counts).toMatchObject({ intended: 10, sent: 10, dropped: 0 });
    const byIntended = [...seen].sort((a, b) => a.intendedAt - b.intendedAt);
    expect(byIntended.map((s) => s.intendedAt)).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
    // Arrivals 200..500 all left at 550, when the loop woke; each is timed from its own intended start.
    expect(byIntended.slice(2, 6).map((s) => s.sentAt)).toEqual([550, 550, 550, 550]);
    expect(byIntended.slice(2, 6).map((s) => s.latencyMs)).toEqual([355, 255, 155, 55]);
    // On-time ones took what the system took.
    for (const s of [...byIntended.slice(0, 2), ...byIntended.slice(6)]) expect(s.latencyMs).toBe(5);
    expect(counts.late).toBe([350, 250, 150, 50].filter((d) => d > lateThresholdMs).length);
  });

  it("never sends before the intended start, even when a timer fires early", async () => {
    // Every other sleep wakes 1.5 ms early, as Node's millisecond timers do by performance.now().
    const clock = new FakeClock((n) => (n % 2 === 1 ? -1.5 : 0));
    const early: number[] = [];
    const counts = await clock.drive(
      runOpen(
        [{ durationMs: 1_000, ratePerSecond: 20 }],
        100,
        {
          next: () => "x",
          run: async (_t, intendedAt, sentAt) => {
            if (sentAt < intendedAt) early.push(intendedAt - sentAt);
          },
        },
        clock,
      ),
    );
    expect(counts.sent).toBe(20);
    expect(early).toEqual([]);
  });

  it("drops and counts arrivals that find inFlightMax requests outstanding, and never queues them", async () => {
    const clock = new FakeClock();
    let outstanding = 0;
    let peak = 0;
    const dropped: number[] = [];
    let n = 0;
    const counts = await clock.drive(
      runOpen(
        [{ durationMs: 1_000, ratePerSecond: 10 }],
        2,
        {
          next: () => n++,
          dropped: (i) => dropped.push(i),
          run: async () => {
            outstanding++;
            peak = Math.max(peak, outstanding);
            await clock.after(250);
            outstanding--;
          },
        },
        clock,
      ),
    );
    // 0 ms: A (till 250), 100: B (350), 200: full → drop, 300: C, 400: D, 500: drop, 600: E, 700: F,
    // 800: drop, 900: G.
    expect(dropped).toEqual([2, 5, 8]);
    expect(counts).toMatchObject({ intended: 10, sent: 7, dropped: 3, inFlightPeak: 2 });
    expect(peak).toBe(2);
    // The run waits for the last request (G, sent at 900, answered at 1150).
    expect(counts.elapsedMs).toBe(1_150);
  });
});

describe("closed model", () => {
  it("each user sends its next request when the last answered, for the duration", async () => {
    const clock = new FakeClock();
    const starts: number[] = [];
    const counts = await clock.drive(
      runClosed(
        2,
        1_000,
        {
          next: () => "x",
          run: async (_t, intendedAt, sentAt) => {
            expect(intendedAt).toBe(sentAt);
            starts.push(sentAt);
            await clock.after(100);
          },
        },
        clock,
      ),
    );
    expect(counts).toMatchObject({ intended: 20, sent: 20, dropped: 0, late: 0 });
    expect(starts.filter((s) => s === 900)).toHaveLength(2);
    expect(counts.elapsedMs).toBe(1_000);
  });
});
