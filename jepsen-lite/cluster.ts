// Owns the system under test: a real inventory cluster (one `medisync inventory` process per
// replica, as test/support/inventory-cluster.ts runs it, on free ports, a temp data dir, databases
// and a Redis prefix of its own) with a fault proxy on every directed link between replicas. Each
// replica listens on its own port (INVENTORY_GRPC_PORT) and finds every peer at the proxy of the link
// from it to that peer (its own INVENTORY_PEERS), while its own entry keeps its real address.
// Clients reach the replicas directly: the faults here are between replicas.
import pg from "pg";
import { InventoryCluster } from "../test/support/inventory-cluster.ts";
import type { Watched } from "../test/support/process.ts";
import { type LinkMode, LinkProxy } from "./proxy.ts";

export class JepsenCluster extends InventoryCluster {
  /** Key `${from}>${to}`: carries what `from` sends to `to`. */
  readonly links = new Map<string, LinkProxy>();

  constructor(name: string, replicas = 3, env: Record<string, string> = {}) {
    super({ name, replicas, env });
  }

  override async init(): Promise<void> {
    await super.init();
    for (const from of this.ids) {
      for (const to of this.peers) {
        if (to.id === from) continue;
        const [host, port] = to.address.split(":");
        const link = await LinkProxy.start({
          name: `${from}>${to.id}`,
          targetHost: host!,
          targetPort: Number(port),
        });
        this.links.set(link.name, link);
      }
    }
  }

  /** Every process a replica ran (restarts included), for its log in the run's store. */
  readonly runs: { id: string; w: Watched }[] = [];

  override start(id: string): Watched {
    const w = super.start(id);
    this.runs.push({ id, w });
    return w;
  }

  override envOf(id: string): Record<string, string> {
    const env = super.envOf(id);
    env.INVENTORY_PEERS = this.peers
      .map((p) => `${p.id}=${p.id === id ? p.address : this.link(id, p.id).address}`)
      .join(",");
    return env;
  }

  link(from: string, to: string): LinkProxy {
    const l = this.links.get(`${from}>${to}`);
    if (!l) throw new Error(`no link ${from}>${to}`);
    return l;
  }

  /** Sets every link from a replica in `a` to one in `b` (one way). */
  setLinks(a: string[], b: string[], mode: LinkMode): void {
    for (const x of a) for (const y of b) if (x !== y) this.link(x, y).setMode(mode);
  }

  healLinks(): void {
    for (const l of this.links.values()) l.setMode({ kind: "pass" });
  }

  alive(id: string): boolean {
    const w = this.procs.get(id);
    return !!w && w.proc.exitCode === null && w.proc.signalCode === null;
  }

  async restart(id: string): Promise<void> {
    const w = this.start(id);
    await w.waitFor(/inventory replica listening/, 60_000);
  }

  override async stop(): Promise<void> {
    await super.stop();
    for (const l of this.links.values()) await l.close();
    // The replicas' snapshot databases are this run's alone: drop them.
    const admin = new pg.Client({ connectionString: `${this.pgBase}/postgres` });
    await admin.connect();
    try {
      for (const id of this.ids) {
        await admin.query(
          `DROP DATABASE IF EXISTS "medisync_test_${this.name}_${id.replaceAll("-", "_")}" WITH (FORCE)`,
        );
      }
    } finally {
      await admin.end();
    }
  }
}
