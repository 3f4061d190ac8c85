// Owns service discovery through Redis (DISCOVERY=redis): every appointment, medication and
// notification instance registers its advertised gRPC address with a TTL and refreshes it every
// third of it; the gateway (and medication, for appointment) watch the registry and hand each of
// their clients the live addresses; an instance that stops refreshing drops out when its TTL runs
// out, one that shuts down gracefully withdraws at once.
//
// Layout, per service: a sorted set `<prefix>registry:{<service>}:expiry` of instance ids scored by
// their expiry time, and a hash `…:info` of id → JSON {id, address, startedAt}. Why not a key per
// instance with SET PX and SCAN: SCAN walks the whole keyspace (the slot cache's keys too) on every
// poll of every watcher. Why not a plain set of ids: its members outlive the instances. Here every
// write and every read is one Lua script that first removes the expired ids from both (nothing
// dead is ever returned, nothing dead piles up), and expiry is reckoned by Redis's own clock (TIME)
// on both sides, so the clocks of the instances and the gateways may disagree. Both keys expire a
// TTL after the last registration, so a service whose instances are all gone leaves nothing.
//
// Redis down: a watcher keeps the last list it read and logs once per outage; a registrar keeps
// trying every third of the TTL and registers again the moment the connection is back. A read that
// finds no instance at all keeps the last list too (an empty list can serve nothing, and it is what
// a Redis restarted without its data looks like until the instances re-register). Anyone who can
// write to Redis can add an address, but not impersonate a service: every call is mutual TLS and
// the client checks the server certificate's service (src/shared/tls.ts).
import { hostname } from "node:os";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import type { Config } from "./config.ts";

export const discoverableServices = ["appointment", "medication", "notification"] as const;
export type DiscoverableService = (typeof discoverableServices)[number];

/** One live instance as the registry holds it. */
export interface RegisteredInstance {
  id: string;
  address: string;
  /** ISO time the instance started, by its own clock. */
  startedAt: string;
  /** Time left until its entry expires unless refreshed, by Redis's clock at the read. */
  expiresInMs: number;
}

export function registryKeys(keyPrefix: string, service: string): { expiry: string; info: string } {
  // The hash tag keeps both keys of a service in one slot, should the Redis be a cluster.
  return {
    expiry: `${keyPrefix}registry:{${service}}:expiry`,
    info: `${keyPrefix}registry:{${service}}:info`,
  };
}

/** An instance refreshes its entry this often: a third of the TTL, so two refreshes may be lost. */
export function refreshIntervalMs(ttlMs: number): number {
  return Math.max(1, Math.floor(ttlMs / 3));
}

// Redis's clock in ms, then the expired ids out of both keys: shared by every script.
const nowAndPrune = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
end
`;

/** KEYS: expiry, info. ARGV: id, entry JSON, ttl ms. */
const registerScript = `${nowAndPrune}
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return now
`;

/** KEYS: expiry, info. Returns now, then id, expiry, entry JSON for each live instance. */
const listScript = `${nowAndPrune}
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = { now }
for i = 1, #live, 2 do
  local info = redis.call('HGET', KEYS[2], live[i])
  if info then
    table.insert(out, live[i])
    table.insert(out, live[i + 1])
    table.insert(out, info)
  end
end
return out
`;

/** KEYS: expiry, info. ARGV: id. */
const withdrawScript = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

const hostPort = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;
const Entry = z.object({
  id: z.string().min(1).max(128),
  address: z.string().max(300).regex(hostPort),
  startedAt: z.string().max(64),
});

export interface RegistryConnection {
  redis: Redis;
  keyPrefix: string;
}

/** Writes (or refreshes) one instance's entry for ttlMs. */
export async function announce(
  r: RegistryConnection,
  service: string,
  entry: { id: string; address: string; startedAt: string },
  ttlMs: number,
): Promise<void> {
  const k = registryKeys(r.keyPrefix, service);
  await r.redis.eval(registerScript, 2, k.expiry, k.info, entry.id, JSON.stringify(entry), String(ttlMs));
}

/** Removes one instance's entry now (graceful shutdown). */
export async function withdraw(r: RegistryConnection, service: string, id: string): Promise<void> {
  const k = registryKeys(r.keyPrefix, service);
  await r.redis.eval(withdrawScript, 2, k.expiry, k.info, id);
}

/** The live instances of a service, by id; entries that do not parse are left out and counted. */
export async function listInstances(
  r: RegistryConnection,
  service: string,
): Promise<{ instances: RegisteredInstance[]; malformed: number }> {
  const k = registryKeys(r.keyPrefix, service);
  const reply = (await r.redis.eval(listScript, 2, k.expiry, k.info)) as (string | number)[];
  const now = Number(reply[0]);
  const instances: RegisteredInstance[] = [];
  let malformed = 0;
  for (let i = 1; i + 2 < reply.length; i += 3) {
    let parsed: z.infer<typeof Entry> | undefined;
    try {
      const p = Entry.safeParse(JSON.parse(String(reply[i + 2])));
      if (p.success && p.data.id === String(reply[i])) parsed = p.data;
    } catch {
      // not JSON: counted below
    }
    if (!parsed) {
      malformed++;
      continue;
    }
    instances.push({ ...parsed, expiresInMs: Math.max(0, Number(reply[i + 1]) - now) });
  }
  instances.sort((a, b) => a.id.localeCompare(b.id));
  return { instances, malformed };
}

/** host:port other processes reach this instance's gRPC server at (ADVERTISE_HOST, or HOST). */
export function advertisedAddress(cfg: Pick<Config, "ADVERTISE_HOST" | "HOST">, port: number): string {
  const wildcard = cfg.HOST === "0.0.0.0" || cfg.HOST === "::" || cfg.HOST === "[::]";
  const host = cfg.ADVERTISE_HOST ?? (wildcard ? hostname() : cfg.HOST);
  return `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
}

