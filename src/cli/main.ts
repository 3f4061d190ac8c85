#!/usr/bin/env node
// Owns the entry points: `medisync <service>` starts one process of MediSync; `supervisor` runs them
// all on one machine (what `npm start` does).
import { startAppointmentService } from "../appointment/server.ts";
import { runGateway } from "../gateway/server.ts";
import { startInventoryReplica } from "../inventory/server.ts";
import { loadConfigOrExit } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { Shutdown } from "../shared/shutdown.ts";
import { prepareDatabase, runSupervisor } from "./supervisor.ts";

/** `prepare` creates, migrates and seeds the database once (containers run it before the services). */
export const commands = ["gateway", "appointment", "inventory", "prepare", "supervisor"] as const;
type Command = (typeof commands)[number];

const usage = `usage: medisync <${commands.join("|")}>`;

async function main(argv: string[]): Promise<void> {
  const command = argv[0] as Command | undefined;
  if (!command || !commands.includes(command)) {
    process.stderr.write(`${usage}\n`);
    process.exit(2);
  }
  const cfg = loadConfigOrExit();
  if (command === "supervisor") {
    process.exitCode = await runSupervisor(cfg);
    return;
  }
  if (command === "prepare") {
    await prepareDatabase(
      cfg,
      createLogger({ service: "prepare", level: cfg.LOG_LEVEL, instance: "prepare" }),
    );
    return;
  }
  const instance = cfg.INSTANCE_ID ?? (command === "inventory" ? cfg.INVENTORY_ID : undefined);
  const log = createLogger({ service: command, level: cfg.LOG_LEVEL, ...(instance ? { instance } : {}) });
  const shutdown = new Shutdown(log);
  shutdown.onSignals();
  try {
    if (command === "gateway") {
      const gw = await runGateway(cfg, log);
      shutdown.add("gateway", () => gw.close());
    } else if (command === "inventory") {
      const svc = await startInventoryReplica(cfg, log);
      shutdown.add("inventory", () => svc.close());
    } else {
      const svc = await startAppointmentService(cfg, log);
      shutdown.add("appointment", () => svc.close());
    }
  } catch (err) {
    log.fatal({ err }, "failed to start");
    process.exit(1);
  }
  // A crash must not leave a half-working process behind: log it and exit so the supervisor restarts.
  process.on("uncaughtException", (err) => {
    log.fatal({ err }, "uncaught exception");
    process.exit(1);
  });
  process.on("unhandledRejection", (err) => {
    log.fatal({ err }, "unhandled rejection");
    process.exit(1);
  });
}

await main(process.argv.slice(2));
