// Owns the notification REST routes: a patient's notifications (newest first, paginated, with each
// channel's delivery status), a patient's e-mail contact, and the webhooks — register one (its secret answered once), list them,
// list a webhook's deliveries, redeliver one. Input is refused here, naming the field, before any
// call; the notification service checks again and alone decides whether a URL's addresses are
// allowed. Every answer comes from the notification service over gRPC.
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type {
  WebhookDelivery as DeliveryMsg,
  PatientNotification as NotificationMsg,
  Webhook as WebhookMsg,
} from "../gen/medisync/v1/notification.ts";
import { notificationLimits as limits } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import type { NotificationClient } from "./notification-client.ts";
import { type PageLimits, pageOf, pageQuery, pageSchema, pageTokenOf } from "./pagination.ts";
import { mount } from "./route.ts";
import { json, jsonBody, problemDoc, uuid } from "./schemas.ts";

const pageLimits: PageLimits = {
  limitMax: limits.pageLimitMax,
  limitDefault: limits.pageLimitDefault,
  cursorMax: limits.cursorMax,
};
const PageQuery = pageQuery(pageLimits);

const PatientParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
});
const WebhookParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
});
const DeliveryParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
  deliveryId: uuid("deliveryId").openapi({ param: { name: "deliveryId", in: "path" } }),
});

const EventType = z.enum(limits.webhookEvents);

/** RFC 5321's path limit; the notification service checks the address again. */
const emailMax = 254;

const ContactBody = z
  .strictObject({
    email: z
      .email({ message: "must be one e-mail address (local@domain)" })
      .max(emailMax)
      .openapi({ example: "patient@example.com" }),
  })
  .openapi("PatientContactRequest");

