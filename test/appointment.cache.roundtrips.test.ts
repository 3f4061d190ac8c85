// What one slot read costs Redis, per tier: an LRU hit one command (the version), a Redis-tier hit
// one command too (version and entry together), so the Redis tier is not a round trip slower than
// it must be. Counted by the server itself (its MONITOR feed, the commands on slot keys, read on a
// plain socket) on a Redis of the test's own.
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import type { Redis } from "ioredis";
import { Redis as RedisClient } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CacheTier } from "../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import { type OwnRedis, startOwnRedis } from "./support/own-redis.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

let own: OwnRedis;
let admin: Redis;
let pool: pg.Pool;
let fx: ClinicFixture;
let one: Instance;
const dates = ["2031-10-01", "2031-10-02"];

beforeAll(async () => {
  own = await startOwnRedis();
  // An LRU of one entry: reading the other date evicts it, so the next read is the Redis tier's.
  const cfg = {
    ...testConfig("cacherounds", { SLOT_CACHE_MAX_ENTRIES: "1" }),
    REDIS_URL: own.url,
  };
  await resetState(cfg);
  one = await startInstance(cfg, undefined, "rounds", { pubsub: false });
  pool = testPool(cfg);
  fx = await makeClinic(pool, dates, 4);
  admin = new RedisClient(own.url);
});
afterAll(async () => {
  admin?.disconnect();
  await pool?.end();
  if (one) await stopInstance(one);
  await own?.stop();
});

const list = (date: string) =>
  callUnary(
    one.client.listSlots.bind(one.client),
    { clinicId: fx.clinicId, date, practitionerId: "" },
    5_000,
  );

/**
 * The server's MONITOR feed on a plain socket, one command (its arguments) per callback. Not
 * ioredis's monitor(): when the server's +OK and the first monitored command arrive in one chunk,
 * ioredis reads that command as a reply and throws "Command queue state error" (a CI run saw it).
 */
async function monitorFeed(onCommand: (args: string[]) => void): Promise<{ close(): void }> {
  const socket = connect(own.port, "127.0.0.1");
  let buffered = "";
  let ok: () => void = () => undefined;
  const started = new Promise<void>((resolve, reject) => {
    ok = resolve;
    socket.once("error", reject);
  });
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\r\n"); nl >= 0; nl = buffered.indexOf("\r\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 2);
      if (line === "+OK") ok();
      // +<time> [<db> <addr>] "cmd" "arg" …: the quoted tokens, with their escapes left as they are.
      else if (line.startsWith("+")) onCommand([...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!));
    }
  });
  socket.write("MONITOR\r\n");
  await started;
  return { close: () => socket.destroy() };
}

/**
 * The commands that touched a slot key while `read` ran, by name, as the server's MONITOR feed
 * shows them (a script's own commands included). Only slot keys: the service's other loops (the
 * outbox relay) talk to the same Redis at any time.
 */
async function commandsOf(read: () => Promise<unknown>): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  const marker = `slots:end-${randomUUID()}`;
  let ended: () => void = () => undefined;
  const end = new Promise<void>((resolve) => {
    ended = resolve;
  });
  const monitor = await monitorFeed((args) => {
    if (args.includes(marker)) return ended();
    if (!args.some((a) => a.includes("slots:"))) return;
    const name = args[0]!.toLowerCase();
    seen[name] = (seen[name] ?? 0) + 1;
  });
  try {
    await read();
    // The feed is in the order the server ran commands: once this one is seen, the read's are in.
    await admin.echo(marker);
    await end;
  } finally {
    monitor.close();
  }
  return seen;
}

describe("Redis commands per slot read", () => {
  it("a Redis-tier hit and an LRU hit each cost Redis one command", async () => {
    const [d1, d2] = dates as [string, string];
    // Fill Redis for both dates (each read establishes the version key, then fills), then leave
    // d2 in the LRU and d1 only in Redis.
    for (let n = 0; n < 3; n++) {
      await list(d1);
      await list(d2);
    }
    let tier: CacheTier | undefined;
    const redisHit = await commandsOf(async () => {
      tier = (await list(d1)).tier;
    });
    expect(tier).toBe(CacheTier.CACHE_TIER_REDIS);
    expect(redisHit, JSON.stringify(redisHit)).toEqual({ mget: 1 });

    const lruHit = await commandsOf(async () => {
      tier = (await list(d1)).tier;
    });
    expect(tier).toBe(CacheTier.CACHE_TIER_LRU);
    expect(lruHit, JSON.stringify(lruHit)).toEqual({ get: 1 });
  });

  it("a read that finds the version but no entry (a booking dropped it) asks Redis once before PostgreSQL", async () => {
    const d = dates[1]!;
    await list(d);
    const slot = fx.days.get(d)![0]!;
    await callUnary(
      one.client.book.bind(one.client),
      { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
      5_000,
    );
    let tier: CacheTier | undefined;
    const miss = await commandsOf(async () => {
      tier = (await list(d)).tier;
    });
    expect(tier).toBe(CacheTier.CACHE_TIER_DB);
    // One MGET, then the fill's script (its own GET of the version and SET of the entry count as
    // commands too); no second read of the entry MGET already found missing.
    expect(miss, JSON.stringify(miss)).toEqual({ mget: 1, eval: 1, get: 1, set: 1 });
  });
});
