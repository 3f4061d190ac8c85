// Owns bench/reports/evaluation.md and its plots (bench/reports/evaluation/*.svg): the markdown of
// every section that ran, each naming its machine, command and date, and the headline numbers
// against issue 16's acceptance. Takes results only (results.ts), so a test can feed it by hand.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { markdownTable } from "../support/machine.ts";
import { percentileOf } from "./histogram.ts";
import {
  evictionsSvg,
  failoverDistributionSvg,
  failoverTimelineSvg,
  recoverySvg,
  slotsSpectrumSvg,
  slotsThroughputSvg,
} from "./plots.ts";
import type { Evaluation, FailoverSystem, RunInfo, SlotsResult } from "./results.ts";

export const plotsDirName = "evaluation";

const fmt = (x: number, digits = 0) =>
  Number.isFinite(x)
    ? x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "—";

const ranBy = (r: RunInfo) => `Machine: ${r.machine}. Started ${r.startedAt}. Command: \`${r.command}\`.`;

function slotRow(s: SlotsResult, tier: string, connections: number, p = "gateway (HTTP)") {
  return s.rows.find((r) => r.tier === tier && r.connections === connections && r.path === p);
}

function failoverStats(s: FailoverSystem) {
  const ok = s.trialsMs.filter(Number.isFinite);
  return {
    ok,
    median: percentileOf(ok, 50),
    max: ok.length ? Math.max(...ok) : Number.NaN,
    failed: s.trialsMs.length - ok.length,
  };
}

interface Check {
  what: string;
  target: string;
  measured: string;
  met: boolean;
}

function acceptance(e: Evaluation): Check[] {
  const out: Check[] = [];
  const s = e.slots;
  if (s) {
    const lru1 = slotRow(s, "lru", 1);
    if (lru1)
      out.push({
        what: "LRU hit through the gateway, 1 connection, p50",
        target: "≤ 1 ms",
        measured: `${fmt(lru1.p50, 3)} ms`,
        met: lru1.p50 <= 1,
      });
    const gw1 = slotRow(s, "gateway", 1);
    if (gw1)
      out.push({
        what: "gateway-tier hit, 1 connection, p50",
        target: "≤ 1 ms",
        measured: `${fmt(gw1.p50, 3)} ms`,
        met: gw1.p50 <= 1,
      });
    for (const c of [...new Set(s.rows.map((r) => r.connections))]) {
      const lru = slotRow(s, "lru", c);
      const redis = slotRow(s, "redis", c);
      const db = slotRow(s, "db", c);
      const gw = slotRow(s, "gateway", c);
      if (gw && db)
        out.push({
          what: `gateway-tier hit / database req/s through the gateway, ${c} connection(s)`,
          target: "≥ 5×",
          measured: `${fmt(gw.rps / db.rps, 2)}×`,
          met: gw.rps / db.rps >= 5,
        });
      if (lru && db)
        out.push({
          what: `LRU / database req/s through the gateway, ${c} connection(s)`,
          target: "≥ 5×",
          measured: `${fmt(lru.rps / db.rps, 2)}×`,
          met: lru.rps / db.rps >= 5,
        });
      if (redis && db)
        out.push({
          what: `Redis / database req/s through the gateway, ${c} connection(s)`,
          target: "≥ 2×",
          measured: `${fmt(redis.rps / db.rps, 2)}×`,
          met: redis.rps / db.rps >= 2,
        });
    }
  }
  const ours = e.failover?.systems[0];
  if (ours) {
    const st = failoverStats(ours);
    out.push({
      what: `failover over ${ours.trialsMs.length} kills, median`,
      target: "≤ 300 ms",
      measured: `${fmt(st.median)} ms`,
      met: st.median <= 300 && st.failed === 0,
    });
    out.push({
      what: `failover over ${ours.trialsMs.length} kills, max`,
      target: "≤ 600 ms",
      measured: `${fmt(st.max)} ms${st.failed ? ` (${st.failed} trials without a write acknowledged)` : ""}`,
      met: st.max <= 600 && st.failed === 0,
    });
    if (ours.trialsMs.length < 20)
      out.push({
        what: "failover trials",
        target: "≥ 20",
        measured: String(ours.trialsMs.length),
        met: false,
      });
  }
  if (e.recovery) {
    const bad = e.recovery.trials.filter((t) => !t.consistent).length;
    out.push({
      what: "every replica's state hash equal after catch-up",
      target: "all trials",
      measured: `${e.recovery.trials.length - bad} of ${e.recovery.trials.length}`,
      met: bad === 0,
    });
  }
  return out;
}

