// The evaluation's report writer (bench/evaluate/report.ts), fed results by hand: every plot is an
// SVG drawn by vega, every plot the markdown names is one it wrote, and the headline checks read
// the numbers they were given. The evaluation itself (`npm run evaluate`) is not run here.
import { beforeAll, describe, expect, it } from "vitest";
import { Latency } from "../bench/evaluate/histogram.ts";
import { renderReport } from "../bench/evaluate/report.ts";
import type { Evaluation, FailoverSystem, SlotRow, Tier } from "../bench/evaluate/results.ts";

const run = { startedAt: "2030-01-01T00:00:00.000Z", command: "npm run evaluate", machine: "test cpu × 2" };

function spectrum(baseMs: number) {
  const l = new Latency();
  for (let i = 1; i <= 2_000; i++) l.recordMs(baseMs * (1 + (i % 100) / 50));
  return l.spectrum();
}

function failoverSystem(system: string, trialsMs: number[]): FailoverSystem {
  const writes = Array.from({ length: 200 }, (_, i) => {
    const atMs = i * 5 - 500;
    const latencyMs = atMs >= 0 && atMs < 250 ? 250 - atMs + 2 : 2;
    return { atMs, ackAtMs: atMs + latencyMs, latencyMs };
  });
  return {
    system,
    client: "test client",
    trialsMs,
    steadyP50: 2,
    steadyP99: 5,
    timeline: { failoverMs: trialsMs[0]!, writes, unacked: 0 },
  };
}

function sample(): Evaluation {
  const tiers: [Tier, number, number][] = [
    ["lru", 2_000, 0.4],
    ["redis", 900, 0.9],
    ["db", 300, 3],
  ];
  const rows: SlotRow[] = tiers.flatMap(([tier, rps, p50]) =>
    [1, 32].flatMap((connections) =>
      (["gateway (HTTP)", "straight gRPC"] as const).map((path) => ({
        tier,
        path,
        connections,
        rps: rps * (connections === 1 ? 1 : 2),
        p50,
        p99: p50 * 4,
        requests: 1_000,
        errors: 0,
        servedBy: `${tier} 100.0%`,
      })),
    ),
  );
  return {
    quick: true,
    machine: "- cpu: test × 2",
    slots: {
      run,
      durationS: 2,
      keys: 50,
      rows,
      spectra: rows.map((r) => ({
        tier: r.tier,
        path: r.path,
        connections: r.connections,
        points: spectrum(r.p50),
      })),
    },
    failover: {
      run,
      ratePerSecond: 200,
      systems: [
        failoverSystem("MediSync", [250, 310, 420]),
        failoverSystem("etcd 3.4.23", [400, 380, Number.NaN]),
      ],
    },
    recovery: {
      run,
      trials: [300, 2_000].map((writes) => ({
        writes,
        entriesBehind: writes / 10,
        restartMs: 900,
        catchUpMs: writes / 4,
        bySnapshot: writes > 1_000,
        replicas: ["inv-1", "inv-2", "inv-3"].map((id) => ({
          id,
          appliedIndex: 9,
          stateHash: "ab".repeat(16),
          stock: writes,
        })),
        consistent: true,
      })),
    },
    evictions: {
      run,
      lruEntries: 10,
      phases: [
        { name: "8 keys (fits)", keys: 8, fromS: 0, toS: 3 },
        { name: "50 keys", keys: 50, fromS: 3, toS: 6 },
      ],
      seconds: Array.from({ length: 6 }, (_, i) => ({
        t: i + 1,
        phase: i < 3 ? "8 keys (fits)" : "50 keys",
        evictionsPerS: i < 3 ? 0 : 400,
        lruHitRatio: i < 3 ? 1 : 0.2,
        requestsPerS: 500,
      })),
      evictionsTotal: 1_200,
      evictionLinesLogged: 1_200,
      sampleLines: 80,
    },
  };
}

describe("evaluation report", () => {
  let files: Map<string, string>;
  let md: string;
  beforeAll(async () => {
    files = await renderReport(sample());
    md = files.get("evaluation.md")!;
  });

  it("writes an SVG drawn by vega for every plot the markdown shows", () => {
    const linked = [...md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]!);
    expect(linked.length).toBe(7);
    for (const name of linked) {
      const svg = files.get(name);
      expect(svg, name).toBeDefined();
      expect(svg!.startsWith("<svg")).toBe(true);
      expect(svg!.trimEnd().endsWith("</svg>")).toBe(true);
      expect(svg).toContain('class="marks"'); // vega's scenegraph, not a hand-drawn file
      expect(svg).not.toContain("NaN");
    }
    expect([...files.keys()].filter((k) => k.endsWith(".svg")).sort()).toEqual([...linked].sort());
  });

  it("names the machine, command and date in every section, and labels a quick run", () => {
    expect(md).toContain("Preliminary: a `--quick` run");
    const sections = md.split(/^## \d\. /m).slice(1);
    expect(sections).toHaveLength(4);
    for (const s of sections) {
      expect(s).toContain("Machine: test cpu × 2");
      expect(s).toContain("Started 2030-01-01T00:00:00.000Z");
      expect(s).toContain("Command: `npm run evaluate`");
    }
  });

  it("checks the headline numbers it was given against the issue's targets", () => {
    expect(md).toMatch(/LRU hit through the gateway, 1 connection, p50 \| ≤ 1 ms \| 0\.400 ms \| yes/);
    expect(md).toMatch(
      /LRU \/ database req\/s through the gateway, 1 connection\(s\) \| ≥ 5× \| 6\.67× \| yes/,
    );
    expect(md).toMatch(/failover over 3 kills, median \| ≤ 300 ms \| 310 ms \| \*\*no\*\*/);
    expect(md).toMatch(/failover trials \| ≥ 20 \| 3 \| \*\*no\*\*/);
  });
});
