// Section 4: LRU evictions. One appointment service with a small LRU (SLOT_CACHE_MAX_ENTRIES) and
// every eviction logged (CACHE_EVICTION_LOG_SAMPLE=1), behind a gateway, read in three phases: a
// working set that fits the LRU, one five times its size, and the small one again. Its /metrics
// counters are sampled every second: evictions per second and the LRU's hit ratio over time. The
// appointment service's lines of the first evicting requests (each request's lines together, by its
// request id) are the sample log.
import http from "node:http";
import { staffAuthorizations } from "../support/auth.ts";
import { round } from "./histogram.ts";
import type { EvictionSecond, EvictionsResult, RunInfo } from "./results.ts";
import { cacheCounters, type SlotData, startSlotSystem, sumOf } from "./slot-system.ts";

const lruEntries = 10;
const workers = 2;
const sampleRequests = 40;

export async function measureEvictions(
  run: RunInfo,
  data: SlotData,
  phaseS: number,
  log: (s: string) => void,
): Promise<{ result: EvictionsResult; sample: string[] }> {
  const phases = [
    { name: "8 keys (fits)", keys: 8 },
    { name: `${Math.min(50, data.dates.length)} keys (5× the LRU)`, keys: Math.min(50, data.dates.length) },
    { name: "8 keys again", keys: 8 },
  ].map((p, i) => ({ ...p, fromS: i * phaseS, toS: (i + 1) * phaseS }));
  const sys = await startSlotSystem("evictions", {
    SLOT_CACHE_MAX_ENTRIES: String(lruEntries),
    CACHE_EVICTION_LOG_SAMPLE: "1",
    LOG_LEVEL: "info",
    REDIS_URL: "redis://127.0.0.1:6379",
  });
  const tokens = await staffAuthorizations({ role: "admin", sub: "bench-evaluate-evictions" }, workers);
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const base = new URL(sys.gatewayUrl);
  const seconds: EvictionSecond[] = [];
  let requests = 0;
  let errors = 0;
  try {
    const totalMs = phases.length * phaseS * 1_000;
    const t0 = performance.now();
    const elapsedS = () => (performance.now() - t0) / 1_000;
    const phaseAt = (s: number) => phases.find((p) => s < p.toS) ?? phases[phases.length - 1]!;
    let n = 0;
    const worker = async (w: number) => {
      while (performance.now() - t0 < totalMs) {
        const phase = phaseAt(elapsedS());
        const i = n++;
        const date = data.dates[Math.floor(Math.random() * phase.keys)]!;
        await new Promise<void>((resolve) => {
          const req = http.request(
            {
              host: base.hostname,
              port: base.port,
              path: `/v1/clinics/${data.clinicId}/slots?date=${date}`,
              agent,
              headers: { authorization: tokens[w]!, "x-request-id": `evict-${i}` },
            },
            (res) => {
              res.resume();
              res.on("end", () => {
                if (res.statusCode === 200) requests++;
                else errors++;
                resolve();
              });
            },
          );
          req.on("error", () => {
            errors++;
            resolve();
          });
          req.end();
        });
      }
    };
    const sampler = (async () => {
      let prev = await cacheCounters(sys.metricsUrl);
      let prevRequests = 0;
      for (let s = 1; s <= phases.length * phaseS; s++) {
        const waitMs = t0 + s * 1_000 - performance.now();
        if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
        const cur = await cacheCounters(sys.metricsUrl);
        const d = (k: string) => (cur.lookups[k] ?? 0) - (prev.lookups[k] ?? 0);
        const hits = d("lru:hit");
        const lookups = hits + d("lru:miss");
        seconds.push({
          t: s,
          phase: phaseAt(s - 0.5).name,
          evictionsPerS: sumOf(cur.evictions) - sumOf(prev.evictions),
          lruHitRatio: lookups === 0 ? 0 : round(hits / lookups, 4),
          requestsPerS: requests - prevRequests,
        });
        prev = cur;
        prevRequests = requests;
      }
    })();
    await Promise.all([...Array.from({ length: workers }, (_, w) => worker(w)), sampler]);
    const final = await cacheCounters(sys.metricsUrl);
    log(
      `evictions: ${sumOf(final.evictions)} in ${phases.length * phaseS} s, ${requests} requests, ${errors} errors`,
    );
    agent.destroy();
    await sys.close();
    const lines = sys.appointment.lines.filter((l) => l.startsWith("{"));
    const evictionLines = lines.filter((l) => l.includes('"event":"cache_eviction"'));
    const ids = new Set<string>();
    for (const l of evictionLines) {
      if (ids.size >= sampleRequests) break;
      const id = (JSON.parse(l) as { requestId?: string }).requestId;
      if (id) ids.add(id);
    }
    const sample = lines.filter((l) => {
      const id = (JSON.parse(l) as { requestId?: string }).requestId;
      return id !== undefined && ids.has(id);
    });
    return {
      result: {
        run,
        lruEntries,
        phases,
        seconds,
        evictionsTotal: sumOf(final.evictions),
        evictionLinesLogged: evictionLines.length,
        sampleLines: sample.length,
      },
      sample,
    };
  } finally {
    agent.destroy();
    await sys.close();
  }
}