/** A failure is logged once per outage; the first lines before Redis ever answered are quiet. */
class OutageLog {
  private down = false;
  private everUp = false;
  private readonly since = Date.now();

  constructor(
    private readonly log: Logger,
    private readonly fields: Record<string, string>,
    private readonly quietMs: number,
  ) {}

  failed(err: unknown, what: string): void {
    if (this.down) return;
    if (!this.everUp && Date.now() - this.since < this.quietMs) return;
    this.down = true;
    this.log.warn({ ...this.fields, err: (err as Error).message }, what);
  }

  ok(what: string): void {
    if (this.down) this.log.info(this.fields, what);
    this.down = false;
    this.everUp = true;
  }
}

export interface Registration {
  readonly id: string;
  readonly address: string;
  /** Stops refreshing and withdraws the entry (best effort: unwithdrawn, it expires in a TTL). */
  stop(): Promise<void>;
}

/** Registers an instance now and keeps it registered until stop(). */
export function register(o: {
  redis: Redis;
  keyPrefix: string;
  service: DiscoverableService;
  id: string;
  address: string;
  ttlMs: number;
  log: Logger;
}): Registration {
  const entry = { id: o.id, address: o.address, startedAt: new Date().toISOString() };
  const outage = new OutageLog(o.log, { service: o.service, registryId: o.id }, o.ttlMs);
  let stopped = false;
  let announced = false;
  const refresh = async () => {
    if (stopped) return;
    try {
      await announce(o, o.service, entry, o.ttlMs);
      if (!announced) o.log.info({ service: o.service, address: o.address, ttlMs: o.ttlMs }, "registered");
      announced = true;
      outage.ok("registry reachable again: registered");
    } catch (err) {
      outage.failed(err, "registry unreachable: cannot refresh this instance's entry; retrying");
    }
  };
  // Registered again as soon as a lost connection is back, not a refresh interval later.
  const onReady = () => void refresh();
  o.redis.on("ready", onReady);
  const timer = setInterval(() => void refresh(), refreshIntervalMs(o.ttlMs));
  timer.unref();
  void refresh();
  return {
    id: o.id,
    address: o.address,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      o.redis.off("ready", onReady);
      await withdraw(o, o.service, o.id).catch(() => undefined);
    },
  };
}

/** What a watcher last saw of a service, for /v1/cluster/services. */
export interface ServiceView {
  service: DiscoverableService;
  source: "redis" | "static";
  /** When the registry last answered (redis); null before the first answer and for static. */
  readAt: string | null;
  /** The last read failed: the list is the last one read. */
  stale: boolean;
  instances: { id: string | null; address: string; startedAt: string | null; expiresInMs: number | null }[];
}

/** Polls one service's registry entries every third of the TTL and reports address changes. */
export class ServiceWatcher {
  private known: RegisteredInstance[] = [];
  private readAtMs = 0;
  private stale = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private readonly outage: OutageLog;
  private warnedMalformed = false;
  private keptOnEmpty = false;
  private readonly onReady = () => void this.refresh();

  constructor(
    private readonly o: {
      redis: Redis;
      keyPrefix: string;
      service: DiscoverableService;
      ttlMs: number;
      log: Logger;
      onChange: (addresses: string[]) => void;
    },
  ) {
    this.outage = new OutageLog(o.log, { service: o.service }, o.ttlMs);
  }

  start(): void {
    this.o.redis.on("ready", this.onReady);
    this.timer = setInterval(() => void this.refresh(), refreshIntervalMs(this.o.ttlMs));
    this.timer.unref();
    void this.refresh();
  }