function slotsSection(s: SlotsResult): string {
  const table = markdownTable(
    [
      "tier",
      "path",
      "connections",
      "req/s",
      "p50 ms",
      "p99 ms",
      "requests",
      "errors",
      "served by (from /metrics)",
    ],
    s.rows.map((r) => [
      r.tier,
      r.path,
      r.connections,
      fmt(r.rps),
      fmt(r.p50, 3),
      fmt(r.p99, 3),
      r.requests,
      r.errors,
      r.servedBy,
    ]),
  );
  const ratios = [...new Set(s.rows.map((r) => r.connections))].flatMap((c) =>
    (["gateway (HTTP)", "straight gRPC"] as const).map((p) => {
      const [lru, redis, db] = (["lru", "redis", "db"] as const).map((t) => slotRow(s, t, c, p));
      return lru && redis && db
        ? `- ${p}, ${c} connection(s): LRU / database **${fmt(lru.rps / db.rps, 2)}×** req/s, Redis / database ${fmt(redis.rps / db.rps, 2)}×`
        : "";
    }),
  );
  return `## 1. Slot query latency and throughput per cache tier

${ranBy(s.run)}

One appointment service and one gateway per tier (real processes, the compiled build at \`npm start\`'s
default log level), ${s.keys} (clinic, date) keys of 16 slots each, read round-robin, ${s.durationS} s per row.
The client is the evaluation process itself: a closed loop per connection (the next request when the
last answered) recording into an HdrHistogram, over kept-alive HTTP/1.1 to the gateway with an admin
token per connection, or over gRPC straight to the appointment service (no gateway). It shares the two
cores with the system, so its own cost is in every number.

- **gateway**: the gateway's own slot tier (src/gateway/slot-tier.ts) answers: one Redis GET of the key's version, no gRPC call; the service's LRU behind it is big enough for every key.
- **lru**: the gateway's tier off; an LRU big enough for every key; each read still checks the key's version in Redis (one round trip).
- **redis**: an LRU of one entry, so each read misses it and is answered from Redis.
- **db**: an LRU of one entry and Redis unreachable (a refused port), so each read queries PostgreSQL.

![slot queries per second by tier](${plotsDirName}/slots-throughput.svg)

![slot query latency spectrum](${plotsDirName}/slots-latency-spectrum.svg)

${table}

${ratios.filter(Boolean).join("\n")}
`;
}

function failoverSection(e: Evaluation): string {
  const f = e.failover!;
  const rows = f.systems.map((s) => {
    const st = failoverStats(s);
    return [
      s.system,
      s.trialsMs.length,
      fmt(st.median),
      fmt(percentileOf(st.ok, 90)),
      fmt(st.max),
      st.failed,
      fmt(s.steadyP50, 2),
      fmt(s.steadyP99, 2),
      s.client,
    ];
  });
  const table = markdownTable(
    [
      "system",
      "trials",
      "median ms",
      "p90 ms",
      "max ms",
      "no write acked",
      "steady write p50 ms",
      "steady write p99 ms",
      "client",
    ],
    rows,
  );
  const all = f.systems.map(
    (s) => `- ${s.system} (ms, in trial order): ${s.trialsMs.map((x) => fmt(x)).join(", ")}`,
  );
  const timelines = f.systems.map(
    (s, i) =>
      `![${s.system}: one failover trial over time](${plotsDirName}/failover-timeline${i === 0 ? "" : `-${slug(s.system)}`}.svg)`,
  );
  return `## 2. Failover: the leader SIGKILLed under steady load

${ranBy(f.run)}

A steady open-model load of **${f.ratePerSecond} writes/s** (each write sent on its schedule whatever
the system does, retried with its own request id until acknowledged, its latency counted from its
intended start), and after a second of it the leader's process SIGKILLed. **Failover time**, as the
client measures it: from the kill to the first acknowledged write among those sent after the killed
process was gone. The killed member is restarted and the cluster whole again before the next trial.
Both clusters are 3 members on loopback with the same Raft timing (50 ms heartbeat, 300 ms election
timeout randomized up to 600 ms) and fsync on. Steady write latency: the writes acknowledged before
the kill, over all trials, at this rate (not a throughput test; bench/reports/inventory.md is).
${f.etcdNote ? `\netcd: ${f.etcdNote}\n` : ""}
![failover time per trial](${plotsDirName}/failover-distribution.svg)

${table}

${all.join("\n")}

${timelines.join("\n\n")}

The first trial's lines of every replica, from the kill until the cluster was whole again, and the
client's two events (\`sigkill_leader\`, \`first_write_after_kill\`) are in \`logs/failover.sample.log\`.
`;
}

function recoverySection(e: Evaluation): string {
  const r = e.recovery!;
  const table = markdownTable(
    [
      "writes while down",
      "entries behind",
      "catch-up ms",
      "caught up by",
      ...r.trials[0]!.replicas.map((x) => `${x.id} hash · stock`),
      "equal",
    ],
    r.trials.map((t) => [
      fmt(t.writes),
      fmt(t.entriesBehind),
      fmt(t.restartMs),
      fmt(t.catchUpMs),
      t.bySnapshot ? "snapshot + log" : "log",
      ...t.replicas.map((x) => `\`${x.stateHash.slice(0, 16)}\` · ${fmt(x.stock)}`),
      t.consistent ? "yes" : "**NO**",
    ]),
  );
  return `## 3. Consistent state after recovery

${ranBy(r.run)}

A 3-replica cluster of its own that packs one command per log entry
(\`INVENTORY_ENTRY_COMMANDS_MAX=1\`, so writes while down are entries behind, as bench/inventory's
catch-up): a follower is SIGKILLed, 64 clients write restocks (each acknowledged by the majority that
is left) while it is down, and it is restarted. **Restart**: from the restart until its process
listens (node, LevelDB, PostgreSQL: not catching up). **Catch-up**: from then until it has applied
everything the leader had committed. Then, once every replica has applied the same index, each
one's **state hash** (\`Status.state_hash\`, a digest of its whole state machine: every stock line,
lot, reorder level, clinic time zone) and its own local (stale) reading of the written stock line
are compared. Past \`RAFT_SNAPSHOT_EVERY_ENTRIES\` (20,000) the leader has compacted its log and
sends a snapshot first.

![catch-up time against entries behind](${plotsDirName}/recovery-catch-up.svg)

${table}
`;
}

