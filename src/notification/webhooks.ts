// Owns the webhooks and their deliveries as rows: registering a webhook (its secret made here),
// listing them, the deliveries an event makes (inside the inbox's transaction), a webhook's
// deliveries page by page, and putting a delivery back to pending. Sending is deliveries.ts's.
import { randomBytes, randomUUID } from "node:crypto";
import type pg from "pg";
import type {
  ChannelStatus,
  WebhookDelivery,
  Webhook as WebhookMsg,
} from "../gen/medisync/v1/notification.ts";
import { AppError } from "../shared/errors.ts";
import { type Cursor, cursorTimeSql } from "./page.ts";

type Queryable = Pick<pg.Pool | pg.PoolClient, "query">;

interface WebhookRow {
  id: string;
  url: string;
  events: string[];
  clinic_id: string | null;
  created_at: Date;
  cursor_at: string;
}

const webhookColumns = `id, url, events, clinic_id, created_at, ${cursorTimeSql("created_at")} AS cursor_at`;

const toWebhook = (r: WebhookRow): WebhookMsg & { cursorAt: string } => ({
  id: r.id,
  url: r.url,
  events: r.events,
  clinicId: r.clinic_id ?? "",
  createdAt: r.created_at.toISOString(),
  cursorAt: r.cursor_at,
});

/** whsec_ and 32 random bytes: what a receiver keys its HMAC with. */
const newSecret = () => `whsec_${randomBytes(32).toString("base64url")}`;

export async function createWebhook(
  db: Queryable,
  w: { url: string; events: string[]; clinicId: string | undefined },
): Promise<{ webhook: WebhookMsg; secret: string }> {
  const secret = newSecret();
  const r = await db.query<WebhookRow>(
    `INSERT INTO webhooks (id, url, events, clinic_id, secret) VALUES ($1, $2, $3, $4, $5)
     RETURNING ${webhookColumns}`,
    [randomUUID(), w.url, w.events, w.clinicId ?? null, secret],
  );
  const { cursorAt: _, ...webhook } = toWebhook(r.rows[0]!);
  return { webhook, secret };
}

export async function webhookPage(
  db: Queryable,
  limit: number,
  after: Cursor | undefined,
): Promise<(WebhookMsg & { cursorAt: string })[]> {
  const r = await db.query<WebhookRow>(
    `SELECT ${webhookColumns} FROM webhooks
      WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::uuid)
      ORDER BY created_at, id LIMIT $3`,
    [after?.createdAt ?? null, after?.id ?? null, limit],
  );
  return r.rows.map(toWebhook);
}

export async function webhookExists(db: Queryable, id: string): Promise<boolean> {
  return ((await db.query("SELECT 1 FROM webhooks WHERE id = $1", [id])).rowCount ?? 0) > 0;
}

/** The body every delivery of one event sends: ids and codes, the notification's subject, no PHI. */
export interface EventPayload {
  id: string;
  type: string;
  createdAt: string;
  data: Record<string, string | number>;
}

/**
 * One pending delivery per webhook that wants the event (its topic among the webhook's events, and
 * the event's clinic the webhook's or the webhook for every clinic; an event of no clinic id, a
 * staff alert, only the latter). Runs in the inbox's
 * transaction: the deliveries exist exactly when the event was handled. Returns how many.
 */
export async function enqueueDeliveries(
  c: pg.PoolClient,
  ev: { eventId: string; topic: string; clinicId: string | null; payload: EventPayload },
): Promise<number> {
  const r = await c.query(
    `INSERT INTO webhook_deliveries (id, webhook_id, event_id, topic, payload, status, next_attempt_at)
     SELECT gen_random_uuid(), w.id, $1, $2, $3, 'pending', now() FROM webhooks w
      WHERE $2 = ANY (w.events) AND (w.clinic_id IS NULL OR w.clinic_id = $4::uuid)
     ON CONFLICT (webhook_id, event_id) DO NOTHING`,
    [ev.eventId, ev.topic, JSON.stringify(ev.payload), ev.clinicId],
  );
  return r.rowCount ?? 0;
}

interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: string;
  topic: string;
  status: string;
  attempts: number;
  next_attempt_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  cursor_at: string;
}

const deliveryColumns = `id, webhook_id, event_id, topic, status, attempts, next_attempt_at, last_status_code,
  last_error, created_at, updated_at, ${cursorTimeSql("created_at")} AS cursor_at`;

const toDelivery = (r: DeliveryRow): WebhookDelivery & { cursorAt: string } => ({
  id: r.id,
  webhookId: r.webhook_id,
  eventId: r.event_id,
  type: r.topic,
  status: r.status,
  attempts: r.attempts,
  nextAttemptAt: r.status === "pending" && r.next_attempt_at ? r.next_attempt_at.toISOString() : "",
  lastStatusCode: r.last_status_code ?? 0,
  lastError: r.last_error ?? "",
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  cursorAt: r.cursor_at,
});

/** A webhook's deliveries, newest first, after the cursor. */
export async function deliveryPage(
  db: Queryable,
  webhookId: string,
  limit: number,
  after: Cursor | undefined,
): Promise<(WebhookDelivery & { cursorAt: string })[]> {
  const r = await db.query<DeliveryRow>(
    `SELECT ${deliveryColumns} FROM webhook_deliveries
      WHERE webhook_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
      ORDER BY created_at DESC, id DESC LIMIT $4`,
    [webhookId, after?.createdAt ?? null, after?.id ?? null, limit],
  );
  return r.rows.map(toDelivery);
}

/**
 * Back to pending, due now, no attempts counted. An attempt in flight loses its claim (lease_id),
 * so its late result is dropped and the delivery is made again. The last code and error stay, as
 * history, until the next attempt.
 */
export async function redeliver(
  db: Queryable,
  webhookId: string,
  deliveryId: string,
): Promise<WebhookDelivery> {
  const r = await db.query<DeliveryRow>(
    `UPDATE webhook_deliveries
        SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_id = NULL, updated_at = now()
      WHERE id = $1 AND webhook_id = $2
      RETURNING ${deliveryColumns}`,
    [deliveryId, webhookId],
  );
  const row = r.rows[0];
  if (!row) {
    if (!(await webhookExists(db, webhookId)))
      throw new AppError("WEBHOOK_NOT_FOUND", "no such webhook", "webhookId");
    throw new AppError("DELIVERY_NOT_FOUND", "no such delivery of this webhook", "deliveryId");
  }
  const { cursorAt: _, ...delivery } = toDelivery(row);
  return delivery;
}

/** One channel's status of each event: none, pending, dead or delivered, with counts. */
export async function channelStatusOf(
  db: Queryable,
  channel: "webhook" | "email",
  eventIds: string[],
): Promise<Map<string, ChannelStatus>> {
  const out = new Map<string, ChannelStatus>();
  if (eventIds.length === 0) return out;
  const r = await db.query<{ event_id: string; delivered: number; pending: number; dead: number }>(
    `SELECT event_id,
            count(*) FILTER (WHERE status = 'delivered')::int AS delivered,
            count(*) FILTER (WHERE status = 'pending')::int AS pending,
            count(*) FILTER (WHERE status = 'dead')::int AS dead
       FROM webhook_deliveries WHERE event_id = ANY ($1::text[]) AND channel = $2 GROUP BY event_id`,
    [eventIds, channel],
  );
  for (const x of r.rows) {
    const status = x.pending > 0 ? "pending" : x.dead > 0 ? "dead" : "delivered";
    out.set(x.event_id, {
      channel,
      status,
      delivered: x.delivered,
      pending: x.pending,
      dead: x.dead,
    });
  }
  return out;
}
