// Owns running a service's schema migrations: in one transaction under an advisory lock (one key
// per service), so instances starting together apply each version exactly once, in order. Each
// service owns its list of migrations; this owns how they run.
import type pg from "pg";
import type { Logger } from "pino";
import { inTransaction } from "./pg.ts";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Applies the migrations not applied yet; returns how many it applied. */
export async function runMigrations(
  pool: pg.Pool,
  log: Logger,
  service: { name: string; lockKey: number; migrations: readonly Migration[] },
): Promise<number> {
  return inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [service.lockKey]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const done = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
    const applied = new Set(done.rows.map((r) => r.version));
    let count = 0;
    for (const m of service.migrations) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [
        m.version,
        m.name,
      ]);
      log.info({ service: service.name, version: m.version }, "migration applied");
      count++;
    }
    return count;
  });
}
