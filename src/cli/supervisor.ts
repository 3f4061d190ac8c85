// Owns `npm start`: checks that PostgreSQL and Redis answer (saying in one line how to start the
// one that does not), prepares the database (create, migrate, seed the demo once), then runs every
// MediSync process as a child with prefixed output and its own certificate (data/certs/, made once),
// restarts a child that dies (with backoff, and logged), and on Ctrl-C stops them all before exiting.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import type { Logger } from "pino";
import { migrate } from "../appointment/migrate.ts";
import { seedDemo } from "../appointment/seed.ts";
import type { Config } from "../shared/config.ts";
import { ensureDevKeys } from "../shared/dev-tokens.ts";
import { createLogger } from "../shared/logger.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { mtlsSecurity, readTlsMaterial } from "../shared/tls.ts";
import { ensureCertsLocked, localCertPlan, localCertsDir, tlsEnv } from "./dev-certs.ts";
import { seedStock } from "./seed-stock.ts";

/** One process the supervisor runs: `medisync <command>` with these variables on top of its own. */
export interface ChildSpec {
  name: string;
  command: "gateway" | "appointment" | "inventory" | "notification" | "medication";
  env: Record<string, string>;
}

const restartBackoffMsBase = 200;
const restartBackoffMsMax = 5_000;
/** A child that stayed up this long is healthy again: its next crash restarts at the base backoff. */
const healthyAfterMs = 10_000;
const stopGraceMs = 10_000;
const readyTimeoutMs = 60_000;
const dependencyCheckTimeoutMs = 3_000;

/** The processes of one machine and the ports they get; docker-compose.yml must agree (a test checks). */
export function planChildren(cfg: Config): ChildSpec[] {
  const children: ChildSpec[] = [];
  const addrs: string[] = [];
  for (let i = 0; i < cfg.APPOINTMENT_INSTANCES; i++) {
    const grpcPort = cfg.APPOINTMENT_GRPC_PORT + i;
    addrs.push(`127.0.0.1:${grpcPort}`);
    children.push({
      name: `appointment-${i + 1}`,
      command: "appointment",
      env: {
        INSTANCE_ID: `appointment-${i + 1}`,
        APPOINTMENT_GRPC_PORT: String(grpcPort),
        APPOINTMENT_OPS_PORT: String(cfg.APPOINTMENT_OPS_PORT + i),
      },
    });
  }
  const peers = Array.from({ length: cfg.INVENTORY_REPLICAS }, (_, i) => ({
    id: `inv-${i + 1}`,
    address: `127.0.0.1:${cfg.INVENTORY_GRPC_PORT + i}`,
  }));
  const peerList = peers.map((p) => `${p.id}=${p.address}`).join(",");
  for (const [i, p] of peers.entries()) {
    children.push({
      name: p.id,
      command: "inventory",
      env: {
        INVENTORY_ID: p.id,
        INSTANCE_ID: p.id,
        INVENTORY_PEERS: peerList,
        INVENTORY_GRPC_PORT: String(cfg.INVENTORY_GRPC_PORT + i),
        INVENTORY_OPS_PORT: String(cfg.INVENTORY_OPS_PORT + i),
      },
    });
  }
  const notificationAddrs: string[] = [];
  for (let i = 0; i < cfg.NOTIFICATION_INSTANCES; i++) {
    const grpcPort = cfg.NOTIFICATION_GRPC_PORT + i;
    notificationAddrs.push(`127.0.0.1:${grpcPort}`);
    children.push({
      name: `notification-${i + 1}`,
      command: "notification",
      env: {
        INSTANCE_ID: `notification-${i + 1}`,
        NOTIFICATION_GRPC_PORT: String(grpcPort),
        NOTIFICATION_OPS_PORT: String(cfg.NOTIFICATION_OPS_PORT + i),
        // One machine, receivers on loopback: webhooks to local addresses are the point here.
        // docker-compose.yml does not set it (a test holds that).
        NOTIFICATION_WEBHOOK_ALLOW_PRIVATE: "true",
      },
    });
  }
  const medicationAddrs: string[] = [];
  for (let i = 0; i < cfg.MEDICATION_INSTANCES; i++) {
    const grpcPort = cfg.MEDICATION_GRPC_PORT + i;
    medicationAddrs.push(`127.0.0.1:${grpcPort}`);
    children.push({
      name: `medication-${i + 1}`,
      command: "medication",
      env: {
        INSTANCE_ID: `medication-${i + 1}`,
        MEDICATION_GRPC_PORT: String(grpcPort),
        MEDICATION_OPS_PORT: String(cfg.MEDICATION_OPS_PORT + i),
        APPOINTMENT_ADDRS: addrs.join(","),
        INVENTORY_PEERS: peerList,
      },
    });
  }
  children.push({
    name: "gateway",
    command: "gateway",
    env: {
      INSTANCE_ID: "gateway",
      APPOINTMENT_ADDRS: addrs.join(","),
      MEDICATION_ADDRS: medicationAddrs.join(","),
      NOTIFICATION_ADDRS: notificationAddrs.join(","),
      INVENTORY_PEERS: peerList,
    },
  });
  return children;
}

function hostOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol.startsWith("redis") ? "6379" : "5432")}`;
}

/** One line per dependency that does not answer, each with the command that starts it. */
export async function checkDependencies(cfg: Config): Promise<string[]> {
  const problems: string[] = [];
  const admin = new URL(cfg.DATABASE_URL);
  admin.pathname = "/postgres";
  const client = new pg.Client({
    connectionString: admin.toString(),
    connectionTimeoutMillis: dependencyCheckTimeoutMs,
    statement_timeout: dependencyCheckTimeoutMs,
    query_timeout: dependencyCheckTimeoutMs,
  });
  // A server that goes away between the two calls fails the check, not the process.
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
  } catch (err) {
    problems.push(
      `PostgreSQL is not reachable at ${hostOf(cfg.DATABASE_URL)} (DATABASE_URL): ${(err as Error).message || "no answer"}. ` +
        "Start it with: pg_ctlcluster $(ls /etc/postgresql) main start   (or: sudo service postgresql start)",
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  const redis = new Redis(cfg.REDIS_URL, {
    lazyConnect: true,
    connectTimeout: dependencyCheckTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    problems.push(
      `Redis is not reachable at ${hostOf(cfg.REDIS_URL)} (REDIS_URL): ${(err as Error).message || "no answer"}. ` +
        'Start it with: redis-server --daemonize yes --save "" --appendonly no',
    );
  } finally {
    redis.disconnect();
  }
  return problems;
}

/** Creates the database if missing, migrates it, and seeds the demo once when it is empty. */
export async function prepareDatabase(cfg: Config, log: Logger): Promise<void> {
  await ensureDatabase(cfg.DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.DATABASE_URL, 2);
  try {
    await migrate(pool, log);
    if (cfg.SEED_DEMO) await seedDemo(pool, log);
  } finally {
    await pool.end();
  }
}

class Child {
  proc: ChildProcess | undefined;
  restarts = 0;
  private consecutive = 0;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly spec: ChildSpec,
    private readonly log: Logger,
    private readonly isStopping: () => boolean,
  ) {}

  start(): void {
    // The same runtime and loader flags as ours (tsx in development, none for the built code).
    const proc = spawn(process.execPath, [...process.execArgv, process.argv[1]!, this.spec.command], {
      env: { ...process.env, ...this.spec.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    this.startedAt = Date.now();
    prefixLines(proc.stdout!, `[${this.spec.name}] `, process.stdout);
    prefixLines(proc.stderr!, `[${this.spec.name}] `, process.stderr);
    this.log.info({ event: "child_started", child: this.spec.name, pid: proc.pid }, "child started");
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        resolve();
        if (this.isStopping()) return;
        if (Date.now() - this.startedAt > healthyAfterMs) this.consecutive = 0;
        const backoffMs = Math.min(restartBackoffMsMax, restartBackoffMsBase * 2 ** this.consecutive);
        this.consecutive++;
        this.restarts++;
        this.log.warn(
          { event: "child_restart", child: this.spec.name, code, signal, restarts: this.restarts, backoffMs },
          "child exited; restarting",
        );
        this.timer = setTimeout(() => this.start(), backoffMs);
      });
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const killer = setTimeout(() => proc.kill("SIGKILL"), stopGraceMs);
    await this.exited;
    clearTimeout(killer);
  }
}

function prefixLines(from: NodeJS.ReadableStream, prefix: string, to: NodeJS.WritableStream): void {
  let buf = "";
  from.on("data", (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf("\n");
    while (i >= 0) {
      to.write(prefix + buf.slice(0, i + 1));
      buf = buf.slice(i + 1);
      i = buf.indexOf("\n");
    }
  });
  from.on("end", () => {
    if (buf) to.write(`${prefix}${buf}\n`);
  });
}

async function waitReady(url: string, timeoutMs: number, stopped: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !stopped()) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (r.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Where npm start keeps the notification service's contact key when none is configured (git-ignored). */
export const localContactKeyPath = "data/notification-contact.key";

/**
 * The key patients' contacts are sealed with on this machine: read from `path`, or made there on
 * first run (32 random bytes, base64, mode 0600; "wx", so two supervisors never write two keys).
 * Losing the file loses the stored contacts (they no longer decrypt), nothing else.
 */
export function localContactKey(path: string = localContactKeyPath): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  mkdirSync(dirname(path), { recursive: true });
  try {
    writeFileSync(path, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return readFileSync(path, "utf8").trim();
}

/** Runs until SIGINT/SIGTERM; resolves the exit code. */
export async function runSupervisor(cfg: Config): Promise<number> {
  const log = createLogger({ service: "supervisor", level: cfg.LOG_LEVEL, instance: "supervisor" });
  const problems = await checkDependencies(cfg);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`medisync: ${p}\n`);
    return 1;
  }
  try {
    await prepareDatabase(cfg, log);
  } catch (err) {
    process.stderr.write(`medisync: preparing the database failed: ${(err as Error).message}\n`);
    return 1;
  }

  // A configured key wins (children inherit it); otherwise one of this machine's own, made once.
  let contactKey: string;
  try {
    contactKey = cfg.NOTIFICATION_CONTACT_KEY ?? localContactKey();
    if (Buffer.from(contactKey, "base64").length !== 32) throw new Error("not 32 bytes of base64");
  } catch (err) {
    process.stderr.write(`medisync: reading ${localContactKeyPath} failed: ${(err as Error).message}\n`);
    return 1;
  }
  // A development CA and a certificate per child under data/certs/, made once and reused: every
  // child talks gRPC over mutual TLS, as in production (src/cli/dev-certs.ts, src/shared/tls.ts).
  const plan = planChildren(cfg);
  let certs: Awaited<ReturnType<typeof ensureCertsLocked>>;
  try {
    certs = await ensureCertsLocked(localCertsDir, localCertPlan(plan));
  } catch (err) {
    process.stderr.write(
      `medisync: making certificates in ${localCertsDir} failed: ${(err as Error).message}\n`,
    );
    return 1;
  }
  const security = mtlsSecurity(
    readTlsMaterial(certs.get("supervisor")!),
    { service: "supervisor", id: "supervisor" },
    log,
  );
  // The development identity provider: a signing key and the JWKS the gateway trusts, made once.
  if (!cfg.AUTH_JWKS_URL && !existsSync(cfg.AUTH_JWKS_FILE)) {
    try {
      ensureDevKeys(dirname(cfg.AUTH_JWKS_FILE));
    } catch (err) {
      process.stderr.write(
        `medisync: making the development signing key failed: ${(err as Error).message}\n`,
      );
      return 1;
    }
  }
  let stopping = false;
  const children = plan
    .map((spec) =>
      spec.command === "notification"
        ? { ...spec, env: { ...spec.env, NOTIFICATION_CONTACT_KEY: contactKey } }
        : spec,
    )
    .map((spec) => ({ ...spec, env: { ...spec.env, ...tlsEnv(certs.get(spec.name)!) } }))
    .map((spec) => new Child(spec, log, () => stopping));
  for (const c of children) c.start();

  const done = new Promise<number>((resolve) => {
    const stopAll = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "stopping every child");
      void Promise.all(children.map((c) => c.stop())).then(() => {
        log.info("all children stopped");
        resolve(0);
      });
    };
    process.once("SIGINT", () => stopAll("SIGINT"));
    process.once("SIGTERM", () => stopAll("SIGTERM"));
  });

  const host = cfg.HOST === "0.0.0.0" || cfg.HOST === "::" ? "127.0.0.1" : cfg.HOST;
  const base = `http://${host}:${cfg.PORT}`;
  if (await waitReady(`${base}/readyz`, readyTimeoutMs, () => stopping)) {
    await seedStock(cfg, children, log, () => stopping, security);
    process.stdout.write(`MediSync gateway: ${base}  (API docs: ${base}/docs)\n`);
  } else if (!stopping) {
    log.error({ url: `${base}/readyz`, timeoutMs: readyTimeoutMs }, "gateway did not become ready");
  }
  return done;
}
