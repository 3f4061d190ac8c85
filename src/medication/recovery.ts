// Owns the recovery loop: at start and then every interval, it finishes the dispenses and returns
// that a crash (of this service, or of inventory's leader) left in-progress, by settling them again
// with their own inventory request ids (saga.ts). Several instances share the work (claimStale).
import type pg from "pg";
import type { Logger } from "pino";
import { gauge } from "../shared/metrics.ts";
import { claimStale, pruneCancelledAppointments, reconcileCount } from "./repo.ts";
import type { Saga } from "./saga.ts";

/**
 * How long a cancelled-appointment marker is kept: far past the race it closes (an appointment
 * cancelled that long ago is refused by the appointment service's own answer).
 */
const cancelledMarkerSeconds = 86_400;

/** Dispenses (and returns) taken per round. */
const claimRowsMax = 50;

const waiting = gauge(
  "medisync_medication_reconcile_waiting",
  "dispenses or returns marked reconcile: a person must settle them",
  [],
);

export function startRecovery(o: {
  pool: pg.Pool;
  saga: Saga;
  settleAfterMs: number;
  intervalMs: number;
  log: Logger;
}): { stop(): Promise<void>; round(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  const requestId = `recovery-${process.pid}`;

  const round = async () => {
    for (const row of await claimStale(o.pool, "dispense", o.settleAfterMs, claimRowsMax)) {
      const after = await o.saga.settle(row, requestId);
      o.log.info(
        {
          requestId,
          event: "dispense_recovered",
          dispenseId: row.dispense.id,
          status: after.dispense.status,
        },
        "in-progress dispense settled by recovery",
      );
    }
    for (const row of await claimStale(o.pool, "return", o.settleAfterMs, claimRowsMax)) {
      const after = await o.saga.returnLots(row, requestId);
      o.log.info(
        {
          requestId,
          event: "return_recovered",
          dispenseId: row.dispense.id,
          status: after.dispense.returnStatus,
        },
        "in-progress return settled by recovery",
      );
    }
    waiting.set(await reconcileCount(o.pool));
    await pruneCancelledAppointments(o.pool, cancelledMarkerSeconds);
  };
  const attempt = () => {
    if (stopped || running) return running;
    running = round()
      .catch((err: unknown) => {
        o.log.warn(
          { requestId, err: (err as Error).message },
          "recovery round failed; retried next interval",
        );
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  void attempt();
  const timer = setInterval(attempt, o.intervalMs);
  return {
    round: async () => {
      await running;
      await attempt();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
