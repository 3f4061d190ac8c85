// Benchmark: committed proposals per CPU-second of the pure Raft core, 3 replicas, no faults, with
// batching on (many entries per append) and off (one entry per append). Two drivers:
//   - pipeline: an in-memory network that delivers every message in order, clients keeping a
//     window of proposals outstanding — the core's own cost per committed entry;
//   - simulator: the full deterministic simulator (raft/sim) with faults off, closed-loop clients
//     and every invariant checked after every step — what the test campaign costs per commit;
//   - real node: the production RaftNode (raft/sim/node) on the simulated disk, network and clock,
//     faults off — so a regression in the runtime (the node loop, LevelLog, the codec) shows here.
// CPU time is process.cpuUsage (user + system). Prints a table and writes bench/reports/raft-core.md.
//   npm run bench:raft-core [-- --proposals 200000]
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MemoryStorage, type Message, RaftCore } from "../../raft/core/index.ts";
import { seededRandom } from "../../raft/core/testing.ts";
import { runSimulation } from "../../raft/sim/cluster.ts";
import { NodeSimCluster } from "../../raft/sim/node/node-cluster.ts";
import { nodeParamsForSeed } from "../../raft/sim/node/params.ts";
import { paramsForSeed } from "../../raft/sim/params.ts";
import { numberArg } from "../support/args.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";

const proposalsTotal = numberArg("proposals", 200_000);
/** Proposals the clients keep outstanding at once (pipeline driver). */
const windowProposals = 512;
const payloadBytes = 64;

interface Row {
  driver: string;
  batching: string;
  committed: number;
  cpuS: number;
  perCpuS: number;
  messagesPerCommit: number;
  entriesPerAppend: number;
}

function cpuSeconds(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1e6;
}

function pipeline(batching: boolean): Row {
  const ids = ["a", "b", "c"];
  const disks = new Map(ids.map((id) => [id, new MemoryStorage({ voters: ids, learners: [] })]));
  const cores = new Map(
    ids.map((id) => [
      id,
      new RaftCore({
        id,
        storage: disks.get(id)!,
        electionTicks: 10,
        heartbeatTicks: 1,
        random: seededRandom(id.charCodeAt(0)),
        entriesPerMessageMax: batching ? 256 : 1,
        bytesPerMessageMax: 1 << 20,
        inflightMessagesMax: 64,
      }),
    ]),
  );
  let queue: Message[] = [];
  let messages = 0;
  let appends = 0;
  let appendedEntries = 0;
  let applied = 0;
  const flush = (id: string) => {
    const c = cores.get(id)!;
    const disk = disks.get(id)!;
    while (c.hasReady()) {
      const rd = c.ready();
      disk.append(rd.entries);
      if (rd.hardState) disk.setHardState(rd.hardState);
      for (const m of [...rd.messages, ...rd.messagesAfterPersist]) {
        queue.push(m);
        if (m.type === "app" && m.entries.length > 0) {
          appends++;
          appendedEntries += m.entries.length;
        }
      }
      if (id === "a") applied += rd.committedEntries.length;
      c.advance(rd);
    }
  };
  const deliver = () => {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      for (const m of batch) {
        messages++;
        cores.get(m.to)!.step(m);
        flush(m.to);
      }
    }
  };
  const leader = cores.get("a")!;
  leader.campaign();
  flush("a");
  deliver();
  if (leader.currentRole !== "leader") throw new Error("no leader");
  const payload = new Uint8Array(payloadBytes);
  const appliedAtStart = applied;
  const messagesAtStart = messages;
  const appendsAtStart = appends;
  const entriesAtStart = appendedEntries;
  const start = process.cpuUsage();
  let proposed = 0;
  while (applied - appliedAtStart < proposalsTotal) {
    // Keep `windowProposals` outstanding; deliver one round of messages between bursts.
    while (proposed - (applied - appliedAtStart) < windowProposals && proposed < proposalsTotal) {
      leader.propose(payload);
      proposed++;
    }
    flush("a");
    const batch = queue;
    queue = [];
    for (const m of batch) {
      messages++;
      cores.get(m.to)!.step(m);
      flush(m.to);
    }
    if (proposed >= proposalsTotal) deliver();
  }
  const cpuS = cpuSeconds(start);
  const committed = applied - appliedAtStart;
  return {
    driver: "pipeline",
    batching: batching ? "on (≤256 entries/append)" : "off (1 entry/append)",
    committed,
    cpuS,
    perCpuS: committed / cpuS,
    messagesPerCommit: (messages - messagesAtStart) / committed,
    entriesPerAppend: (appendedEntries - entriesAtStart) / Math.max(1, appends - appendsAtStart),
  };
}

