// Runs a real inventory cluster for tests and benchmarks: each replica is its own process
// (`medisync inventory`) on loopback with its own LevelDB directory and snapshot database, so
// SIGKILL, SIGSTOP and restarts are the real thing. With `tls`, every replica gets its certificate
// from a CA made for the cluster (src/cli/dev-certs.ts) and the cluster's clients one as `client`.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { type CertFiles, ensureCerts, tlsEnv } from "../../src/cli/dev-certs.ts";
import { runGateway } from "../../src/gateway/server.ts";
import {
  InventoryAdminServiceClient,
  InventoryServiceClient,
  type StatusResponse,
} from "../../src/gen/medisync/v1/inventory.ts";
import { AppError } from "../../src/shared/errors.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import { InventoryClient } from "../../src/shared/inventory-client.ts";
import { createLogger } from "../../src/shared/logger.ts";
import {
  type ClientSecurity,
  mtlsSecurity,
  type PeerIdentity,
  plaintextClients,
  readTlsMaterial,
} from "../../src/shared/tls.ts";
import { clinicsWithCodes } from "./fixtures.ts";
import { freePortRange, runCli, type Watched } from "./process.ts";
import { resetState, startInstance, stopInstance, testConfig, testName, testPool } from "./services.ts";

export interface ClusterOptions {
  name: string;
  replicas?: number;
  env?: Record<string, string>;
  pgBase?: string;
  redisUrl?: string;
  /** Extra node flags per replica (profiling). */
  nodeArgs?: (id: string) => string[];
  /**
   * Replicas not in the initial peer list (inv-N+1…), with ports reserved: started with start(),
   * they know only the initial peers and themselves, and join once added as learners.
   */
  spares?: number;
  /** Mutual TLS: a CA and a certificate per replica (and one `client` for the cluster's clients). */
  tls?: boolean;
}

export class InventoryCluster {
  readonly ids: string[];
  readonly procs = new Map<string, Watched>();
  readonly clients = new Map<string, InventoryServiceClient>();
  readonly admins = new Map<string, InventoryAdminServiceClient>();
  /** Spare replicas' ids (see ClusterOptions.spares). */
  readonly spareIds: string[];
  peers: { id: string; address: string }[] = [];
  /** Every replica's address, spares included. */
  readonly addresses = new Map<string, string>();
  private base = 0;
  private dataDir = "";
  private redis: Redis | undefined;
  readonly pgBase: string;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly name: string;
  /** With `tls`: the directory of the cluster's CA and certificates, and each one's files by name. */
  certDir = "";
  certs = new Map<string, CertFiles>();
  /** What the cluster's own clients connect with: the `client` certificate with `tls`. */
  security: ClientSecurity = plaintextClients;

  constructor(private readonly o: ClusterOptions) {
    this.ids = Array.from({ length: o.replicas ?? 3 }, (_, i) => `inv-${i + 1}`);
    this.spareIds = Array.from({ length: o.spares ?? 0 }, (_, i) => `inv-${this.ids.length + i + 1}`);
    this.pgBase = o.pgBase ?? process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
    this.redisUrl = o.redisUrl ?? process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
    this.name = testName(o.name);
    this.prefix = `test-${this.name}:`;
  }

  get dbBase(): string {
    return `${this.pgBase}/medisync_test_${this.name}`;
  }

