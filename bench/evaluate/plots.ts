// Owns the evaluation's plots: vega-lite specs compiled to vega and rendered to SVG headless on
// Node (vega's View.toSVG with renderer "none": no canvas, no browser, no network), as
// jepsen-lite/report/plots.ts draws its own. Each function takes a section's results.
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { EvictionsResult, FailoverSystem, RecoveryTrial, SlotRow, SlotSpectrum } from "./results.ts";

const schema = "https://vega.github.io/schema/vega-lite/v6.json";
const tierOrder = ["gateway", "lru", "redis", "db"];

export async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Requests per second per tier, one bar per path, one panel per connection count. */
export function slotsThroughputSvg(rows: SlotRow[]): Promise<string> {
  return render({
    $schema: schema,
    title: "slot queries per second by cache tier (higher is better)",
    data: { values: rows.map((r) => ({ ...r, connectionsLabel: `${r.connections} connection(s)` })) },
    facet: {
      column: { field: "connectionsLabel", type: "nominal", title: null, sort: { field: "connections" } },
    },
    spec: {
      width: 260,
      height: 220,
      mark: { type: "bar", tooltip: true },
      encoding: {
        x: { field: "tier", type: "nominal", sort: tierOrder, title: "tier that answered" },
        xOffset: { field: "path", type: "nominal" },
        y: { field: "rps", type: "quantitative", title: "requests/s" },
        color: { field: "path", type: "nominal", title: "path" },
      },
    },
    resolve: { scale: { y: "independent" } },
  } as TopLevelSpec);
}

/** The latency spectrum (value at each percentile, the "nines" on a log axis) per tier and path. */
export function slotsSpectrumSvg(spectra: SlotSpectrum[]): Promise<string> {
  const values = spectra.flatMap((s) =>
    s.points.map((p) => ({
      series: `${s.tier} · ${s.path}`,
      tier: s.tier,
      path: s.path,
      connectionsLabel: `${s.connections} connection(s)`,
      connections: s.connections,
      percentile: p.percentile,
      x: 1 / (1 - p.percentile / 100),
      ms: Math.max(0.001, p.ms),
    })),
  );
  return render({
    $schema: schema,
    title: "slot query latency by percentile (HdrHistogram)",
    data: { values },
    facet: {
      column: { field: "connectionsLabel", type: "nominal", title: null, sort: { field: "connections" } },
    },
    spec: {
      width: 360,
      height: 260,
      mark: { type: "line", point: { size: 14 }, tooltip: true },
      encoding: {
        x: {
          field: "x",
          type: "quantitative",
          scale: { type: "log" },
          title: "percentile",
          axis: {
            values: [1, 2, 10, 100, 1_000, 10_000, 100_000],
            labelExpr: "format(100 - 100 / datum.value, '.3~f') + '%'",
          },
        },
        y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms)" },
        color: { field: "tier", type: "nominal", sort: tierOrder, title: "tier" },
        strokeDash: { field: "path", type: "nominal", title: "path" },
        detail: { field: "series" },
      },
    },
  } as TopLevelSpec);
}

/** Every trial's failover time per system (a tick each), its range, and its median (the diamond). */
export function failoverDistributionSvg(systems: FailoverSystem[]): Promise<string> {
  const values = systems.flatMap((s) =>
    s.trialsMs.filter(Number.isFinite).map((ms, i) => ({ system: s.system, ms, trial: i + 1 })),
  );
  const x = {
    field: "ms",
    type: "quantitative",
    title: "failover time (ms)",
    scale: { zero: true },
  } as const;
  const y = { field: "system", type: "nominal", title: null } as const;
  return render({
    $schema: schema,
    title: "failover: leader SIGKILLed → first acknowledged write sent after it (one tick per trial)",
    width: 700,
    height: { step: 50 },
    data: { values },
    layer: [
      {
        mark: { type: "rule", color: "#9e9e9e" },
        encoding: {
          x: { aggregate: "min", field: "ms", type: "quantitative" },
          x2: { aggregate: "max", field: "ms" },
          y,
        },
      },
      {
        mark: { type: "tick", thickness: 2, size: 26, opacity: 0.7, tooltip: true },
        encoding: { x, y, color: { field: "system", type: "nominal", legend: null } },
      },
      {
        mark: { type: "point", shape: "diamond", filled: true, size: 140, color: "#c62828", tooltip: true },
        encoding: {
          x: { aggregate: "median", field: "ms", type: "quantitative", title: "failover time (ms)" },
          y,
        },
      },
    ],
  } as TopLevelSpec);
}

