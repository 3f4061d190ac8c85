// Owns running the notification schema migrations under an advisory lock, so instances starting
// together apply each version exactly once.
import type pg from "pg";
import type { Logger } from "pino";
import { inTransaction } from "../shared/pg.ts";
import { migrations } from "./migrations.ts";

const lockKey = 0x6e6f7469; // "noti"

export async function migrate(pool: pg.Pool, log: Logger): Promise<number> {
  return inTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [lockKey]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const done = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
    const applied = new Set(done.rows.map((r) => r.version));
    let count = 0;
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [
        m.version,
        m.name,
      ]);
      log.info({ version: m.version }, "notification migration applied");
      count++;
    }
    return count;
  });
}
