// Section 2: failover. A steady open-model write load (a constant rate of writes, each retried with
// its request id until acknowledged, latency from its intended start) runs while the leader is
// SIGKILLed; the failover time is what the client sees: from the kill to the first acknowledged write
// that was sent after the killed process was gone (a reply the old leader sent before dying may
// still arrive after the kill, and proves nothing). The killed replica is restarted and the cluster
// converges before the next trial. The same load and kills against etcd 3.4 where it is installed.
import type { InventoryCluster } from "../../test/support/inventory-cluster.ts";
import { untilAcked } from "../../test/support/inventory-cluster.ts";
import type { Watched } from "../../test/support/process.ts";
import { EtcdCluster, EtcdPutClient, findEtcd } from "./etcd.ts";
import { Latency, round } from "./histogram.ts";
import { steadyWrites, until, type WriteRecord } from "./load.ts";
import type { FailoverResult, FailoverSystem, RunInfo } from "./results.ts";

export const clinic = "bench";
export const medication = "paracetamol-500";

export interface FailoverOptions {
  trials: number;
  ratePerSecond: number;
  /** Steady load before each kill, and after the first acknowledged write following it. */
  beforeMs: number;
  afterMs: number;
}

/** What a trial needs of the system under test. */
interface Target<L> {
  leader(): Promise<L>;
  write(id: string): Promise<void>;
  kill(leader: L): Promise<void>;
  /** Restarts the killed member and waits until the cluster is whole again. */
  restart(leader: L): Promise<void>;
}

