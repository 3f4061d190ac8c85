// Owns the run's plots as SVG, drawn by vega-lite compiled to vega and rendered headless on Node
// (no browser, no network): latency of every answered op by outcome with p50/p95/p99 over time,
// and throughput by outcome, each with the fault windows shaded.
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { outcomeOf, type ReportFault, type ReportOp } from "./model.ts";

/** Width of the time buckets of the percentile lines and the throughput plot. */
export const bucketMs = 500;
const widthPx = 1200;
const heightPx = 220;
const outcomeColors = { domain: ["ok", "failed", "indeterminate"], range: ["#2e7d32", "#ef6c00", "#757575"] };

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function faultLayer(faults: ReportFault[]) {
  return {
    name: "fault_windows",
    data: {
      values: faults.map((f) => ({
        start: f.start / 1000,
        end: f.end / 1000,
        fault: `${f.kind} ${f.target}`,
      })),
    },
    mark: { type: "rect", color: "#e57373", opacity: 0.25 },
    encoding: {
      x: { field: "start", type: "quantitative" },
      x2: { field: "end" },
      tooltip: { field: "fault" },
    },
  };
}

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Latency: one point per answered op (x: when it was called), and the percentiles per bucket. */
export function latencySvg(history: ReportOp[], faults: ReportFault[]): Promise<string> {
  const answered = history.filter((op) => Number.isFinite(op.ret));
  const points = answered.map((op) => ({
    t: op.call / 1000,
    ms: Math.max(0.1, op.ret - op.call),
    outcome: outcomeOf(op),
  }));
  const buckets = new Map<number, number[]>();
  for (const op of answered) {
    const b = Math.floor(op.call / bucketMs);
    const list = buckets.get(b) ?? [];
    list.push(op.ret - op.call);
    buckets.set(b, list);
  }
  const lines = [...buckets].flatMap(([b, list]) => {
    const s = list.sort((x, y) => x - y);
    const t = ((b + 0.5) * bucketMs) / 1000;
    return (
      [
        ["p50", 0.5],
        ["p95", 0.95],
        ["p99", 0.99],
      ] as const
    ).map(([p, q]) => ({ t, ms: Math.max(0.1, quantile(s, q)), p }));
  });
  const x = {
    field: "t",
    type: "quantitative",
    title: "time since the run started (s)",
    scale: { zero: false },
  } as const;
  const y = { field: "ms", type: "quantitative", title: "latency (ms)", scale: { type: "log" } } as const;
  return render({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: widthPx,
    height: heightPx,
    title: `latency per op (answered ones; ${history.length - answered.length} indeterminate not shown) and p50/p95/p99 per ${bucketMs} ms`,
    layer: [
      faultLayer(faults),
      {
        name: "op_latency",
        data: { values: points },
        mark: { type: "point", filled: true, size: 10, opacity: 0.5 },
        encoding: {
          x,
          y,
          color: { field: "outcome", type: "nominal", scale: outcomeColors, title: "outcome" },
        },
      },
      {
        name: "latency_percentiles",
        data: { values: lines },
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: {
          x,
          y,
          strokeDash: { field: "p", type: "nominal", title: "percentile" },
          detail: { field: "p" },
          color: { value: "#1565c0" },
        },
      },
    ],
    resolve: { scale: { color: "independent" } },
  } as TopLevelSpec);
}

/** Throughput: ops completed per second in each bucket, by outcome (indeterminate: by call time). */
export function throughputSvg(history: ReportOp[], faults: ReportFault[]): Promise<string> {
  const counts = new Map<string, { t: number; outcome: string; n: number }>();
  for (const op of history) {
    const outcome = outcomeOf(op);
    const at = Number.isFinite(op.ret) ? op.ret : op.call;
    const b = Math.floor(at / bucketMs);
    const k = `${b}/${outcome}`;
    const c = counts.get(k) ?? { t: (b * bucketMs) / 1000, outcome, n: 0 };
    c.n++;
    counts.set(k, c);
  }
  const values = [...counts.values()].map((c) => ({ ...c, perS: (c.n * 1000) / bucketMs }));
  return render({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: widthPx,
    height: heightPx,
    title: `throughput (ops/s per ${bucketMs} ms bucket)`,
    layer: [
      faultLayer(faults),
      {
        name: "ops_per_s",
        data: { values },
        mark: { type: "line", point: { size: 12 } },
        encoding: {
          x: {
            field: "t",
            type: "quantitative",
            title: "time since the run started (s)",
            scale: { zero: false },
          },
          y: { field: "perS", type: "quantitative", title: "ops/s" },
          color: { field: "outcome", type: "nominal", scale: outcomeColors, title: "outcome" },
        },
      },
    ],
  } as TopLevelSpec);
}