/** One trial over time: acknowledged writes per 100 ms, and each write's latency; the kill at 0. */
export function failoverTimelineSvg(s: FailoverSystem, ratePerSecond: number): Promise<string> {
  const bucketMs = 100;
  const buckets = new Map<number, number>();
  for (const w of s.timeline.writes) {
    const b = Math.floor(w.ackAtMs / bucketMs);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  const lo = Math.min(...buckets.keys());
  const hi = Math.max(...buckets.keys());
  const throughput = [];
  for (let b = lo; b <= hi; b++)
    throughput.push({ t: (b * bucketMs) / 1_000, perS: ((buckets.get(b) ?? 0) * 1_000) / bucketMs });
  const marks = {
    data: {
      values: [
        { t: 0, label: "SIGKILL leader" },
        {
          t: s.timeline.failoverMs / 1_000,
          label: `first write acknowledged (${s.timeline.failoverMs.toFixed(0)} ms)`,
        },
      ],
    },
    layer: [
      {
        mark: { type: "rule", color: "#c62828", strokeDash: [4, 3] },
        encoding: { x: { field: "t", type: "quantitative" } },
      },
      {
        mark: { type: "text", align: "left", dx: 4, dy: -4, color: "#c62828", fontSize: 10 },
        encoding: { x: { field: "t", type: "quantitative" }, y: { value: 8 }, text: { field: "label" } },
      },
    ],
  };
  const domain = [
    Math.min(...s.timeline.writes.map((w) => w.atMs)) / 1_000,
    Math.max(...s.timeline.writes.map((w) => w.ackAtMs)) / 1_000,
  ];
  const x = { field: "t", type: "quantitative", title: "seconds since the kill", scale: { domain } } as const;
  return render({
    $schema: schema,
    title: `${s.system}: one failover trial under ${ratePerSecond} writes/s (the kill at 0)`,
    vconcat: [
      {
        width: 900,
        height: 160,
        layer: [
          {
            data: { values: throughput },
            mark: { type: "line", interpolate: "step-after" },
            encoding: { x, y: { field: "perS", type: "quantitative", title: "acknowledged writes/s" } },
          },
          marks,
        ],
      },
      {
        width: 900,
        height: 200,
        layer: [
          {
            data: {
              values: s.timeline.writes.map((w) => ({ t: w.atMs / 1_000, ms: Math.max(0.01, w.latencyMs) })),
            },
            mark: { type: "point", filled: true, size: 8, opacity: 0.6 },
            encoding: {
              x: { ...x, title: "intended start, seconds since the kill" },
              y: {
                field: "ms",
                type: "quantitative",
                scale: { type: "log" },
                title: "write latency (ms, from intended start)",
              },
            },
          },
          marks,
        ],
      },
    ],
  } as TopLevelSpec);
}

/** Catch-up time of a restarted replica against how far behind it was. */
export function recoverySvg(trials: RecoveryTrial[]): Promise<string> {
  const values = trials.map((t) => ({
    ...t,
    how: t.bySnapshot ? "snapshot + log" : "log replication",
    label: `${t.writes.toLocaleString("en")} writes`,
  }));
  return render({
    $schema: schema,
    title:
      "catch-up of a restarted replica: from listening again until it applied everything committed while it was down",
    width: 600,
    height: 280,
    data: { values },
    layer: [
      {
        mark: { type: "line", color: "#90a4ae" },
        encoding: {
          x: { field: "entriesBehind", type: "quantitative", title: "log entries behind" },
          y: { field: "catchUpMs", type: "quantitative", title: "catch-up time (ms)" },
        },
      },
      {
        mark: { type: "point", filled: true, size: 80, tooltip: true },
        encoding: {
          x: { field: "entriesBehind", type: "quantitative" },
          y: { field: "catchUpMs", type: "quantitative" },
          color: { field: "how", type: "nominal", title: "caught up by" },
          shape: { field: "how", type: "nominal" },
        },
      },
      {
        mark: { type: "text", align: "left", dx: 7, dy: -7, fontSize: 10 },
        encoding: {
          x: { field: "entriesBehind", type: "quantitative" },
          y: { field: "catchUpMs", type: "quantitative" },
          text: { field: "label" },
        },
      },
    ],
  } as TopLevelSpec);
}

/** Evictions per second and the LRU hit ratio, second by second, the phases shaded. */
export function evictionsSvg(r: EvictionsResult): Promise<string> {
  const phases = {
    data: { values: r.phases },
    layer: [
      {
        mark: { type: "rect", opacity: 0.12 },
        encoding: {
          x: { field: "fromS", type: "quantitative" },
          x2: { field: "toS" },
          color: {
            field: "name",
            type: "nominal",
            title: "working set",
            sort: r.phases.map((p) => p.name),
            legend: { labelLimit: 400 },
          },
        },
      },
    ],
  };
  const endS = Math.max(...r.phases.map((p) => p.toS), ...r.seconds.map((s) => s.t));
  const x = {
    field: "t",
    type: "quantitative",
    title: "seconds since the load began",
    scale: { domain: [0, endS], nice: false },
  } as const;
  const seconds = r.seconds.map((s) => ({ ...s, from: s.t - 1, mid: s.t - 0.5 }));
  return render({
    $schema: schema,
    title: `slot cache with an LRU of ${r.lruEntries} entries: evictions and hit ratio (from /metrics, every second)`,
    vconcat: [
      {
        width: 800,
        height: 160,
        layer: [
          phases,
          {
            data: { values: seconds },
            mark: { type: "rect", color: "#6a1b9a", tooltip: true },
            encoding: {
              x: { ...x, field: "from" },
              x2: { field: "t" },
              y: { field: "evictionsPerS", type: "quantitative", title: "LRU evictions/s (each second)" },
              y2: { datum: 0 },
            },
          },
        ],
      },
      {
        width: 800,
        height: 160,
        layer: [
          phases,
          {
            data: { values: seconds },
            mark: { type: "line", point: true, color: "#2e7d32", tooltip: true },
            encoding: {
              x: { ...x, field: "mid" },
              y: {
                field: "lruHitRatio",
                type: "quantitative",
                title: "LRU hit ratio",
                scale: { domain: [0, 1] },
                axis: { format: "%" },
              },
            },
          },
        ],
      },
    ],
  } as TopLevelSpec);
}
