// Owns snapshot storage in PostgreSQL: one table per replica database, the newest snapshots kept
// (older ones deleted after a newer one is committed), each saved in one transaction so a crash
// leaves either the old or the new snapshot, never half of one.
import pg from "pg";

export interface SnapshotMeta {
  index: number;
  term: number;
  /** Membership at `index`, so a restored replica knows its peers. */
  voters: string[];
  learners: string[];
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/** Snapshots kept: the newest, plus one in case the newest is being streamed to a follower. */
export const snapshotsKept = 2;
/** Largest snapshot accepted: beyond this the state machine needs chunked storage. */
export const snapshotBytesMax = 512 * 1024 * 1024;

export class PgSnapshotStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly table: string,
  ) {}

  /** `name` keeps replicas that share a database apart (one table each). */
  static async open(url: string, name = "raft_snapshots"): Promise<PgSnapshotStore> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name))
      throw new Error(`snapshot table name ${JSON.stringify(name)} not allowed`);
    const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 5_000 });
    await pool.query(
      `CREATE TABLE IF NOT EXISTS ${name} (
         idx bigint PRIMARY KEY,
         term bigint NOT NULL,
         voters text[] NOT NULL,
         learners text[] NOT NULL,
         data bytea NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now())`,
    );
    return new PgSnapshotStore(pool, name);
  }

  async save(s: Snapshot): Promise<void> {
    if (s.data.byteLength > snapshotBytesMax)
      throw new Error(`snapshot of ${s.data.byteLength} bytes over ${snapshotBytesMax}`);
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO ${this.table} (idx, term, voters, learners, data) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (idx) DO NOTHING`,
        [s.meta.index, s.meta.term, s.meta.voters, s.meta.learners, Buffer.from(s.data)],
      );
      await client.query(
        `DELETE FROM ${this.table} WHERE idx NOT IN (SELECT idx FROM ${this.table} ORDER BY idx DESC LIMIT $1)`,
        [snapshotsKept],
      );
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async latest(): Promise<Snapshot | undefined> {
    const r = await this.pool.query<{
      idx: string;
      term: string;
      voters: string[];
      learners: string[];
      data: Buffer;
    }>(`SELECT idx, term, voters, learners, data FROM ${this.table} ORDER BY idx DESC LIMIT 1`);
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      meta: { index: Number(row.idx), term: Number(row.term), voters: row.voters, learners: row.learners },
      data: new Uint8Array(row.data),
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
