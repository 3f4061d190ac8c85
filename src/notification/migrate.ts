// Owns which migrations the notification database runs, under its own advisory lock key.
import type pg from "pg";
import type { Logger } from "pino";
import { runMigrations } from "../shared/migrate.ts";
import { migrations } from "./migrations.ts";

const lockKey = 0x6e6f7469; // "noti"

export function migrate(pool: pg.Pool, log: Logger): Promise<number> {
  return runMigrations(pool, log, { name: "notification", lockKey, migrations });
}
