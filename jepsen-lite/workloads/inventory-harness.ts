// Owns the inventory side of a run, for the `stock` and `bank` workloads: a fresh JepsenCluster of
// the requested size behind its link proxies (with the run's failpoints planted in every replica),
// the cluster faults, the gateway's leader-finding
// client for the workload, healing (links passed, paused replicas continued, dead ones restarted)
// and the liveness write (a restock of a probe item no workload reads).
import { randomUUID } from "node:crypto";
import type { FailpointName } from "../../src/shared/failpoints.ts";
import type { InventoryClient } from "../../src/shared/inventory-client.ts";
import { JepsenCluster } from "../cluster.ts";
import type { Harness } from "../harness.ts";
import { clusterFaults } from "../nemesis.ts";
import {
  type BankOp,
  type BankWorkloadOptions,
  bankDefaults,
  checkBank,
  runBankWorkload,
  setupBank,
} from "./bank.ts";
import {
  checkStock,
  runStockWorkload,
  type StockOp,
  type StockWorkloadOptions,
  stockDefaults,
} from "./stock.ts";

export interface InventoryHarnessOptions {
  name: string;
  replicas: number;
  /** What one op may spend finding a leader and getting an answer; past it the op is indeterminate. */
  opDeadlineMs: number;
  /** Switched on in every replica through MEDISYNC_FAILPOINTS (src/shared/failpoints.ts). */
  failpoints?: readonly FailpointName[];
}

function base(o: InventoryHarnessOptions) {
  const failpoints = o.failpoints ?? [];
  const cluster = new JepsenCluster(
    o.name,
    o.replicas,
    failpoints.length ? { MEDISYNC_FAILPOINTS: failpoints.join(",") } : {},
  );
  const clients: InventoryClient[] = [];
  const client = (deadlineMs: number) => {
    const c = cluster.client(deadlineMs);
    clients.push(c);
    return c;
  };
  const system = clusterFaults(cluster, () => client(3_000));
  let inventory: InventoryClient | undefined;
  return {
    cluster,
    replicas: o.replicas,
    system,
    inventory: () => {
      inventory ??= client(o.opDeadlineMs);
      return inventory;
    },
    async start() {
      await cluster.init();
      await cluster.startAll();
      // Faults start on a formed cluster (every replica a member): before that a new cluster may not
      // survive a failure by design (docs/raft.md, "every other voter").
      await cluster.waitFormed(60_000);
    },
    async healAll() {
      cluster.healLinks();
      for (const id of cluster.ids) {
        if (!cluster.alive(id)) await cluster.restart(id);
        else cluster.procs.get(id)!.proc.kill("SIGCONT");
      }
    },
    async liveness(boundMs: number) {
      try {
        await client(boundMs).write("restock", {
          requestId: randomUUID(),
          clinicId: "c-liveness",
          medicationCode: "m-probe",
          quantity: 1,
          lot: "",
          expiresOn: "",
        });
        return true;
      } catch {
        return false;
      }
    },
    links: () => [...cluster.links.values()].map((l) => ({ link: l.name, ...l.stats })),
    logs: () => cluster.runs.map((r) => ({ name: `${r.id}-${r.w.proc.pid}.log`, lines: r.w.lines })),
    async stop() {
      system.close?.();
      for (const c of clients) c.close();
      await cluster.stop();
    },
  };
}

export function stockHarness(
  o: InventoryHarnessOptions,
  w: Partial<StockWorkloadOptions> = {},
): Harness<StockOp> & { cluster: JepsenCluster } {
  const b = base(o);
  const options = { ...stockDefaults, ...w };
  return {
    ...b,
    workload: "stock",
    // The replicas' addresses are for readsAtEachReplica (reads sent straight to each replica).
    drive: (d) => runStockWorkload({ inventory: b.inventory(), replicas: b.cluster.peers, options, ...d }),
    check: (h, budgetMs) => checkStock(h, budgetMs),
  };
}

export function bankHarness(
  o: InventoryHarnessOptions,
  w: Partial<BankWorkloadOptions> = {},
): Harness<BankOp> & { cluster: JepsenCluster } {
  const b = base(o);
  const options = { ...bankDefaults, ...w };
  return {
    ...b,
    workload: "bank",
    async start() {
      await b.start();
      await setupBank(b.inventory(), options);
    },
    drive: (d) => runBankWorkload({ inventory: b.inventory(), options, ...d }),
    check: (h, budgetMs) => checkBank(h, options, budgetMs),
  };
}
