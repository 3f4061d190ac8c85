// Against the real PostgreSQL, in a database of its own.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PgSnapshotStore } from "./pg-snapshots.ts";

const base = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
// TEST_NS (see test/support/services.ts) keeps parallel checkouts apart; raft/ imports nothing from test/.
const ns = (process.env.TEST_NS ?? "").replace(/[^a-z0-9_]/gi, "_").toLowerCase();
const db = ns ? `medisync_test_${ns}_raft_snapshots` : "medisync_test_raft_snapshots";
const url = `${base}/${db}`;

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE "${db}"`);
  await admin.end();
});

const snap = (index: number) => ({
  meta: { index, term: 1, voters: ["n1"], learners: [] },
  data: new Uint8Array([index]),
});

async function until(ok: () => Promise<boolean>, boundMs = 10_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let store: PgSnapshotStore;
afterAll(async () => {
  await store?.close();
});

describe("PgSnapshotStore", () => {
  it("keeps members' addresses, and opens a table made before the addresses column", async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(
      "CREATE TABLE snap_old (idx bigint PRIMARY KEY, term bigint NOT NULL, voters text[] NOT NULL, learners text[] NOT NULL, data bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    );
    await c.query(
      "INSERT INTO snap_old (idx, term, voters, learners, data) VALUES (5, 1, '{n1}', '{}', '\\x05')",
    );
    await c.end();
    const old = await PgSnapshotStore.open(url, "snap_old");
    expect((await old.latest())?.meta).toEqual({ index: 5, term: 1, voters: ["n1"], learners: [] });
    const addresses = { n4: "n4.example:50061" };
    await old.save({
      meta: { index: 9, term: 2, voters: ["n1"], learners: ["n4"], addresses },
      data: new Uint8Array([9]),
    });
    expect((await old.latest())?.meta).toEqual({
      index: 9,
      term: 2,
      voters: ["n1"],
      learners: ["n4"],
      addresses,
    });
    await old.close();
  });

  it("returns the newest snapshot and keeps only the newest two", async () => {
    store = await PgSnapshotStore.open(url, "snap_n1");
    expect(await store.latest()).toBeUndefined();
    for (const index of [10, 20, 30]) {
      await store.save({
        meta: { index, term: index / 10, voters: ["n1", "n2", "n3"], learners: [] },
        data: new Uint8Array([index, 1, 2]),
      });
    }
    const latest = await store.latest();
    expect(latest?.meta).toEqual({ index: 30, term: 3, voters: ["n1", "n2", "n3"], learners: [] });
    expect([...latest!.data]).toEqual([30, 1, 2]);
    const other = await PgSnapshotStore.open(url, "snap_n2");
    expect(await other.latest()).toBeUndefined();
    await other.close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const n = await c.query("SELECT count(*)::int AS n FROM snap_n1");
    await c.end();
    expect(n.rows[0].n).toBe(2);
  });

  it("survives its connections being killed, idle or mid-save, and saves again after", async () => {
    let idleErrors = 0;
    const s = await PgSnapshotStore.open(url, "snap_kill", {
      statementTimeoutMs: 5_000,
      onIdleError: () => idleErrors++,
    });
    const admin = new pg.Client({ connectionString: url });
    const locker = new pg.Client({ connectionString: url });
    await admin.connect();
    await locker.connect();
    const lockerPid = (await locker.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
    try {
      await s.save(snap(1));
      // Idle pooled clients killed (what a PostgreSQL restart does): not the process's problem.
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid NOT IN (pg_backend_pid(), $2)",
        [db, lockerPid],
      );
      // The pool must have dropped its killed idle client before the next save: a backend that is
      // slow to die (a loaded machine) otherwise takes that save's BEGIN and fails it at once, so
      // no save ever waits on the lock below (CI lost this race).
      await until(async () => idleErrors > 0);
      // Mid-save: the save waits on our lock, then its backend is killed under it.
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE snap_kill IN ACCESS EXCLUSIVE MODE");
      const saving = s.save(snap(2)).then(
        () => "saved",
        (err: Error) => err.message,
      );
      await until(async () => {
        const r = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2`,
          [db, lockerPid],
        );
        return (r.rowCount ?? 0) > 0;
      });
      expect(await saving).toMatch(/terminat/i);
      await locker.query("ROLLBACK");
      await s.save(snap(3));
      expect((await s.latest())?.meta.index).toBe(3);
    } finally {
      await locker.end();
      await admin.end();
      await s.close();
    }
  });

  it("bounds every statement by its timeout", async () => {
    const s = await PgSnapshotStore.open(url, "snap_slow", { statementTimeoutMs: 300 });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE snap_slow IN ACCESS EXCLUSIVE MODE");
    // Released in any case, so a store without a timeout finishes (and fails the assertion) too.
    const release = setTimeout(() => void locker.query("ROLLBACK"), 8_000);
    try {
      const t0 = Date.now();
      const outcome = await s.save(snap(1)).then(
        () => "saved",
        (err: { code?: string }) => err.code,
      );
      expect(outcome).toBe("57014");
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      clearTimeout(release);
      await locker.query("ROLLBACK").catch(() => undefined);
      await locker.end();
      await s.close();
    }
  });

  it("refuses a table name that could inject SQL", async () => {
    await expect(PgSnapshotStore.open(url, "x; DROP TABLE y")).rejects.toThrow(/not allowed/);
  });
});