function evictionsSection(e: Evaluation): string {
  const v = e.evictions!;
  const perPhase = v.phases.map((p) => {
    const secs = v.seconds.filter((s) => s.t > p.fromS && s.t <= p.toS);
    const sum = (f: (s: (typeof secs)[number]) => number) => secs.reduce((a, s) => a + f(s), 0);
    return [
      p.name,
      fmt(sum((s) => s.evictionsPerS) / Math.max(1, secs.length), 1),
      fmt(sum((s) => s.lruHitRatio) / Math.max(1, secs.length), 3),
      fmt(sum((s) => s.requestsPerS) / Math.max(1, secs.length)),
    ];
  });
  return `## 4. LRU evictions

${ranBy(v.run)}

One appointment service with \`SLOT_CACHE_MAX_ENTRIES=${v.lruEntries}\` and every eviction logged
(\`CACHE_EVICTION_LOG_SAMPLE=1\`), behind a gateway, read by 2 clients at random over a working set
that changes: one that fits the LRU, one five times its size, the small one again. Its \`/metrics\`
counters (\`medisync_slot_cache_evictions_total\`, \`medisync_slot_cache_lookups_total{tier="lru"}\`)
sampled every second.

![evictions and hit ratio over time](${plotsDirName}/evictions.svg)

${markdownTable(["phase", "evictions/s (mean)", "LRU hit ratio (mean)", "requests/s"], perPhase)}

- evictions counted: ${fmt(v.evictionsTotal)}; eviction lines logged: ${fmt(v.evictionLinesLogged)}
- \`logs/cache-evictions.sample.log\`: the appointment service's ${v.sampleLines} lines of the first evicting requests (each request's lines together, by request id)
`;
}

export const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");

/** The report and its plots, as file name → content (plots under `evaluation/`). */
export async function renderReport(e: Evaluation): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const plot = (name: string, svg: string) => files.set(`${plotsDirName}/${name}`, svg);
  const sections: string[] = [];
  if (e.slots) {
    plot("slots-throughput.svg", await slotsThroughputSvg(e.slots.rows));
    plot("slots-latency-spectrum.svg", await slotsSpectrumSvg(e.slots.spectra));
    sections.push(slotsSection(e.slots));
  }
  if (e.failover) {
    plot("failover-distribution.svg", await failoverDistributionSvg(e.failover.systems));
    for (const [i, s] of e.failover.systems.entries())
      plot(
        `failover-timeline${i === 0 ? "" : `-${slug(s.system)}`}.svg`,
        await failoverTimelineSvg(s, e.failover.ratePerSecond),
      );
    sections.push(failoverSection(e));
  }
  if (e.recovery && e.recovery.trials.length > 0) {
    plot("recovery-catch-up.svg", await recoverySvg(e.recovery.trials));
    sections.push(recoverySection(e));
  }
  if (e.evictions) {
    plot("evictions.svg", await evictionsSvg(e.evictions));
    sections.push(evictionsSection(e));
  }
  const checks = acceptance(e);
  const banner = e.quick
    ? "> **Preliminary: a `--quick` run (seconds per measurement, 3 failover trials), on a noisy machine. Not the evaluation.**\n\n"
    : "";
  const md = `# MediSync evaluation

${banner}The seed's four measurements in one run (\`npm run evaluate\`): slot query time per cache tier,
failover time when the leader crashes, consistent state after recovery, and LRU evictions. Everything
runs on one machine on loopback, client included, so numbers compare within this run only.

## Machine
${e.machine}

## Headline
${
  checks.length
    ? markdownTable(
        ["measure", "target (issue 16)", "measured", "met"],
        checks.map((c) => [c.what, c.target, c.measured, c.met ? "yes" : "**no**"]),
      )
    : "(no section ran)"
}

${sections.join("\n")}`;
  files.set("evaluation.md", md);
  return files;
}

/** Writes the report into `dir` (bench/reports): evaluation.md and evaluation/*.svg. */
export async function writeReport(e: Evaluation, dir: string): Promise<string[]> {
  const files = await renderReport(e);
  mkdirSync(path.join(dir, plotsDirName), { recursive: true });
  const written: string[] = [];
  for (const [name, content] of files) {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    written.push(p);
  }
  return written;
}
