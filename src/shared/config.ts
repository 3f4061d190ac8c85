// Owns configuration: every environment variable MediSync reads is declared here, once, with its
// type, default and meaning. Services call loadConfig(); nothing else reads process.env.
import { z } from "zod";
import {
  type CrashpointName,
  crashpointNames,
  type FailpointName,
  failpointNames,
  isCrashpointName,
  isFailpointName,
} from "./failpoints.ts";
import { inventoryLimits } from "./validation.ts";

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
/** A comma-separated variable as its non-empty, trimmed items: every list variable reads this way. */
const commaList = z.string().transform((s) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x.length > 0),
);

const hostPortList = commaList.pipe(z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, "host:port")).min(1));

const peerList = commaList
  .pipe(z.array(z.string().regex(/^[a-z0-9-]{1,32}=[^\s:=]+:\d{1,5}$/, "id=host:port")).min(1))
  .transform((items) =>
    items.map((x) => {
      const [id, address] = x.split("=") as [string, string];
      return { id, address };
    }),
  )
  .refine((peers) => new Set(peers.map((p) => p.id)).size === peers.length, "replica ids must be unique");

const failpointList = commaList
  .pipe(
    z.array(
      z
        .string()
        .refine(isFailpointName, { message: `a failpoint name: one of ${failpointNames.join(", ")}` }),
    ),
  )
  .transform((names) => [...new Set(names)] as FailpointName[]);

const crashpointList = commaList
  .pipe(
    z.array(
      z
        .string()
        .refine(isCrashpointName, { message: `a crashpoint name: one of ${crashpointNames.join(", ")}` }),
    ),
  )
  .transform((names) => [...new Set(names)] as CrashpointName[]);

