// Owns what a run measured: per scenario the outcomes (ok, 4xx and the 429s among them, 5xx,
// network errors, skipped, dropped), the status codes, and latency in an HdrHistogram (microseconds, 3 significant digits);
// the summary object that --json prints, and the table a person reads.
import * as hdr from "hdr-histogram-js";
import { type ScenarioName, scenarioNames } from "./mix.ts";

/** How one request ended. `error`: no HTTP/gRPC answer (refused, reset, timed out). */
export type OutcomeKind = "ok" | "4xx" | "5xx" | "error";

export interface Outcome {
  kind: OutcomeKind;
  /** HTTP status, or the HTTP status of the gRPC error's code; 0 when no answer came. */
  status: number;
  /** The problem's code (SLOT_TAKEN, …) or the network error's (ECONNREFUSED, timeout). */
  code?: string;
  /**
   * A 401 or 403 from the gateway: who was refused on which route and why, in one line. The client
   * is then misconfigured (a key the gateway does not trust, a role without the grant): the run stops.
   */
  refusal?: string;
}

export const kindOfStatus = (status: number): OutcomeKind =>
  status >= 200 && status < 400 ? "ok" : status >= 400 && status < 500 ? "4xx" : "5xx";

const latencyMaxMicros = 3_600_000_000;

const newHistogram = () =>
  hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: latencyMaxMicros,
    numberOfSignificantValueDigits: 3,
  });

class ScenarioStats {
  count = 0;
  ok = 0;
  clientErrors = 0;
  rateLimited = 0;
  serverErrors = 0;
  errors = 0;
  skipped = 0;
  dropped = 0;
  readonly statuses = new Map<string, number>();
  /** From each request's intended start (what a user waits). */
  readonly latency = newHistogram();
  /** From the moment it was sent (what the system took). */
  readonly service = newHistogram();
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  "p99.9": number;
  max: number;
  mean: number;
}

export interface ScenarioSummary {
  count: number;
  ok: number;
  "4xx": number;
  /** Of the 4xx, the gateway's 429s: a rate limit was reached (a patient's, or an address's). */
  "429": number;
  "5xx": number;
  errors: number;
  /** Arrivals that had nothing to do (no free slot known, nothing booked to cancel): not sent. */
  skipped: number;
  /** Arrivals not sent because the bound of outstanding requests was reached. */
  dropped: number;
  /** Answers by status (and problem code), e.g. {"201": 10, "409 SLOT_TAKEN": 2}. */
  statuses: Record<string, number>;
  /** Milliseconds from the intended start. */
  latencyMs: LatencySummary;
  /** Milliseconds from the moment the request left. */
  serviceMs: LatencySummary;
}

const ms = (micros: number) => Math.round(micros) / 1_000;

function latencyOf(h: hdr.Histogram): LatencySummary {
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, "p99.9": 0, max: 0, mean: 0 };
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    "p99.9": ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

const toMicros = (durationMs: number) =>
  Math.min(latencyMaxMicros, Math.max(1, Math.round(durationMs * 1_000)));

export class Recorder {
  private readonly byScenario = new Map<ScenarioName, ScenarioStats>();
  private readonly all = new ScenarioStats();

  private stats(s: ScenarioName): ScenarioStats {
    let st = this.byScenario.get(s);
    if (!st) {
      st = new ScenarioStats();
      this.byScenario.set(s, st);
    }
    return st;
  }

  record(s: ScenarioName, o: Outcome, latencyMs: number, serviceMs: number): void {
    for (const st of [this.stats(s), this.all]) {
      st.count++;
      if (o.kind === "ok") st.ok++;
      else if (o.kind === "4xx") {
        st.clientErrors++;
        if (o.status === 429) st.rateLimited++;
      } else if (o.kind === "5xx") st.serverErrors++;
      else st.errors++;
      const key =
        o.kind === "ok" || !o.code ? String(o.status || "error") : `${o.status || "error"} ${o.code}`;
      st.statuses.set(key, (st.statuses.get(key) ?? 0) + 1);
      st.latency.recordValue(toMicros(latencyMs));
      st.service.recordValue(toMicros(serviceMs));
    }
  }

  skip(s: ScenarioName): void {
    this.stats(s).skipped++;
    this.all.skipped++;
  }

  drop(s: ScenarioName): void {
    this.stats(s).dropped++;
    this.all.dropped++;
  }

  /** For the progress bar: totals so far and the overall p99 in ms. */
  live(): { done: number; failures: number; p99Ms: number } {
    return {
      done: this.all.count,
      failures: this.all.serverErrors + this.all.errors,
      p99Ms: this.all.count === 0 ? 0 : ms(this.all.latency.getValueAtPercentile(99)),
    };
  }

  summaries(): { scenarios: Partial<Record<ScenarioName, ScenarioSummary>>; total: ScenarioSummary } {
    const scenarios: Partial<Record<ScenarioName, ScenarioSummary>> = {};
    for (const n of scenarioNames) {
      const st = this.byScenario.get(n);
      if (st) scenarios[n] = summaryOf(st);
    }
    return { scenarios, total: summaryOf(this.all) };
  }
}

function summaryOf(st: ScenarioStats): ScenarioSummary {
  return {
    count: st.count,
    ok: st.ok,
    "4xx": st.clientErrors,
    "429": st.rateLimited,
    "5xx": st.serverErrors,
    errors: st.errors,
    skipped: st.skipped,
    dropped: st.dropped,
    statuses: Object.fromEntries([...st.statuses].sort(([a], [b]) => a.localeCompare(b))),
    latencyMs: latencyOf(st.latency),
    serviceMs: latencyOf(st.service),
  };
}

/**
 * The per-scenario table, columns aligned, latency from each request's intended start. `429` is a
 * part of `4xx` (rate limited), named because a load run that meets it measures the limiter.
 */
export function formatTable(
  scenarios: Partial<Record<ScenarioName, ScenarioSummary>>,
  total: ScenarioSummary,
): string {
  const head = [
    "scenario",
    "count",
    "ok",
    "4xx",
    "429",
    "5xx",
    "errors",
    "skipped",
    "dropped",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
  ];
  const row = (name: string, s: ScenarioSummary) => [
    name,
    String(s.count),
    String(s.ok),
    String(s["4xx"]),
    String(s["429"]),
    String(s["5xx"]),
    String(s.errors),
    String(s.skipped),
    String(s.dropped),
    s.latencyMs.p50.toFixed(2),
    s.latencyMs.p90.toFixed(2),
    s.latencyMs.p99.toFixed(2),
    s.latencyMs["p99.9"].toFixed(2),
    s.latencyMs.max.toFixed(2),
  ];
  const rows = [head, ...Object.entries(scenarios).map(([n, s]) => row(n, s)), row("total", total)];
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(head), rule, ...rows.slice(1, -1).map(line), rule, line(rows[rows.length - 1]!)].join("\n");
}
