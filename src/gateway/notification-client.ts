// Owns the gateway's side of the notification contract: one gRPC client per instance (the instances
// may change at run time: setAddresses, fed by src/shared/service-registry.ts), calls spread
// round-robin, retried on another instance when a call may not have been served. Reads and
// redeliver and setting a contact (the same address again) are safe to repeat; CreateWebhook is not retried, since a retry after a lost reply
// would register the webhook twice (the caller sees the failure and lists the webhooks).
import { NotificationServiceClient } from "../gen/medisync/v1/notification.ts";
import { ClientPool } from "../shared/client-pool.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { defaultRetryPolicy, type RetryPolicy, withRetries } from "../shared/retry.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";

export class NotificationClient {
  private readonly pool: ClientPool<NotificationServiceClient>;

  /**
   * addrs: the instances to start with (none when the service registry is to tell); security: the
   * process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted.
   */
  constructor(private readonly opts: { addrs: string[]; deadlineMs: number; security?: ClientSecurity }) {
    const ch = (opts.security ?? plaintextClients).channel({ service: "notification" });
    this.pool = new ClientPool(
      "notification",
      (a) => new NotificationServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
      opts.addrs,
      defaultRetryPolicy.overallDeadlineMs,
    );
  }

  /** The instances to call from now on: new ones get a client, removed ones are closed. */
  setAddresses(addrs: readonly string[]): { added: string[]; removed: string[] } {
    return this.pool.setAddresses(addrs);
  }

  private pick(): NotificationServiceClient {
    return this.pool.pick();
  }

  private call<T>(fn: (c: NotificationServiceClient, deadlineMs: number) => Promise<T>) {
    const retry: RetryPolicy = {
      ...defaultRetryPolicy,
      attemptsMax: Math.max(defaultRetryPolicy.attemptsMax, this.pool.size + 1),
    };
    // Each try goes to an instance not tried yet (while one is left).
    const tried = new Set<NotificationServiceClient>();
    return withRetries(retry, ({ remainingMs }) => {
      const c = this.pool.pick(tried);
      tried.add(c);
      return fn(c, Math.min(this.opts.deadlineMs, remainingMs));
    });
  }

  listPatientNotifications(patientId: string, limit: number, cursor: string, requestId: string) {
    return this.call((c, d) =>
      callUnary(c.listPatientNotifications.bind(c), { patientId, limit, cursor }, d, requestId),
    );
  }

  createWebhook(req: { url: string; events: string[]; clinicId: string }, requestId: string) {
    const c = this.pick();
    return callUnary(c.createWebhook.bind(c), req, this.opts.deadlineMs, requestId);
  }

  listWebhooks(limit: number, cursor: string, requestId: string) {
    return this.call((c, d) => callUnary(c.listWebhooks.bind(c), { limit, cursor }, d, requestId));
  }

  listDeliveries(webhookId: string, limit: number, cursor: string, requestId: string) {
    return this.call((c, d) =>
      callUnary(c.listWebhookDeliveries.bind(c), { webhookId, limit, cursor }, d, requestId),
    );
  }

  redeliver(webhookId: string, deliveryId: string, requestId: string) {
    return this.call((c, d) =>
      callUnary(c.redeliverWebhookDelivery.bind(c), { webhookId, deliveryId }, d, requestId),
    );
  }

  setPatientContact(patientId: string, email: string, requestId: string) {
    return this.call((c, d) => callUnary(c.setPatientContact.bind(c), { patientId, email }, d, requestId));
  }

  close(): void {
    this.pool.close();
  }
}
