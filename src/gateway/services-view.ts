// Owns how the gateway shows the stateless services' instances it routes to (the service
// registry's view, or the static addresses): the schema and the answer, for /v1/cluster/services
// (cluster-routes.ts) and /v1/cluster (inventory-routes.ts), so the two cannot disagree.
import { z } from "@hono/zod-openapi";
import type { ServiceView } from "../shared/service-registry.ts";

/** The stateless services' instances, per service: /v1/cluster/services and /v1/cluster both answer it. */
export const ServiceList = z.array(
  z.object({
    service: z.enum(["appointment", "medication", "notification"]),
    source: z.enum(["redis", "static"]).openapi({
      description: "redis: the service registry (DISCOVERY=redis); static: the configured addresses",
    }),
    readAt: z.string().nullable().openapi({ description: "When the registry last answered" }),
    stale: z.boolean().openapi({
      description: "The last read failed (or found none): these are the instances last read",
    }),
    instances: z.array(
      z.object({
        id: z.string().nullable(),
        address: z.string(),
        startedAt: z.string().nullable(),
        ageMs: z.number().int().nullable().openapi({ description: "Since the instance started" }),
        expiresInMs: z.number().int().nullable().openapi({
          description: "Until its registry entry expires unless the instance refreshes it",
        }),
      }),
    ),
  }),
);

/** The registry's view as the routes answer it: each instance's age as of now. */
export function servicesAnswer(views: ServiceView[], now = Date.now()) {
  return views.map((s) => ({
    ...s,
    instances: s.instances.map((i) => ({
      ...i,
      ageMs: i.startedAt ? Math.max(0, now - Date.parse(i.startedAt)) : null,
    })),
  }));
}
