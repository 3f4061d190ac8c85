// Against the real PostgreSQL, in a database of its own.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PgSnapshotStore } from "./pg-snapshots.ts";

const base = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const url = `${base}/medisync_test_raft_snapshots`;

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS "medisync_test_raft_snapshots" WITH (FORCE)');
  await admin.query('CREATE DATABASE "medisync_test_raft_snapshots"');
  await admin.end();
});

let store: PgSnapshotStore;
afterAll(async () => {
  await store?.close();
});

describe("PgSnapshotStore", () => {
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

  it("refuses a table name that could inject SQL", async () => {
    await expect(PgSnapshotStore.open(url, "x; DROP TABLE y")).rejects.toThrow(/not allowed/);
  });
});