interface Trial {
  failoverMs: number;
  records: WriteRecord[];
  killedAtMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function trial<L>(
  t: Target<L>,
  n: number,
  o: FailoverOptions,
  onKill?: (l: L) => void,
): Promise<Trial> {
  const leader = await t.leader();
  const load = steadyWrites(o.ratePerSecond, (i) => t.write(`fo-${n}-${i}`));
  await sleep(o.beforeMs);
  onKill?.(leader);
  const killedAtMs = load.now();
  await t.kill(leader);
  const deadAtMs = load.now();
  const firstAck = () => {
    let first = Number.POSITIVE_INFINITY;
    for (const r of load.records) if (r.sentMs >= deadAtMs && r.ackMs < first) first = r.ackMs;
    return first;
  };
  let failoverMs = Number.NaN;
  try {
    await until(() => Number.isFinite(firstAck()), 30_000, "a write acknowledged after the kill");
    failoverMs = firstAck() - killedAtMs;
    await sleep(o.afterMs);
  } catch {
    // No write acknowledged within 30 s: the trial's failover time stays NaN, and the report says so.
  }
  const records = await load.stop();
  await t.restart(leader);
  return { failoverMs, records, killedAtMs };
}

async function trials<L>(
  system: string,
  client: string,
  t: Target<L>,
  o: FailoverOptions,
  log: (s: string) => void,
  hooks: { onKill?: (l: L) => void; afterFirst?: (tr: Trial) => void } = {},
): Promise<FailoverSystem> {
  const steady = new Latency();
  const trialsMs: number[] = [];
  let first: Trial | undefined;
  for (let n = 0; n < o.trials; n++) {
    const tr = await trial(t, n, o, n === 0 ? hooks.onKill : undefined);
    if (n === 0) {
      first = tr;
      hooks.afterFirst?.(tr);
    }
    trialsMs.push(round(tr.failoverMs, 1));
    // Steady state: the writes sent and acknowledged before the kill.
    for (const r of tr.records) if (r.ackMs < tr.killedAtMs) steady.recordMs(r.ackMs - r.intendedMs);
    log(`failover ${system} trial ${n + 1}/${o.trials}: ${tr.failoverMs.toFixed(0)} ms`);
  }
  const writes = first!.records
    .filter((r) => Number.isFinite(r.ackMs))
    .map((r) => ({
      atMs: round(r.intendedMs - first!.killedAtMs, 2),
      ackAtMs: round(r.ackMs - first!.killedAtMs, 2),
      latencyMs: round(r.ackMs - r.intendedMs, 3),
    }));
  return {
    system,
    client,
    trialsMs,
    steadyP50: round(steady.ms(50), 3),
    steadyP99: round(steady.ms(99), 3),
    timeline: {
      failoverMs: round(first!.failoverMs, 1),
      writes,
      unacked: first!.records.length - writes.length,
    },
  };
}

/**
 * MediSync: deducts through InventoryClient (the gateway's own leader-finding client, with its
 * retry policy), the cluster's replicas real processes. Trial 1's lines from every replica, from the
 * kill until the cluster converged again, and the client's own two events, become `sample`.
 */
export async function medisyncFailover(
  c: InventoryCluster,
  o: FailoverOptions,
  log: (s: string) => void,
  sample: string[],
): Promise<FailoverSystem> {
  const client = c.client(30_000);
  const marks = new Map<Watched, number>();
  let firstWrite = "";
  const event = (e: Record<string, unknown>) =>
    JSON.stringify({
      level: "info",
      time: new Date().toISOString(),
      service: "evaluate-client",
      requestId: "-",
      ...e,
    });
  try {
    return await trials(
      "MediSync",
      "InventoryClient (the gateway's leader-finding client), one Deduct per write",
      {
        leader: () => c.waitLeader(30_000),
        write: async (id) => {
          await untilAcked(() =>
            client.write("deduct", {
              requestId: id,
              clinicId: clinic,
              medicationCode: medication,
              quantity: 1,
            }),
          );
        },
        kill: (id) => c.signal(id, "SIGKILL"),
        restart: async (id) => {
          c.start(id);
          await c.procs.get(id)!.waitFor(/inventory replica listening/, 60_000);
          await c.converged();
          await c.waitLeader(30_000);
        },
      },
      o,
      log,
      {
        onKill: (leader) => {
          for (const w of c.procs.values()) marks.set(w, w.lines.length);
          sample.push(event({ event: "sigkill_leader", leader }));
        },
        afterFirst: (tr) => {
          firstWrite = event({ event: "first_write_after_kill", ms: round(tr.failoverMs, 1) });
          const lines: string[] = [firstWrite];
          // The processes from the kill on: the survivors' lines since then, and the restarted one's.
          for (const w of new Set([...marks.keys(), ...c.procs.values()]))
            lines.push(...w.lines.slice(marks.get(w) ?? 0).filter((l) => l.startsWith("{")));
          sample.push(...lines);
          const at = (l: string) => {
            try {
              return String((JSON.parse(l) as { time?: unknown }).time ?? "");
            } catch {
              return "";
            }
          };
          sample.sort((a, b) => at(a).localeCompare(at(b)));
        },
      },
    );
  } finally {
    client.close();
  }
}

/** etcd 3.4: the same load as puts (one key per write) on a 3-member cluster, its leader SIGKILLed. */
export async function etcdFailover(
  o: FailoverOptions,
  log: (s: string) => void,
): Promise<FailoverSystem | string> {
  const found = findEtcd();
  if ("missing" in found) return found.missing;
  const e = new EtcdCluster(found.bin);
  try {
    await e.init();
    const client = new EtcdPutClient(e.urls, await e.leader());
    return await trials(
      `etcd ${found.version}`,
      "its JSON gateway (PUT /v3/kv/put), to the leader; on a failure the next member, InventoryClient's backoff",
      {
        leader: () => e.leader(),
        write: (id) => client.put(`stock/${id}`, "1"),
        kill: (i) => e.kill(i),
        restart: async (i) => {
          e.start(i);
          await e.healthy(60_000);
        },
      },
      o,
      log,
    );
  } finally {
    await e.stop();
  }
}

export function failoverResult(
  run: RunInfo,
  o: FailoverOptions,
  ours: FailoverSystem,
  etcd: FailoverSystem | string,
): FailoverResult {
  return {
    run,
    ratePerSecond: o.ratePerSecond,
    systems: typeof etcd === "string" ? [ours] : [ours, etcd],
    ...(typeof etcd === "string" ? { etcdNote: etcd } : {}),
  };
}