/** Every variable, its schema and what it is for. The README table is generated from this shape. */
export const envSpec = {
  LOG_LEVEL: {
    schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    doc: "pino log level",
  },
  DATABASE_URL: {
    schema: z.string().url().default("postgres://postgres@127.0.0.1:5432/medisync"),
    doc: "PostgreSQL of the appointment service (created if missing)",
  },
  REDIS_URL: {
    schema: z.string().url().default("redis://127.0.0.1:6379"),
    doc: "Redis: slot cache, pub/sub",
  },
  REDIS_KEY_PREFIX: {
    schema: z
      .string()
      .regex(/^[a-z0-9:_-]{1,40}$/)
      .default("medisync:"),
    doc: "prefix of every Redis key and channel (tests use their own)",
  },
  PORT: { schema: port.default(8080), doc: "gateway HTTP port" },
  GATEWAY_OPS_PORT: {
    schema: port.default(9400),
    doc: "gateway /healthz /readyz /metrics and /ops dashboard port (never published: it takes no token)",
  },
  HOST: { schema: z.string().min(1).default("127.0.0.1"), doc: "address the servers bind to" },
  INSTANCE_ID: {
    schema: z.string().min(1).max(64).optional(),
    doc: "name of this process in logs and metrics",
  },
  DISCOVERY: {
    schema: z.enum(["static", "redis"]).default("static"),
    doc: "how callers find appointment, medication and notification instances: static (APPOINTMENT_ADDRS, MEDICATION_ADDRS, NOTIFICATION_ADDRS; what Kubernetes Services and Fly's .internal names serve) or redis (each instance registers its address in Redis with REGISTRY_TTL_MS and refreshes it; the gateway and medication follow the registry and ignore those lists). Set it for every process alike",
  },
  REGISTRY_TTL_MS: {
    schema: positiveInt.min(300).max(60_000).default(3_000),
    doc: "DISCOVERY=redis: an instance's registry entry lives this long unless refreshed (every third of it); a dead instance drops out of the callers' lists within it plus a third",
  },
  ADVERTISE_HOST: {
    schema: z
      .string()
      .regex(/^[A-Za-z0-9.:-]{1,253}$/, "a host name or IP address")
      .optional(),
    doc: "DISCOVERY=redis: the host other processes reach this instance's gRPC port at, as registered (with the port it bound); unset: HOST, or the machine's hostname when HOST is 0.0.0.0 or ::",
  },
  TLS_CA_FILE: {
    schema: z.string().min(1).optional(),
    doc: "PEM file of the CA whose certificates the gRPC servers and clients accept (mutual TLS); unset with TLS_CERT_FILE and TLS_KEY_FILE: plaintext gRPC, allowed only on loopback (npm start makes a CA and a certificate per process in data/certs/)",
  },
  TLS_CERT_FILE: {
    schema: z.string().min(1).optional(),
    doc: "PEM certificate of this process, issued by TLS_CA_FILE's CA, naming it as spiffe://medisync/<service>/<id> in its subjectAltName (an inventory replica's id is its INVENTORY_ID)",
  },
  TLS_KEY_FILE: {
    schema: z.string().min(1).optional(),
    doc: "PEM private key of TLS_CERT_FILE",
  },
  APPOINTMENT_GRPC_PORT: { schema: port.default(50051), doc: "appointment gRPC port" },
  APPOINTMENT_OPS_PORT: { schema: port.default(9401), doc: "appointment /healthz /readyz /metrics port" },
  APPOINTMENT_ADDRS: {
    schema: hostPortList.default(["127.0.0.1:50051", "127.0.0.1:50052"]),
    doc: "comma-separated appointment gRPC addresses the gateway balances over (DISCOVERY=static)",
  },
  GRPC_DEADLINE_MS: { schema: positiveInt.max(60_000).default(2_000), doc: "deadline of every gRPC call" },
  HTTP_BODY_BYTES_MAX: {
    schema: positiveInt.max(10_485_760).default(65_536),
    doc: "largest accepted request body",
  },
  AUTH_JWKS_URL: {
    schema: z.string().url().optional(),
    doc: "JWKS URL of the identity provider whose tokens the gateway accepts (production); overrides AUTH_JWKS_FILE",
  },
  AUTH_JWKS_FILE: {
    schema: z.string().min(1).default("data/auth/jwks.json"),
    doc: "JWKS file the gateway trusts when AUTH_JWKS_URL is unset (npm start makes one, with its signing key, on first run)",
  },
  AUTH_ISSUER: {
    schema: z.string().min(1).max(512).default("medisync-dev"),
    doc: "the iss every accepted token must carry",
  },
  AUTH_AUDIENCE: {
    schema: z.string().min(1).max(512).default("medisync"),
    doc: "the aud every accepted token must carry",
  },
  AUTH_CLOCK_SKEW_MS: {
    schema: z.coerce.number().int().nonnegative().max(300_000).default(30_000),
    doc: "a token is still accepted this long past its exp (and before its nbf): clocks differ",
  },
  AUTH_TOKEN_CACHE_MAX: {
    schema: positiveInt.max(10_000_000).default(100_000),
    doc: "verified tokens the gateway remembers until they expire (a hit skips the signature check)",
  },
  MEDISYNC_TOKEN: {
    schema: z.string().min(1).optional(),
    doc: "medisync client: a bearer token of the identity provider, sent on every REST request (as --token); unset, the client mints development tokens with the key beside AUTH_JWKS_FILE",
  },
  CORS_ORIGINS: {
    schema: commaList.pipe(z.array(z.string().url()).max(64)).default([]),
    doc: "comma-separated browser origins allowed to call the API (CORS); none by default",
  },
  DB_POOL_MAX: { schema: positiveInt.max(200).default(10), doc: "PostgreSQL connections per process" },
  DB_STATEMENT_TIMEOUT_MS: {
    schema: positiveInt.max(600_000).default(10_000),
    doc: "PostgreSQL cancels any statement of the services (appointment queries, inventory snapshot saves) running longer",
  },
  REDIS_COMMAND_TIMEOUT_MS: {
    schema: positiveInt.max(10_000).default(250),
    doc: "a Redis command slower than this counts as Redis down (reads fall back to PostgreSQL)",
  },
  SLOT_CACHE_MAX_ENTRIES: { schema: positiveInt.max(10_000_000).default(10_000), doc: "in-process LRU size" },
  SLOT_CACHE_LRU_TTL_MS: { schema: positiveInt.default(60_000), doc: "in-process LRU entry lifetime" },
  GATEWAY_SLOT_CACHE_MAX_ENTRIES: {
    schema: z.coerce.number().int().nonnegative().max(10_000_000).default(10_000),
    doc: "slot answers the gateway keeps in its own LRU, each served only while its Redis version is current (0: off, every read asks the appointment service)",
  },
  GATEWAY_SLOT_CACHE_TTL_MS: {
    schema: positiveInt.default(60_000),
    doc: "longest a gateway slot answer is kept (its version is checked on every hit regardless)",
  },
  SLOT_CACHE_REDIS_TTL_SECONDS: { schema: positiveInt.default(300), doc: "Redis slot entry lifetime" },
  SLOT_CACHE_VERSION_TTL_SECONDS: {
    schema: positiveInt.default(86_400),
    doc: "Redis slot version key lifetime (keep well above SLOT_CACHE_REDIS_TTL_SECONDS); an expired key is re-read from PostgreSQL",
  },
  BOOKING_IDEMPOTENCY_WINDOW_SECONDS: {
    schema: positiveInt.default(86_400),
    doc: "a booking retried with the same Idempotency-Key within this window returns the first result; older keys are pruned",
  },
  OUTBOX_RETENTION_SECONDS: {
    schema: positiveInt.default(86_400),
    doc: "relayed appointment outbox rows are kept this long, then pruned (unrelayed rows never are)",
  },
  APPOINTMENT_PRUNE_INTERVAL_MS: {
    schema: positiveInt.default(60_000),
    doc: "how often an appointment instance prunes idempotency and outbox rows past their windows",
  },
  CACHE_EVICTION_LOG_SAMPLE: {
    schema: z.coerce.number().min(0).max(1).default(0.01),
    doc: "fraction of LRU evictions logged: the first, then one in 1/fraction (all are counted); 1 logs every one",
  },
  SEED_DEMO: { schema: bool.default(true), doc: "npm start seeds demo clinics when the database is empty" },
  APPOINTMENT_INSTANCES: {
    schema: positiveInt.max(8).default(2),
    doc: "appointment instances npm start runs (ports count up from APPOINTMENT_GRPC_PORT / _OPS_PORT)",
  },
  NOTIFICATION_DATABASE_URL: {
    schema: z.string().url().default("postgres://postgres@127.0.0.1:5432/medisync_notification"),
    doc: "PostgreSQL of the notification service: inbox, notifications, deliveries (created if missing)",
  },
  NOTIFICATION_OPS_PORT: {
    schema: port.default(9421),
    doc: "notification /healthz /readyz /metrics port",
  },
  NOTIFICATION_INSTANCES: {
    schema: positiveInt.max(8).default(1),
    doc: "notification instances npm start runs (ops ports count up from NOTIFICATION_OPS_PORT)",
  },
  NOTIFICATION_CLAIM_IDLE_MS: {
    schema: positiveInt.max(3_600_000).default(30_000),
    doc: "a stream entry pending this long with any consumer (a dead one) is claimed by another (XAUTOCLAIM)",
  },
  NOTIFICATION_DELIVERIES_MAX: {
    schema: positiveInt.max(100).default(5),
    doc: "a stream entry delivered this many times without being handled goes to the dead-letter stream",
  },
  NOTIFICATION_GRPC_PORT: { schema: port.default(50081), doc: "notification gRPC port" },
  NOTIFICATION_ADDRS: {
    schema: hostPortList.default(["127.0.0.1:50081"]),
    doc: "comma-separated notification gRPC addresses the gateway balances over (DISCOVERY=static)",
  },
  NOTIFICATION_WEBHOOK_ATTEMPTS_MAX: {
    schema: positiveInt.max(50).default(8),
    doc: "a webhook delivery is attempted this many times (exponential backoff, full jitter), then marked dead",
  },
  NOTIFICATION_WEBHOOK_BACKOFF_MS_BASE: {
    schema: positiveInt.max(3_600_000).default(30_000),
    doc: "the wait before a webhook delivery's n-th retry is random in [0, base × 2^(n-1)], capped at one hour",
  },
  NOTIFICATION_WEBHOOK_ALLOW_PRIVATE: {
    schema: bool.default(false),
    doc: "allow webhook URLs that resolve to loopback, private, link-local or unspecified addresses (tests and npm start; never in production: a webhook could reach internal services)",
  },
  NOTIFICATION_INBOX_RETENTION_SECONDS: {
    schema: positiveInt.max(365 * 86_400).default(8 * 86_400),
    doc: "inbox rows, notifications and finished webhook deliveries are pruned after this long; must exceed OUTBOX_RETENTION_SECONDS, or an event replayed after its inbox row was pruned would notify twice",
  },
  NOTIFICATION_PRUNE_INTERVAL_MS: {
    schema: positiveInt.default(60_000),
    doc: "how often a notification instance prunes rows past NOTIFICATION_INBOX_RETENTION_SECONDS",
  },
  NOTIFICATION_CONTACT_KEY: {
    schema: z
      .string()
      .refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s) && Buffer.from(s, "base64").length === 32, {
        message: "32 bytes in base64 (openssl rand -base64 32)",
      })
      .optional(),
    doc: "AES-256-GCM key (32 bytes, base64) patients' e-mail contacts are encrypted with at rest; unset: PUT /v1/patients/{id}/contact is refused and no e-mail is sent (npm start generates one in data/notification-contact.key)",
  },
  SMTP_URL: {
    schema: z
      .string()
      .url()
      .refine((s) => /^smtps?:$/.test(new URL(s).protocol), { message: "an smtp:// or smtps:// URL" })
      .optional(),
    doc: "SMTP server the notification service sends e-mail through (smtp://user:pass@host:587, smtps://…); unset: the e-mail channel is off",
  },
  NOTIFICATION_EMAIL_FROM: {
    schema: z.string().min(3).max(200).default("MediSync <no-reply@medisync.invalid>"),
    doc: "From: of the notification e-mails",
  },
  MEDICATION_DATABASE_URL: {
    schema: z.string().url().default("postgres://postgres@127.0.0.1:5432/medisync_medication"),
    doc: "PostgreSQL of the medication service: prescriptions, dispenses, outbox (created if missing)",
  },
  MEDICATION_GRPC_PORT: { schema: port.default(50071), doc: "medication gRPC port" },
  MEDICATION_OPS_PORT: { schema: port.default(9431), doc: "medication /healthz /readyz /metrics port" },
  MEDICATION_ADDRS: {
    schema: hostPortList.default(["127.0.0.1:50071"]),
    doc: "comma-separated medication gRPC addresses the gateway balances over (DISCOVERY=static)",
  },
  MEDICATION_INSTANCES: {
    schema: positiveInt.max(8).default(1),
    doc: "medication instances npm start runs (ports count up from MEDICATION_GRPC_PORT / _OPS_PORT)",
  },
  MEDICATION_SETTLE_AFTER_MS: {
    schema: positiveInt.max(3_600_000).default(3_000),
    doc: "a dispense (or a cancel's return) still in-progress after this long is finished by the recovery loop, with the same inventory request id",
  },
  MEDICATION_RECOVERY_INTERVAL_MS: {
    schema: positiveInt.max(600_000).default(1_000),
    doc: "how often the recovery loop looks for dispenses and returns left in-progress",
  },
  MEDICATION_RETRY_WINDOW_MS: {
    schema: positiveInt.max(30 * 86_400_000).default(23 * 3_600_000),
    doc: "a dispense is retried only this long after it was recorded, then marked reconcile for a person; must stay below INVENTORY_IDEMPOTENCY_WINDOW_MS (the margin covers clock skew), or a retry could deduct twice",
  },
  MEDISYNC_CRASHPOINTS: {
    schema: crashpointList.default([]),
    doc: "test-only: comma-separated steps at which a process kills itself (src/shared/failpoints.ts crashpointDocs), to prove a crash there loses nothing; never in production",
  },
  INVENTORY_ID: {
    schema: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .optional(),
    doc: "this inventory replica's id (one of INVENTORY_PEERS)",
  },
  INVENTORY_PEERS: {
    schema: peerList.default([
      { id: "inv-1", address: "127.0.0.1:50061" },
      { id: "inv-2", address: "127.0.0.1:50062" },
      { id: "inv-3", address: "127.0.0.1:50063" },
    ]),
    doc: "every inventory replica as id=host:port, comma-separated (the gateway and the replicas use it)",
  },
  INVENTORY_GRPC_PORT: {
    schema: port.default(50061),
    doc: "inventory replica gRPC port (stock API and Raft between replicas)",
  },
  INVENTORY_OPS_PORT: { schema: port.default(9411), doc: "inventory replica /healthz /readyz /metrics port" },
  INVENTORY_DATA_DIR: {
    schema: z.string().min(1).default("data/inventory"),
    doc: "where replicas keep their Raft log (one LevelDB per replica id below it)",
  },
  INVENTORY_DATABASE_URL: {
    schema: z.string().url().default("postgres://postgres@127.0.0.1:5432/medisync_inventory"),
    doc: "PostgreSQL for snapshots; each replica uses its own database, this name + _<id>",
  },
  INVENTORY_REPLICAS: {
    schema: positiveInt.max(7).default(3),
    doc: "inventory replicas npm start runs (ports count up from INVENTORY_GRPC_PORT / _OPS_PORT)",
  },
  INVENTORY_ENTRY_COMMANDS_MAX: {
    schema: positiveInt.max(inventoryLimits.entryCommandsMax).default(inventoryLimits.entryCommandsMax),
    doc: "commands a replica packs into one Raft log entry at most (1: one entry per command)",
  },
  INVENTORY_IDEMPOTENCY_WINDOW_MS: {
    schema: positiveInt.max(30 * 86_400_000).default(86_400_000),
    doc: "a stock write retried with the same request id (Idempotency-Key) within this long, by the leader's timestamps in the log, returns its first result; older ids are forgotten",
  },
  INVENTORY_IDEMPOTENCY_IDS_MAX: {
    schema: positiveInt.max(inventoryLimits.idempotencyIdsCeiling).default(1_000_000),
    doc: `request ids a replica remembers at most (at most ${inventoryLimits.idempotencyIdsCeiling}: their snapshot must fit); when full before the window passes, new stock writes get 503 idempotency-window-full (retries of remembered ids still answer)`,
  },
  INVENTORY_EVENT_RELAY_INTERVAL_MS: {
    schema: positiveInt.max(60_000).default(200),
    doc: "how often the inventory leader publishes low-stock events not yet marked published to the event stream",
  },
  GATEWAY_INVENTORY_QUEUE_COMMANDS_MAX: {
    schema: positiveInt.max(1_000_000).default(10_000),
    doc: "inventory writes the gateway holds waiting for or inside a SubmitBatch call; past it a write gets 503 overloaded with Retry-After",
  },
  AUDIT_DATABASE_URL: {
    schema: z.string().url().default("postgres://postgres@127.0.0.1:5432/medisync_audit"),
    doc: "PostgreSQL of the gateway's append-only audit trail (created if missing)",
  },
  AUDIT_BATCH_ROWS_MAX: {
    schema: positiveInt.max(50_000).default(1_000),
    doc: "audit rows one INSERT carries at most (rows that arrive while one is in flight go into the next)",
  },
  AUDIT_QUEUE_ROWS_MAX: {
    schema: positiveInt.max(1_000_000).default(20_000),
    doc: "audit rows waiting to be written at most; past it recording fails as overloaded (503 with Retry-After)",
  },
  AUDIT_WRITE_TIMEOUT_MS: {
    schema: positiveInt.max(60_000).default(2_000),
    doc: "an audit row not committed this long after it was recorded fails as unavailable (PostgreSQL down or hung); also the audit pool's statement timeout",
  },
  AUDIT_SYNCHRONOUS_COMMIT: {
    schema: bool.default(true),
    doc: "false: audit INSERTs commit without waiting for PostgreSQL's WAL flush (much less latency per request); a PostgreSQL crash can then lose the last ~0.6 s of acknowledged audit rows (docs/security.md)",
  },
  RATE_LIMIT_PATIENT_PER_MINUTE: {
    schema: positiveInt.max(1_000_000).default(600),
    doc: "requests a minute one patient (token sub, all their tokens together) may make through the gateway; past it 429 with Retry-After",
  },
  RATE_LIMIT_STAFF_PER_MINUTE: {
    schema: positiveInt.max(100_000_000).default(600_000),
    doc: "requests a minute one clinician, pharmacist or admin (token sub) may make; high, because a pharmacy till or an integration runs many requests on one staff token",
  },
  RATE_LIMIT_ADDRESS_PER_MINUTE: {
    schema: positiveInt.max(100_000_000).default(300),
    doc: "requests a minute one client address may make without a valid token (missing, bad or expired ones included); slows token guessing",
  },
  RAFT_TICK_MS: { schema: positiveInt.max(1_000).default(50), doc: "Raft tick; heartbeats go every tick" },
  RAFT_ELECTION_TICKS: {
    schema: positiveInt.min(3).max(100).default(6),
    doc: "election timeout in ticks, randomized in [n, 2n) (300–600 ms by default)",
  },
  RAFT_SNAPSHOT_EVERY_ENTRIES: {
    schema: positiveInt.default(20_000),
    doc: "a replica snapshots to PostgreSQL and compacts its log after this many applied entries",
  },
  RAFT_SNAPSHOT_KEEP_ENTRIES: {
    schema: z.coerce.number().int().nonnegative().default(5_000),
    doc: "entries kept behind a snapshot, so a briefly lagging replica catches up by log, not by snapshot",
  },
  SHUTDOWN_UNREADY_MS: {
    schema: z.coerce.number().int().nonnegative().max(60_000).default(1_000),
    doc: "on SIGTERM the gateway answers /readyz 503 but still serves for this long, so load balancers stop sending, before it stops accepting",
  },
  SHUTDOWN_DRAIN_MS: {
    schema: positiveInt.max(120_000).default(5_000),
    doc: "on SIGTERM the gateway waits this long for requests in flight before it closes their connections",
  },
  RAFT_CLUSTER_ID: {
    schema: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, "1-64 letters, digits, '.', '_' or '-'")
      .default("medisync-inventory"),
    doc: "names the inventory Raft cluster; every replica of one cluster has the same, each persists it, and Raft traffic from another cluster is refused",
  },
  LEADER_HINT_TTL_MS: {
    schema: positiveInt.max(60_000).default(1_500),
    doc: "lifetime of the Redis leader hint; the leader refreshes it every third of it",
  },
  MEDISYNC_FAILPOINTS: {
    schema: failpointList.default([]),
    doc: "comma-separated failpoints to switch on: bugs planted on purpose so jepsen-lite can show it catches them (src/shared/failpoints.ts, docs/jepsen-lite.md); never in production",
  },
} as const;