  /** One read now (polls never overlap: a call during one waits for it). */
  refresh(): Promise<void> {
    this.inFlight ??= this.read().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async read(): Promise<void> {
    let got: Awaited<ReturnType<typeof listInstances>>;
    try {
      got = await listInstances(this.o, this.o.service);
    } catch (err) {
      this.stale = true;
      this.outage.failed(err, "registry unreachable: keeping the last known instances");
      return;
    }
    this.outage.ok("registry reachable again");
    this.stale = false;
    this.readAtMs = Date.now();
    if (got.malformed > 0 && !this.warnedMalformed) {
      this.warnedMalformed = true;
      this.o.log.warn({ service: this.o.service, malformed: got.malformed }, "registry entries ignored");
    }
    if (got.instances.length === 0 && this.known.length > 0) {
      // Nothing to route to either way; the last list may still be right (a Redis that lost its data).
      if (!this.keptOnEmpty)
        this.o.log.warn({ service: this.o.service }, "registry lists no instance: keeping the last");
      this.keptOnEmpty = true;
      this.stale = true;
      return;
    }
    this.keptOnEmpty = false;
    const before = new Set(this.known.map((i) => i.address));
    this.known = got.instances;
    const after = new Set(got.instances.map((i) => i.address));
    const added = [...after].filter((a) => !before.has(a));
    const removed = [...before].filter((a) => !after.has(a));
    if (added.length === 0 && removed.length === 0) return;
    this.o.log.info({ service: this.o.service, added, removed }, "instances changed");
    this.o.onChange([...after]);
  }

  /** The instances of the last read, their expiry counted down since it. */
  instances(): RegisteredInstance[] {
    const elapsed = Date.now() - this.readAtMs;
    return this.known.map((i) => ({ ...i, expiresInMs: Math.max(0, i.expiresInMs - elapsed) }));
  }

  view(): ServiceView {
    return {
      service: this.o.service,
      source: "redis",
      readAt: this.readAtMs ? new Date(this.readAtMs).toISOString() : null,
      stale: this.stale,
      instances: this.instances().map(({ id, address, startedAt, expiresInMs }) => ({
        id,
        address,
        startedAt,
        expiresInMs,
      })),
    };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.o.redis.off("ready", this.onReady);
  }
}

/** What a client of a discoverable service offers the registry: the live addresses, as they change. */
export interface AddressTarget {
  setAddresses(addresses: readonly string[]): unknown;
}

export interface Discovery {
  /** Each watched service's instances: the registry's, or the static addresses. */
  view(): ServiceView[];
  stop(): void;
}

const staticAddressesOf = (cfg: Config, service: DiscoverableService): string[] =>
  service === "appointment"
    ? cfg.APPOINTMENT_ADDRS
    : service === "medication"
      ? cfg.MEDICATION_ADDRS
      : cfg.NOTIFICATION_ADDRS;

/** The addresses a client starts with: the configured ones, or none while the registry is to tell. */
export function startingAddresses(cfg: Config, service: DiscoverableService): string[] {
  return cfg.DISCOVERY === "redis" ? [] : staticAddressesOf(cfg, service);
}

/** DISCOVERY=redis: watches each target's service and keeps its addresses current; static: a view. */
export function discover(
  cfg: Config,
  o: { redis: Redis; log: Logger; targets: Partial<Record<DiscoverableService, AddressTarget>> },
): Discovery {
  const services = discoverableServices.filter((s) => o.targets[s]);
  if (cfg.DISCOVERY !== "redis") {
    return {
      view: () =>
        services.map((service) => ({
          service,
          source: "static" as const,
          readAt: null,
          stale: false,
          instances: staticAddressesOf(cfg, service).map((address) => ({
            id: null,
            address,
            startedAt: null,
            expiresInMs: null,
          })),
        })),
      stop: () => undefined,
    };
  }
  const watchers = services.map(
    (service) =>
      new ServiceWatcher({
        redis: o.redis,
        keyPrefix: cfg.REDIS_KEY_PREFIX,
        service,
        ttlMs: cfg.REGISTRY_TTL_MS,
        log: o.log,
        onChange: (addresses) => o.targets[service]!.setAddresses(addresses),
      }),
  );
  for (const w of watchers) w.start();
  return {
    view: () => watchers.map((w) => w.view()),
    stop: () => {
      for (const w of watchers) w.stop();
    },
  };
}

/** DISCOVERY=redis: registers this instance's gRPC address until stop(); static: nothing to do. */
export function registerInstance(
  cfg: Config,
  o: { redis: Redis; log: Logger; service: DiscoverableService; grpcPort: number },
): Registration | undefined {
  if (cfg.DISCOVERY !== "redis") return undefined;
  return register({
    redis: o.redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    service: o.service,
    // Unique across machines when INSTANCE_ID is unset (pids repeat from host to host).
    id: cfg.INSTANCE_ID ?? `${o.service}-${hostname()}-${process.pid}`,
    address: advertisedAddress(cfg, o.grpcPort),
    ttlMs: cfg.REGISTRY_TTL_MS,
    log: o.log,
  });
}
