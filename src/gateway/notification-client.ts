// Owns the gateway's side of the notification contract: one gRPC client per instance, calls spread
// round-robin, retried on another instance when a call may not have been served. Reads and
// redeliver and setting a contact (the same address again) are safe to repeat; CreateWebhook is not retried, since a retry after a lost reply
// would register the webhook twice (the caller sees the failure and lists the webhooks).
import { NotificationServiceClient } from "../gen/medisync/v1/notification.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { defaultRetryPolicy, type RetryPolicy, withRetries } from "../shared/retry.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";

export class NotificationClient {
  private readonly clients: NotificationServiceClient[];
  private next = 0;
  private readonly retry: RetryPolicy;

  /** security: the process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted. */
  constructor(private readonly opts: { addrs: string[]; deadlineMs: number; security?: ClientSecurity }) {
    if (opts.addrs.length === 0) throw new Error("NotificationClient needs at least one address");
    const ch = (opts.security ?? plaintextClients).channel({ service: "notification" });
    this.clients = opts.addrs.map(
      (a) => new NotificationServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
    );
    this.retry = {
      ...defaultRetryPolicy,
      attemptsMax: Math.max(defaultRetryPolicy.attemptsMax, opts.addrs.length + 1),
    };
  }

  private pick(): NotificationServiceClient {
    const c = this.clients[this.next % this.clients.length]!;
    this.next = (this.next + 1) % this.clients.length;
    return c;
  }

  private call<T>(fn: (c: NotificationServiceClient, deadlineMs: number) => Promise<T>) {
    return withRetries(this.retry, ({ remainingMs }) =>
      fn(this.pick(), Math.min(this.opts.deadlineMs, remainingMs)),
    );
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
    for (const c of this.clients) c.close();
  }
}
