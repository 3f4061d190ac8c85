// Owns PostgreSQL plumbing shared by services: creating a database that is missing, a pool with
// bounded size and a timeout on every statement, and checking clients out so that a database that
// goes away mid-query fails the call (503, see errors.ts) instead of the process.
import pg from "pg";
import { unavailableError } from "./errors.ts";

/**
 * Creates the database named in `url` if it does not exist (connects to the `postgres` db to do so).
 * Connecting and each statement are bounded by `timeoutMs`: a server that never answers fails the
 * start with an error instead of hanging it.
 */
export async function ensureDatabase(url: string, o: { timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? statementTimeoutMsDefault;
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(name))
    throw new Error(`database name ${JSON.stringify(name)} is not allowed`);
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const client = new pg.Client({
    connectionString: admin.toString(),
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + clientTimeoutSlackMs,
  });
  // A connection that dies here fails the call (and the start), not the process.
  client.on("error", () => undefined);
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (found.rowCount === 0) {
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } catch (err) {
        // Two processes racing to create it: the loser sees duplicate_database, which is fine.
        if ((err as { code?: string }).code !== "42P04" && (err as { code?: string }).code !== "23505")
          throw err;
      }
    }
  } finally {
    await client.end();
  }
}

/** Statement timeout when the caller names none (DB_STATEMENT_TIMEOUT_MS in the services). */
export const statementTimeoutMsDefault = 10_000;
/**
 * Added to the statement timeout for the client-side query timeout: the server cancels a slow
 * statement itself, so this fires only when the server cannot answer at all (a dead socket).
 */
const clientTimeoutSlackMs = 2_000;
/** How long a checkout waits for a connection before the call fails as unavailable. */
const connectionTimeoutMs = 5_000;
/** A transaction left open by a stuck caller is ended by the server after this long. */
const idleInTransactionTimeoutMs = 30_000;

export interface PoolOptions {
  statementTimeoutMs?: number;
  /** Errors of idle clients (the server restarted under them); the pool drops those clients itself. */
  onIdleError?: (err: Error) => void;
}

/**
 * A pool with bounded size and timeouts on every query. It and each of its clients have an error
 * listener from birth: an idle client whose server goes away emits `error` on the pool, a client in
 * any other state emits it on itself, and without a listener either is an uncaught exception.
 */
export function createPool(url: string, max: number, opts: PoolOptions = {}): pg.Pool {
  const statementTimeoutMs = opts.statementTimeoutMs ?? statementTimeoutMsDefault;
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: connectionTimeoutMs,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + clientTimeoutSlackMs,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMs,
  });
  pool.on("error", (err) => opts.onIdleError?.(err));
  // Every client hears its own errors from birth to end. pg-pool takes its idle listener off when
  // it hands a client out, and withClient's own listener goes on one promise turn later: a 57P01
  // parsed from the same chunk as the ReadyForQuery that freed the client falls in between, and an
  // 'error' with no listener kills the process. Swallowing it here loses nothing: the error marks
  // the client unqueryable, the next query on it rejects, and release() discards it.
  pool.on("connect", (client) => client.on("error", () => undefined));
  return pool;
}

/**
 * Runs `fn` with a checked-out client. A client whose connection dies while checked out emits
 * `error` (createPool's listener keeps that from killing the process); this one records it, and a
 * client that failed this way is released with the error, so the pool discards it instead of
 * handing a dead connection to the next caller.
 */
export async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken ??= err;
  };
  client.on("error", onError);
  try {
    return await fn(client);
  } catch (err) {
    // A connection-level failure (terminated, timed out) leaves the client unfit to reuse.
    if (unavailableError(err)) broken ??= err as Error;
    throw err;
  } finally {
    client.removeListener("error", onError);
    // pg-pool puts its idle listener back on release; a late error after that is the pool's.
    client.release(broken);
  }
}

/** `fn` inside BEGIN … COMMIT on one client; any failure rolls back (if the connection still can). */
export function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query("BEGIN");
    try {
      const out = await fn(client);
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  });
}
