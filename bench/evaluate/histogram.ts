// Owns the evaluation's latency histograms: HdrHistogram (hdr-histogram-js, as the load client's
// src/client/stats.ts records), microseconds at 3 significant digits, and what the report takes from
// one: the usual percentiles and the percentile spectrum (the value at 50 %, 90 %, 99 %, … of the
// requests) that the latency plots draw.
import * as hdr from "hdr-histogram-js";

const maxMicros = 3_600_000_000;

export class Latency {
  readonly h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: maxMicros,
    numberOfSignificantValueDigits: 3,
  });

  recordMs(ms: number): void {
    this.h.recordValue(Math.min(maxMicros, Math.max(1, Math.round(ms * 1_000))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Milliseconds at percentile `p` (0–100); 0 when nothing was recorded. */
  ms(p: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(p) / 1_000;
  }

  get maxMs(): number {
    return this.h.maxValue / 1_000;
  }

  /**
   * The spectrum: percentiles spaced evenly on the "nines" scale (50, 75, 90, 95, 99, …), as far as
   * the count resolves them (one request in 10,000 says nothing about the 99.999th), and the max.
   */
  spectrum(): SpectrumPoint[] {
    const n = this.h.totalCount;
    if (n === 0) return [];
    const out: SpectrumPoint[] = [];
    for (let nines = 0; nines <= 6; nines += 0.25) {
      const p = 100 * (1 - 10 ** -nines);
      if (1 / (1 - p / 100) > n) break;
      out.push({ percentile: round(p, 4), ms: this.ms(p) });
    }
    out.push({ percentile: round(100 * (1 - 1 / n), 4), ms: this.maxMs, max: true });
    return out;
  }
}

export interface SpectrumPoint {
  percentile: number;
  ms: number;
  /** The largest value recorded (drawn at 1 − 1/count). */
  max?: boolean;
}

export const round = (x: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** The p-th percentile (0–100) of a list, nearest rank; NaN for an empty one. */
export function percentileOf(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
