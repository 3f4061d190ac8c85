// Owns the NotificationService gRPC handlers: every request field checked (a VALIDATION error
// names it), then a read or write of webhooks.ts, a patient's notifications with their channel
// status (webhook, email), or a patient's contact (contacts.ts; the address is never logged). The caller is the gateway; the admin check of the webhook routes will sit there.
import type pg from "pg";
import type { Logger } from "pino";
import type { ChannelStatus, NotificationServiceServer } from "../gen/medisync/v1/notification.ts";
import { AppError } from "../shared/errors.ts";
import { unary } from "../shared/grpc.ts";
import { isUuid, notificationLimits as limits } from "../shared/validation.ts";
import { type ContactCipher, setContact } from "./contacts.ts";
import { cursorTimeSql, decodeCursor, pageLimit, pageOf } from "./page.ts";
import { parseWebhookUrl, resolveTarget } from "./webhook-url.ts";
import {
  channelStatusOf,
  createWebhook,
  deliveryPage,
  redeliver,
  webhookExists,
  webhookPage,
} from "./webhooks.ts";

function uuid(value: string, field: string): string {
  if (!isUuid(value)) throw new AppError("VALIDATION", `${field} must be a UUID`, field);
  return value.toLowerCase();
}

/** The topics a webhook may ask for: the shared list and the inventory's staff alert. */
export const webhookTopics: readonly string[] = limits.webhookEvents;
const topics = webhookTopics;

/** Characters of an e-mail address (RFC 5321's path limit). */
export const emailMax = 254;
// One address, no display name, no list: what a mailbox is, not what a header may hold.
const emailPattern =
  /^[^\s@<>(),;:"[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

function email(value: string): string {
  const control = [...value].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
  if (value.length > emailMax || control || !emailPattern.test(value))
    throw new AppError("VALIDATION", "email must be one e-mail address (local@domain)", "email");
  return value;
}

function events(list: string[]): string[] {
  if (list.length === 0 || list.length > topics.length) {
    throw new AppError("VALIDATION", `events must list 1-${topics.length} event types`, "events");
  }
  for (const [i, e] of list.entries()) {
    if (!topics.includes(e))
      throw new AppError("VALIDATION", `events.${i} must be one of ${topics.join(", ")}`, `events.${i}`);
  }
  if (new Set(list).size !== list.length)
    throw new AppError("VALIDATION", "events must not repeat an event type", "events");
  return list;
}

interface NotificationRow {
  id: string;
  event_id: string;
  kind: string;
  clinic_id: string;
  subject: string;
  body: string;
  created_at: Date;
  cursor_at: string;
}

const none = (channel: string): ChannelStatus => ({
  channel,
  status: "none",
  delivered: 0,
  pending: 0,
  dead: 0,
});

export function createNotificationHandlers(deps: {
  pool: pg.Pool;
  log: Logger;
  allowPrivate: boolean;
  /** Undefined without NOTIFICATION_CONTACT_KEY: contacts are refused. */
  cipher?: ContactCipher;
  /** Whether e-mail is sent (SMTP_URL and a key). */
  emailOn: boolean;
}): NotificationServiceServer {
  const { pool, log, allowPrivate, cipher, emailOn } = deps;
  return {
    listPatientNotifications: unary(log, "ListPatientNotifications", async (req) => {
      const patientId = uuid(req.patientId, "patientId");
      const limit = pageLimit(req.limit);
      const after = decodeCursor(req.cursor);
      // One more than asked: whether a next page exists, without a count.
      const r = await pool.query<NotificationRow>(
        `SELECT id, event_id, kind, clinic_id, subject, body, created_at, ${cursorTimeSql("created_at")} AS cursor_at
           FROM notifications
          WHERE patient_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
          ORDER BY created_at DESC, id DESC LIMIT $4`,
        [patientId, after?.createdAt ?? null, after?.id ?? null, limit + 1],
      );
      const { page, nextCursor } = pageOf(
        r.rows.map((x) => ({ ...x, cursorAt: x.cursor_at })),
        limit,
      );
      const ids = page.map((n) => n.event_id);
      const webhook = await channelStatusOf(pool, "webhook", ids);
      const mail = await channelStatusOf(pool, "email", ids);
      return {
        notifications: page.map((n) => ({
          id: n.id,
          eventId: n.event_id,
          kind: n.kind,
          clinicId: n.clinic_id,
          subject: n.subject,
          body: n.body,
          createdAt: n.created_at.toISOString(),
          channels: [webhook.get(n.event_id) ?? none("webhook"), mail.get(n.event_id) ?? none("email")],
        })),
        nextCursor,
      };
    }),

    createWebhook: unary(log, "CreateWebhook", async (req) => {
      const url = parseWebhookUrl(req.url);
      const list = events(req.events);
      const clinicId = req.clinicId === "" ? undefined : uuid(req.clinicId, "clinicId");
      // Resolved now as well as at every delivery: a URL that cannot be delivered to is refused
      // while its author is there to hear it.
      await resolveTarget(url, allowPrivate);
      const { webhook, secret } = await createWebhook(pool, { url: url.toString(), events: list, clinicId });
      log.info({ event: "webhook_created", webhookId: webhook.id }, "webhook created");
      return { webhook, secret };
    }),

    listWebhooks: unary(log, "ListWebhooks", async (req) => {
      const limit = pageLimit(req.limit);
      const rows = await webhookPage(pool, limit + 1, decodeCursor(req.cursor));
      const { page, nextCursor } = pageOf(rows, limit);
      return { webhooks: page.map(({ cursorAt: _, ...w }) => w), nextCursor };
    }),

    listWebhookDeliveries: unary(log, "ListWebhookDeliveries", async (req) => {
      const webhookId = uuid(req.webhookId, "webhookId");
      const limit = pageLimit(req.limit);
      const after = decodeCursor(req.cursor);
      if (!(await webhookExists(pool, webhookId)))
        throw new AppError("WEBHOOK_NOT_FOUND", "no such webhook", "webhookId");
      const { page, nextCursor } = pageOf(await deliveryPage(pool, webhookId, limit + 1, after), limit);
      return { deliveries: page.map(({ cursorAt: _, ...d }) => d), nextCursor };
    }),

    setPatientContact: unary(log, "SetPatientContact", async (req) => {
      const patientId = uuid(req.patientId, "patientId");
      const address = email(req.email);
      if (!cipher)
        throw new AppError("CONTACTS_DISABLED", "no NOTIFICATION_CONTACT_KEY: contacts cannot be stored");
      const updatedAt = await setContact(pool, cipher, patientId, address);
      log.info({ event: "contact_set", patientId }, "patient contact stored");
      return { patientId, emailChannelOn: emailOn, updatedAt: updatedAt.toISOString() };
    }),

    redeliverWebhookDelivery: unary(log, "RedeliverWebhookDelivery", async (req) => {
      const webhookId = uuid(req.webhookId, "webhookId");
      const deliveryId = uuid(req.deliveryId, "deliveryId");
      const delivery = await redeliver(pool, webhookId, deliveryId);
      log.info({ event: "webhook_redeliver", webhookId, deliveryId }, "webhook delivery put back to pending");
      return { delivery };
    }),
  };
}