const Contact = z
  .object({
    patientId: z.string(),
    emailChannelOn: z.boolean().openapi({
      description: "whether the service sends e-mail (SMTP configured); the contact is kept either way",
    }),
    updatedAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("PatientContact");

const ChannelStatus = z
  .object({
    channel: z.enum(["webhook", "email"]),
    status: z.enum(["none", "pending", "delivered", "dead"]).openapi({
      description: "none: nothing to deliver; pending: a delivery still to make; dead: one given up",
    }),
    delivered: z.number().int(),
    pending: z.number().int(),
    dead: z.number().int(),
  })
  .openapi("ChannelStatus");

const Notification = z
  .object({
    id: z.string(),
    eventId: z.string().openapi({ description: "the event's id: the webhooks' MediSync-Event-Id" }),
    kind: z.string().openapi({ example: "appointment-booked" }),
    clinicId: z.string(),
    subject: z.string(),
    body: z.string(),
    createdAt: z.string().openapi({ format: "date-time" }),
    channels: z.array(ChannelStatus),
  })
  .openapi("Notification");

const NotificationPage = pageSchema(Notification, "NotificationPage");

const webhookUrl = z
  .string()
  .min(1)
  .max(limits.webhookUrlMax)
  .refine(
    (s) => {
      try {
        const u = new URL(s);
        return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
      } catch {
        return false;
      }
    },
    { message: "must be an absolute http or https URL" },
  )
  .openapi({ format: "uri", example: "https://hooks.example.com/medisync" });

const CreateWebhookBody = z
  .strictObject({
    url: webhookUrl,
    events: z
      .array(EventType)
      .min(1)
      .max(EventType.options.length)
      .refine((e) => new Set(e).size === e.length, { message: "must not repeat an event type" }),
    clinicId: uuid("clinicId")
      .optional()
      .openapi({ description: "only this clinic's events; all when absent" }),
  })
  .openapi("CreateWebhookRequest");

const Webhook = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(EventType),
    clinicId: z.string().nullable(),
    createdAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("Webhook");

const CreatedWebhook = Webhook.extend({
  secret: z.string().openapi({
    description:
      'shown once: verify MediSync-Signature (t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>) with it',
  }),
}).openapi("CreatedWebhook");

const WebhookPage = pageSchema(Webhook, "WebhookPage");

const Delivery = z
  .object({
    id: z.string(),
    webhookId: z.string(),
    eventId: z.string(),
    type: EventType,
    status: z.enum(["pending", "delivered", "dead"]),
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable().openapi({ format: "date-time" }),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string().openapi({ format: "date-time" }),
    updatedAt: z.string().openapi({ format: "date-time" }),
  })
  .openapi("WebhookDelivery");

const DeliveryPage = pageSchema(Delivery, "WebhookDeliveryPage");

const notificationView = (n: NotificationMsg) => ({
  id: n.id,
  eventId: n.eventId,
  kind: n.kind,
  clinicId: n.clinicId,
  subject: n.subject,
  body: n.body,
  createdAt: n.createdAt,
  channels: n.channels.map((ch) => ({
    channel: ch.channel as z.infer<typeof ChannelStatus>["channel"],
    status: ch.status as z.infer<typeof ChannelStatus>["status"],
    delivered: ch.delivered,
    pending: ch.pending,
    dead: ch.dead,
  })),
});

const webhookView = (w: WebhookMsg) => ({
  id: w.id,
  url: w.url,
  events: w.events as z.infer<typeof EventType>[],
  clinicId: w.clinicId || null,
  createdAt: w.createdAt,
});

const deliveryView = (d: DeliveryMsg) => ({
  id: d.id,
  webhookId: d.webhookId,
  eventId: d.eventId,
  type: d.type as z.infer<typeof EventType>,
  status: d.status as z.infer<typeof Delivery>["status"],
  attempts: d.attempts,
  nextAttemptAt: d.nextAttemptAt || null,
  lastStatusCode: d.lastStatusCode || null,
  lastError: d.lastError || null,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

export function addNotificationRoutes(app: OpenAPIHono<GatewayEnv>, notifications: NotificationClient): void {
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/patients/{id}/notifications",
      summary: "A patient's notifications, newest first, with each channel's delivery status",
      request: { params: PatientParams, query: PageQuery },
      responses: {
        200: json(NotificationPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid id, limit or cursor"),
      },
    }),
    async (c) => {
      // The auth issue: a patient may read only their own (clinicians their clinics') — checked here.
      const { limit, cursor } = c.req.valid("query");
      const res = await notifications.listPatientNotifications(
        c.req.valid("param").id,
        limit,
        pageTokenOf(cursor, pageLimits),
        c.get("requestId"),
      );
      return c.json(pageOf(res.notifications, notificationView, res.nextCursor), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "put",
      path: "/v1/patients/{id}/contact",
      summary: "Store a patient's e-mail contact (encrypted at rest); later notifications are e-mailed too",
      description:
        "The address is sealed with AES-256-GCM under NOTIFICATION_CONTACT_KEY and never logged. " +
        "Notifications made after this are also sent by e-mail when the service has SMTP_URL " +
        "(emailChannelOn); the channel's status shows in the patient's notifications.",
      request: { params: PatientParams, body: jsonBody(ContactBody) },
      responses: {
        200: json(Contact, "Stored (replacing any before)"),
        400: problemDoc("Invalid id or email"),
        503: problemDoc("Contacts are off: the notification service has no contact key"),
      },
    }),
    async (c) => {
      // The auth issue: a patient may set only their own — checked here.
      const res = await notifications.setPatientContact(
        c.req.valid("param").id,
        c.req.valid("json").email,
        c.get("requestId"),
      );
      return c.json(
        { patientId: res.patientId, emailChannelOn: res.emailChannelOn, updatedAt: res.updatedAt },
        200,
      );
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/webhooks",
      summary: "Register a webhook (admin); the answer carries its signing secret, once",
      description:
        "Deliveries are POSTed as JSON {id, type, createdAt, data} with MediSync-Event-Id and " +
        "MediSync-Signature headers, retried with exponential backoff and jitter, then marked dead " +
        "(docs/notification.md). Only http(s) URLs; a URL that resolves to a loopback, private, " +
        "link-local or unspecified address is refused (400 naming url).",
      request: { body: jsonBody(CreateWebhookBody) },
      responses: {
        201: json(CreatedWebhook, "Registered"),
        400: problemDoc("Invalid url, events or clinicId"),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const res = await notifications.createWebhook(
        { url: body.url, events: body.events, clinicId: body.clinicId ?? "" },
        c.get("requestId"),
      );
      c.set("resourceId", res.webhook!.id);
      return c.json({ ...webhookView(res.webhook!), secret: res.secret }, 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/webhooks",
      summary: "Webhooks (admin), oldest first, without their secrets",
      request: { query: PageQuery },
      responses: {
        200: json(WebhookPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid limit or cursor"),
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const res = await notifications.listWebhooks(
        limit,
        pageTokenOf(cursor, pageLimits),
        c.get("requestId"),
      );
      return c.json(pageOf(res.webhooks, webhookView, res.nextCursor), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/webhooks/{id}/deliveries",
      summary: "A webhook's deliveries (admin), newest first, with status and attempts",
      request: { params: WebhookParams, query: PageQuery },
      responses: {
        200: json(DeliveryPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid id, limit or cursor"),
        404: problemDoc("No such webhook"),
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const res = await notifications.listDeliveries(
        c.req.valid("param").id,
        limit,
        pageTokenOf(cursor, pageLimits),
        c.get("requestId"),
      );
      return c.json(pageOf(res.deliveries, deliveryView, res.nextCursor), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver",
      summary: "Send a delivery again (admin): back to pending, its attempts counted from zero",
      request: { params: DeliveryParams },
      responses: {
        200: json(Delivery, "Pending again"),
        400: problemDoc("Invalid id or deliveryId"),
        404: problemDoc("No such webhook or delivery"),
      },
    }),
    async (c) => {
      const { id, deliveryId } = c.req.valid("param");
      const res = await notifications.redeliver(id, deliveryId, c.get("requestId"));
      return c.json(deliveryView(res.delivery!), 200);
    },
  );
}
