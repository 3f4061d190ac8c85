// Owns snapshot storage in PostgreSQL: one table per replica database, the newest snapshots kept
// (older ones deleted after a newer one is committed), each saved in one transaction so a crash
// leaves either the old or the new snapshot, never half of one. PostgreSQL going away fails a save
// (the node retries it with backoff), never the process: the pool and every checked-out client
// have an error listener, and every statement has a timeout.
import pg from "pg";

export interface SnapshotMeta {
  index: number;
  term: number;
  /** Membership at `index`, so a restored replica knows its peers. */
  voters: string[];
  learners: string[];
  /** Members' addresses (those that joined at run time), so they survive the log's compaction. */
  addresses?: Record<string, string>;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/** Snapshots kept: the newest, plus one in case the newest is being streamed to a follower. */
export const snapshotsKept = 2;

import { snapshotBytesMax } from "./limits.ts";

export { snapshotBytesMax };
/** Statement timeout when the caller names none. */
export const snapshotStatementTimeoutMsDefault = 10_000;
/** Added to the statement timeout for the client-side timeout, which fires only on a dead socket. */
const clientTimeoutSlackMs = 2_000;
const connectionTimeoutMs = 5_000;

export interface SnapshotStoreOptions {
  statementTimeoutMs?: number;
  /** Errors of idle clients (the server went away); the pool drops those clients itself. */
  onIdleError?: (err: Error) => void;
}

export class PgSnapshotStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly table: string,
  ) {}

  /** `name` keeps replicas that share a database apart (one table each). */
  static async open(
    url: string,
    name = "raft_snapshots",
    opts: SnapshotStoreOptions = {},
  ): Promise<PgSnapshotStore> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name))
      throw new Error(`snapshot table name ${JSON.stringify(name)} not allowed`);
    const statementTimeoutMs = opts.statementTimeoutMs ?? snapshotStatementTimeoutMsDefault;
    const pool = new pg.Pool({
      connectionString: url,
      max: 2,
      connectionTimeoutMillis: connectionTimeoutMs,
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + clientTimeoutSlackMs,
    });
    // Without a listener, an idle client whose server restarts is an uncaught exception.
    pool.on("error", (err) => opts.onIdleError?.(err));
    await pool.query(
      `CREATE TABLE IF NOT EXISTS ${name} (
         idx bigint PRIMARY KEY,
         term bigint NOT NULL,
         voters text[] NOT NULL,
         learners text[] NOT NULL,
         data bytea NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now())`,
    );
    // Members' addresses came later than the table: stores made before gain the column (null there).
    await pool.query(`ALTER TABLE ${name} ADD COLUMN IF NOT EXISTS addresses jsonb`);
    return new PgSnapshotStore(pool, name);
  }

  async save(s: Snapshot): Promise<void> {
    if (s.data.byteLength > snapshotBytesMax)
      throw new Error(`snapshot of ${s.data.byteLength} bytes over ${snapshotBytesMax}`);
    const client = await this.pool.connect();
    // pg-pool takes its listener off a checked-out client, and a client whose connection dies
    // emits `error` even while its query is being rejected: ours keeps that off uncaughtException.
    let broken: Error | undefined;
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO ${this.table} (idx, term, voters, learners, data, addresses) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (idx) DO NOTHING`,
        [
          s.meta.index,
          s.meta.term,
          s.meta.voters,
          s.meta.learners,
          Buffer.from(s.data),
          s.meta.addresses ? JSON.stringify(s.meta.addresses) : null,
        ],
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
      client.removeListener("error", onError);
      // A broken client is discarded by the pool rather than handed to the next save.
      client.release(broken);
    }
  }

  async latest(): Promise<Snapshot | undefined> {
    const r = await this.pool.query<{
      idx: string;
      term: string;
      voters: string[];
      learners: string[];
      data: Buffer;
      addresses: Record<string, string> | null;
    }>(`SELECT idx, term, voters, learners, data, addresses FROM ${this.table} ORDER BY idx DESC LIMIT 1`);
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      meta: {
        index: Number(row.idx),
        term: Number(row.term),
        voters: row.voters,
        learners: row.learners,
        ...(row.addresses ? { addresses: row.addresses } : {}),
      },
      data: new Uint8Array(row.data),
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