  async init(): Promise<void> {
    const n = this.all.length;
    this.base = await freePortRange(2 * n);
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), `medisync-${this.o.name}-`));
    if (this.o.tls) {
      this.certDir = path.join(this.dataDir, "certs");
      const plan = new Map<string, PeerIdentity>(this.all.map((id) => [id, { service: "inventory", id }]));
      plan.set("client", { service: "client", id: "test" });
      this.certs = await ensureCerts(this.certDir, plan);
      this.security = mtlsSecurity(
        readTlsMaterial(this.certs.get("client")!),
        { service: "client", id: "test" },
        createLogger({ service: "test", level: "silent" }),
      );
    }
    this.all.forEach((id, i) => {
      const address = `127.0.0.1:${this.base + i}`;
      this.addresses.set(id, address);
      const ch = this.security.channel({ service: "inventory", id });
      this.clients.set(id, new InventoryServiceClient(address, ch.credentials, ch.options));
      this.admins.set(id, new InventoryAdminServiceClient(address, ch.credentials, ch.options));
    });
    this.peers = this.ids.map((id) => ({ id, address: this.addresses.get(id)! }));
    // Every replica's snapshot database starts empty.
    const admin = new pg.Client({ connectionString: `${this.pgBase}/postgres` });
    await admin.connect();
    try {
      for (const id of this.all) {
        await admin.query(
          `DROP DATABASE IF EXISTS "medisync_test_${this.name}_${id.replaceAll("-", "_")}" WITH (FORCE)`,
        );
      }
    } finally {
      await admin.end();
    }
    this.redis = new Redis(this.redisUrl);
    const keys = await this.redis.keys(`${this.prefix}*`);
    if (keys.length > 0) await this.redis.del(...keys);
  }

  /** Initial replicas, then spares. */
  get all(): string[] {
    return [...this.ids, ...this.spareIds];
  }

  envOf(id: string): Record<string, string> {
    const i = this.all.indexOf(id);
    // A spare knows the initial peers and itself: the rest it learns from the replicated configuration.
    const peers = this.ids.includes(id)
      ? this.peers
      : [...this.peers, { id, address: this.addresses.get(id)! }];
    return {
      INVENTORY_ID: id,
      INVENTORY_PEERS: peers.map((p) => `${p.id}=${p.address}`).join(","),
      INVENTORY_GRPC_PORT: String(this.base + i),
      INVENTORY_OPS_PORT: String(this.base + this.all.length + i),
      INVENTORY_DATA_DIR: this.dataDir,
      INVENTORY_DATABASE_URL: this.dbBase,
      REDIS_URL: this.redisUrl,
      REDIS_KEY_PREFIX: this.prefix,
      LOG_LEVEL: "info",
      ...(this.o.tls ? tlsEnv(this.certs.get(id)!) : {}),
      ...this.o.env,
    };
  }

  start(id: string): Watched {
    const w = runCli(["inventory"], this.envOf(id), this.o.nodeArgs?.(id) ?? []);
    this.procs.set(id, w);
    return w;
  }

  async startAll(): Promise<void> {
    for (const id of this.ids) this.start(id);
    await Promise.all(
      this.ids.map((id) => this.procs.get(id)!.waitFor(/inventory replica listening/, 60_000)),
    );
  }

  /** Deletes a (stopped) replica's LevelDB directory: its Raft log, term and vote are gone. */
  wipeLog(id: string): void {
    rmSync(path.join(this.dataDir, id), { recursive: true, force: true });
  }

  /** Drops a (stopped) replica's snapshot database: with wipeLog, the replica has nothing left. */
  async wipeSnapshots(id: string): Promise<void> {
    const admin = new pg.Client({ connectionString: `${this.pgBase}/postgres` });
    await admin.connect();
    try {
      await admin.query(
        `DROP DATABASE IF EXISTS "medisync_test_${this.name}_${id.replaceAll("-", "_")}" WITH (FORCE)`,
      );
    } finally {
      await admin.end();
    }
  }

  /** Sends a signal to the replica's process; for SIGKILL, resolves once it is gone. */
  async signal(id: string, sig: NodeJS.Signals): Promise<void> {
    const w = this.procs.get(id)!;
    w.proc.kill(sig);
    if (sig === "SIGKILL" || sig === "SIGTERM") await w.exited;
  }

  async status(id: string, deadlineMs = 500): Promise<StatusResponse | undefined> {
    const c = this.clients.get(id)!;
    try {
      return await callUnary(c.status.bind(c), {}, deadlineMs);
    } catch {
      return undefined;
    }
  }

  /**
   * A brand-new cluster is formed once every replica is a member (every voter vouched for every
   * other, raft/node/identity.ts) and they agree on a leader: only then does it tolerate a failure.
   */
  async waitFormed(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await Promise.all(this.ids.map((id) => this.status(id)));
      if (st.every((s) => s?.identity === "member")) {
        return this.waitLeader(Math.max(1, deadline - Date.now()));
      }
      if (Date.now() > deadline) throw new Error(`not formed within ${timeoutMs} ms: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The replica a majority of answering replicas follow, once they agree. */
  async waitLeader(timeoutMs = 20_000, exclude: string[] = []): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await Promise.all(this.ids.filter((i) => !exclude.includes(i)).map((id) => this.status(id)));
      const leader = st.find((s) => s?.role === "leader");
      if (leader) {
        const agree = st.filter((s) => s?.leaderId === leader.id && s.term === leader.term).length;
        if (agree > this.ids.length / 2) return leader.id;
      }
      if (Date.now() > deadline) throw new Error(`no leader within ${timeoutMs} ms: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits until every listed replica has applied the same index, then returns their state hashes. */
  async converged(ids = this.ids, timeoutMs = 60_000): Promise<StatusResponse[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await Promise.all(ids.map((id) => this.status(id, 2_000)));
      const ok = st.every((s) => s !== undefined);
      if (ok) {
        const applied = new Set(st.map((s) => s!.appliedIndex));
        const commit = Math.max(...st.map((s) => s!.commitIndex));
        if (applied.size === 1 && st[0]!.appliedIndex === commit) return st as StatusResponse[];
      }
      if (Date.now() > deadline) throw new Error(`replicas did not converge: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A leader-finding client with the gateway's retry policy (what the gateway itself uses). */
  client(overallDeadlineMs = 10_000): InventoryClient {
    return new InventoryClient({
      peers: this.peers,
      deadlineMs: 1_000,
      overallDeadlineMs,
      ...(this.redis ? { redis: this.redis } : {}),
      keyPrefix: this.prefix,
      security: this.security,
    });
  }

  /**
   * Each replica's exit and last log lines: what a failed cluster test prints, since CI keeps only
   * the test runner's output.
   */
  tail(lineCount = 40): string {
    return [...this.procs.entries()]
      .map(([id, w]) => {
        const exit = w.proc.exitCode ?? w.proc.signalCode ?? "running";
        return `--- ${id} (${exit}) ---\n${w.lines.slice(-lineCount).join("\n")}`;
      })
      .join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.procs.values()].map(async (w) => {
        if (w.proc.exitCode === null && w.proc.signalCode === null) {
          w.proc.kill("SIGCONT");
          w.proc.kill("SIGKILL");
          await w.exited;
        }
      }),
    );
    for (const c of this.clients.values()) c.close();
    for (const c of this.admins.values()) c.close();
    this.redis?.disconnect();
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** One write, retried with the same request id until acknowledged (or the budget is spent). */
export async function untilAcked<T>(
  fn: () => Promise<T>,
  budgetMs = 30_000,
  gaveUp = () => false,
): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const retry =
        err instanceof AppError && (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED");
      if (!retry || Date.now() > deadline || gaveUp()) throw err;
    }
  }
}

/**
 * A formed cluster with a real gateway in front of it, and an appointment instance behind the
 * gateway that knows the clinics named by `clinics` (inventory routes refuse codes of no clinic):
 * what the gateway's cluster tests run against.
 */
export async function clusterBehindGateway(
  name: string,
  options: Omit<ClusterOptions, "name"> & { clinics?: string[] } = {},
): Promise<{ cluster: InventoryCluster; base: string; opsBase: string; close: () => Promise<void> }> {
  const { clinics = ["harbour"], ...clusterOptions } = options;
  const cluster = new InventoryCluster({ name, ...clusterOptions });
  await cluster.init();
  await cluster.startAll();
  await cluster.waitFormed();
  const base = testConfig(name, {
    INVENTORY_PEERS: cluster.peers.map((p) => `${p.id}=${p.address}`).join(","),
    REDIS_KEY_PREFIX: cluster.prefix,
  });
  await resetState(base);
  const appointment = await startInstance(base);
  const pool = testPool(base);
  await clinicsWithCodes(pool, clinics);
  await pool.end();
  const cfg = { ...base, APPOINTMENT_ADDRS: [`127.0.0.1:${appointment.service.grpcPort}`] };
  const gw = await runGateway(cfg, createLogger({ service: "gateway", level: "silent" }));
  return {
    cluster,
    base: `http://127.0.0.1:${gw.port}`,
    opsBase: `http://127.0.0.1:${gw.opsPort}`,
    close: async () => {
      await gw.close();
      await stopInstance(appointment);
      await cluster.stop();
    },
  };
}
