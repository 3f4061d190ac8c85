// Owns PostgreSQL plumbing shared by services: creating a database that is missing, and a pool
// with bounded size and statement timeouts.
import pg from "pg";

/** Creates the database named in `url` if it does not exist (connects to the `postgres` db to do so). */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(name))
    throw new Error(`database name ${JSON.stringify(name)} is not allowed`);
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString() });
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

export function createPool(url: string, max: number): pg.Pool {
  return new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 5_000,
    statement_timeout: 10_000,
    idle_in_transaction_session_timeout: 30_000,
  });
}