function simulator(batching: boolean): Row {
  let committed = 0;
  let messages = 0;
  const start = process.cpuUsage();
  for (let seed = 1; seed <= 40; seed++) {
    const p = paramsForSeed(seed, { nodes: 3, faults: false });
    p.entriesPerMessageMax = batching ? 256 : 1;
    p.bytesPerMessageMax = 1 << 20;
    p.inflightMessagesMax = 64;
    p.clients = 4;
    p.clientOpEveryMs = 1;
    p.readRate = 0;
    p.membership = false;
    p.transfers = false;
    const r = runSimulation({ params: p, steps: 20_000 });
    if (!r.ok) throw new Error(`seed ${seed}: ${r.violation}`);
    committed += r.committed;
    for (const [k, v] of Object.entries(r.stats)) if (k.startsWith("msg.")) messages += v;
  }
  const cpuS = cpuSeconds(start);
  return {
    driver: "simulator (invariants on)",
    batching: batching ? "on (≤256 entries/append)" : "off (1 entry/append)",
    committed,
    cpuS,
    perCpuS: committed / cpuS,
    messagesPerCommit: messages / committed,
    entriesPerAppend: Number.NaN,
  };
}

async function realNode(): Promise<Row> {
  let committed = 0;
  const start = process.cpuUsage();
  for (let seed = 1; seed <= 20; seed++) {
    const p = nodeParamsForSeed(seed, { nodes: 3, faults: false, ackCrashFocus: false });
    p.clients = 8;
    p.clientOpEveryMs = 1;
    p.readRate = 0;
    const r = await new NodeSimCluster(p).run();
    if (!r.ok) throw new Error(`real node seed ${seed}: ${r.violation}`);
    committed += r.acked;
  }
  const cpuS = cpuSeconds(start);
  return {
    driver: "real node (simulated disk, network, clock)",
    batching: "node batches proposals per turn",
    committed,
    cpuS,
    perCpuS: committed / cpuS,
    messagesPerCommit: Number.NaN,
    entriesPerAppend: Number.NaN,
  };
}

const rows: Row[] = [];
for (const batching of [true, false]) {
  pipeline(batching); // warm-up (JIT)
  rows.push(pipeline(batching));
}
for (const batching of [true, false]) rows.push(simulator(batching));
rows.push(await realNode());

const header = [
  "driver",
  "batching",
  "committed",
  "CPU s",
  "commits / CPU s",
  "messages / commit",
  "entries / append",
];
const table = markdownTable(
  header,
  rows.map((r) => [
    r.driver,
    r.batching,
    r.committed,
    r.cpuS.toFixed(2),
    Math.round(r.perCpuS).toLocaleString("en-US"),
    Number.isNaN(r.messagesPerCommit) ? "—" : r.messagesPerCommit.toFixed(2),
    Number.isNaN(r.entriesPerAppend) ? "—" : r.entriesPerAppend.toFixed(1),
  ]),
);
console.log(table);

const report = `# Raft core benchmark

Committed proposals per CPU-second (process.cpuUsage, user + system) of the pure core in
\`raft/core\`, 3 replicas, no faults, one Node process (the cores share one thread, so this is the
cost of *all three* replicas per committed entry). \`npm run bench:raft-core\`.

- **pipeline**: an in-memory network delivering every message in order; clients keep
  ${windowProposals} proposals of ${payloadBytes} bytes outstanding; ${proposalsTotal.toLocaleString("en-US")} committed per row
  (after a warm-up run). Inflight window 64 appends per follower.
- **simulator**: the deterministic simulator (\`raft/sim\`) with faults off, 4 closed-loop clients
  (one request outstanding each), every safety invariant checked after every step — 40 seeds ×
  20,000 steps per row. Closed-loop clients leave little to batch, so both rows are close.
- **real node**: three production \`RaftNode\`s (\`raft/sim/node\`) on LevelLog over the simulated
  disk, the simulated network and virtual time, faults off, 8 closed-loop clients, every invariant
  checked — 20 seeds × 3.3 virtual seconds; "committed" counts acknowledged writes. It includes the
  simulator's own cost (one real macrotask turn per event), so compare it with itself across commits.

${machineDescription()}

${table}

Batching turns one append (and one acknowledgement) per entry into one per batch: fewer messages
per commit, and the per-message work (quorum computation, progress update, Ready handling) is
shared by the whole batch.
`;
const out = join(dirname(fileURLToPath(import.meta.url)), "..", "reports", "raft-core.md");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, report);
console.log(`wrote ${out}`);