type Spec = typeof envSpec;
export type Config = { [K in keyof Spec]: z.output<Spec[K]["schema"]> };
export const envNames = Object.keys(envSpec) as (keyof Spec)[];

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly expected: string,
  ) {
    super(`invalid environment variable ${variable}: ${expected}`);
    this.name = "ConfigError";
  }
}

/** Parses the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const name of envNames) {
    const raw = env[name];
    const parsed = envSpec[name].schema.safeParse(raw === "" ? undefined : raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ConfigError(
        name,
        `${issue?.message ?? "invalid"} (got ${JSON.stringify(raw)}; ${envSpec[name].doc})`,
      );
    }
    out[name] = parsed.data;
  }
  const cfg = out as Config;
  // A retry after inventory forgot the request id would deduct a second time.
  if (cfg.MEDICATION_RETRY_WINDOW_MS >= cfg.INVENTORY_IDEMPOTENCY_WINDOW_MS) {
    throw new ConfigError(
      "MEDICATION_RETRY_WINDOW_MS",
      `must be below INVENTORY_IDEMPOTENCY_WINDOW_MS (${cfg.INVENTORY_IDEMPOTENCY_WINDOW_MS}), got ${cfg.MEDICATION_RETRY_WINDOW_MS}`,
    );
  }
  // The producers replay their outbox window after a stream loss; an inbox that forgot those events
  // first would handle them as new.
  if (cfg.NOTIFICATION_INBOX_RETENTION_SECONDS <= cfg.OUTBOX_RETENTION_SECONDS) {
    throw new ConfigError(
      "NOTIFICATION_INBOX_RETENTION_SECONDS",
      `must exceed OUTBOX_RETENTION_SECONDS (${cfg.OUTBOX_RETENTION_SECONDS}), got ${cfg.NOTIFICATION_INBOX_RETENTION_SECONDS}`,
    );
  }
  return cfg;
}

/** For entry points: a bad variable stops the process with one line naming it. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`medisync: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
