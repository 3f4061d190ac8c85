#!/usr/bin/env node
// Owns the entry points: `medisync <service>` starts one process of MediSync; `supervisor` runs them
// all on one machine (what `npm start` does).
import { startAppointmentService } from "../appointment/server.ts";
import { runGateway } from "../gateway/server.ts";
import { startInventoryReplica } from "../inventory/server.ts";
import { startMedicationService } from "../medication/server.ts";
import { startNotificationService } from "../notification/server.ts";
import { loadConfigOrExit } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { closeReserveMs, Shutdown } from "../shared/shutdown.ts";
import { type Command, commands } from "./commands.ts";
import { prepareDatabase, runSupervisor } from "./supervisor.ts";

const usage = `usage: medisync <${commands.join("|")}>`;

async function main(argv: string[]): Promise<void> {
  const command = argv[0] as Command | undefined;
  if (!command || !commands.includes(command)) {
    process.stderr.write(`${usage}\n`);
    process.exit(2);
  }
  if (command === "client") {
    // Its flags come from argv; it needs none of the services' configuration to start.
    const { runClient } = await import("../client/main.ts");
    process.exitCode = await runClient(argv.slice(1));
    return;
  }
  const cfg = loadConfigOrExit();
  if (command === "supervisor") {
    process.exitCode = await runSupervisor(cfg);
    return;
  }
  if (command === "token") {
    const { runToken } = await import("./token.ts");
    process.exitCode = await runToken(argv.slice(1), cfg);
    return;
  }
  if (command === "certs") {
    const { writeCerts } = await import("./dev-certs-command.ts");
    process.exitCode = await writeCerts(argv.slice(1), cfg);
    return;
  }
  if (command === "handover") {
    const { handover } = await import("../inventory/handover.ts");
    await handover(cfg, createLogger({ service: "inventory", level: cfg.LOG_LEVEL, instance: "handover" }));
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
  const shutdown = new Shutdown(log, cfg.SHUTDOWN_UNREADY_MS + cfg.SHUTDOWN_DRAIN_MS + closeReserveMs);
  shutdown.onSignals();
  try {
    if (command === "gateway") {
      const gw = await runGateway(cfg, log);
      shutdown.add("gateway", () => gw.close());
    } else if (command === "notification") {
      const svc = await startNotificationService(cfg, log);
      shutdown.add("notification", () => svc.close());
    } else if (command === "medication") {
      const svc = await startMedicationService(cfg, log);
      shutdown.add("medication", () => svc.close());
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
