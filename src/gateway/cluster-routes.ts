// Owns the cluster's admin REST routes: the inventory cluster's (list the members, add a learner,
// promote it, remove a replica, hand leadership over; each one InventoryAdminService call on the
// leader, committed through the Raft log) and the instances of the stateless services the gateway
// routes to (/v1/cluster/services: the service registry's, or the static addresses; /v1/cluster
// carries the same list beside the replicas). Every route here is admin-only (src/shared/access-policy.ts).
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Membership } from "../gen/medisync/v1/inventory.ts";
import { callUnary } from "../shared/grpc.ts";
import type { InventoryClient } from "../shared/inventory-client.ts";
import type { ServiceView } from "../shared/service-registry.ts";
import { clusterLimits } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import { mount } from "./route.ts";
import { json, jsonBody, problemDoc } from "./schemas.ts";
import { ServiceList, servicesAnswer } from "./services-view.ts";

const { memberIdMax, memberIdPattern, addressMax } = clusterLimits;
const memberId = (name: string) =>
  z
    .string()
    .min(1)
    .max(memberIdMax)
    .regex(memberIdPattern, `${name} must be 1-${memberIdMax} of [A-Za-z0-9_-]`)
    .openapi({ example: "inv-3" });
const address = z
  .string()
  .max(addressMax)
  .regex(/^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/, "address must be host:port")
  .openapi({ example: "inv-3.inventory-peers:50061" });

const MemberParam = z.object({
  id: memberId("id").openapi({ param: { name: "id", in: "path" } }),
});
const AddMemberBody = z.strictObject({ id: memberId("id"), address }).openapi("AddMemberRequest");
const TransferBody = z
  .strictObject({ to: memberId("to").optional() })
  .openapi("LeaderTransferRequest", { description: "to: the voter to lead; absent: the most caught-up one" });

const Members = z
  .object({
    leaderId: z.string().nullable(),
    index: z.number().int().openapi({ description: "Raft index of the change (0 when only listing)" }),
    members: z.array(
      z.object({
        id: z.string(),
        address: z.string(),
        role: z.enum(["voter", "learner"]),
        matchIndex: z.number().int().openapi({ description: "Highest index known to be on that member" }),
      }),
    ),
  })
  .openapi("ClusterMembers");
const LeaderMoved = z
  .object({ leaderId: z.string(), term: z.number().int(), elapsedMs: z.number().int() })
  .openapi("LeaderTransferResult");

const Services = z.object({ services: ServiceList }).openapi("ClusterServices");

const view = (m: Membership | undefined) => ({
  leaderId: m?.leaderId || null,
  index: m?.index ?? 0,
  members: (m?.members ?? []).map((x) => ({
    id: x.id,
    address: x.address,
    role: x.role === "learner" ? ("learner" as const) : ("voter" as const),
    matchIndex: x.matchIndex,
  })),
});

/** Membership calls wait for a commit; this bounds one try (the client's overall deadline bounds all). */
const adminCallDeadlineMs = 5_000;

const changeResponses = {
  200: json(Members, "The configuration once the change is applied on the leader"),
  400: problemDoc("Invalid input"),
  404: problemDoc("member-not-found"),
  409: problemDoc(
    "conf-change-pending (retry once the previous change is applied), learner-not-caught-up, last-voter, remove-leader (transfer leadership first), member-exists",
  ),
  503: problemDoc("No leader answered in time"),
};

export function addClusterRoutes(
  app: OpenAPIHono<GatewayEnv>,
  inventory: InventoryClient,
  services: () => ServiceView[] = () => [],
): void {
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/cluster/services",
      summary:
        "The appointment, medication and notification instances the gateway routes to, as the service registry lists them (admin)",
      responses: { 200: json(Services, "Instances per service") },
    }),
    (c) => c.json({ services: servicesAnswer(services()) }, 200),
  );

  /** One membership change on the leader, each try bounded by adminCallDeadlineMs; its new view. */
  const change = async <Req>(
    method: "addLearner" | "promoteLearner" | "removeReplica",
    req: Req,
    rid: string,
  ) => {
    const r = await inventory.admin((a, d) =>
      callUnary(
        (a[method] as unknown as typeof a.promoteLearner).bind(a),
        req as never,
        Math.min(d, adminCallDeadlineMs),
        rid,
      ),
    );
    return view(r.membership);
  };
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/cluster/members",
      summary: "The inventory cluster's members as the leader knows them (admin)",
      responses: { 200: json(Members, "Voters and learners"), 503: problemDoc("No leader answered in time") },
    }),
    async (c) => {
      const rid = c.get("requestId");
      const r = await inventory.admin((a, d) => callUnary(a.listMembers.bind(a), {}, d, rid));
      return c.json(view(r.membership), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/cluster/members",
      summary: "Add a replica as a learner (it catches up without voting; promote it next) (admin)",
      request: { body: jsonBody(AddMemberBody) },
      responses: { ...changeResponses, 201: json(Members, "Added as a learner") },
    }),
    async (c) => {
      const body = c.req.valid("json");
      c.set("resourceId", body.id);
      return c.json(await change("addLearner", body, c.get("requestId")), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/cluster/members/{id}/promote",
      summary: "Make a caught-up learner a voter (admin)",
      request: { params: MemberParam },
      responses: changeResponses,
    }),
    async (c) => {
      return c.json(await change("promoteLearner", { id: c.req.valid("param").id }, c.get("requestId")), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "delete",
      path: "/v1/cluster/members/{id}",
      summary: "Remove a replica from the cluster (never the last voter nor the leader) (admin)",
      request: { params: MemberParam },
      responses: changeResponses,
    }),
    async (c) => {
      return c.json(await change("removeReplica", { id: c.req.valid("param").id }, c.get("requestId")), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/cluster/leader",
      summary: "Hand leadership to another voter, answered once it leads (admin)",
      request: { body: jsonBody(TransferBody) },
      responses: {
        200: json(LeaderMoved, "The new leader"),
        400: problemDoc("Invalid input"),
        422: problemDoc("transfer-invalid: not another voter"),
        503: problemDoc("No leader answered, or leadership did not move within an election timeout"),
      },
    }),
    async (c) => {
      const rid = c.get("requestId");
      const to = c.req.valid("json").to ?? "";
      const r = await inventory.admin((a, d) =>
        callUnary(a.transferLeadership.bind(a), { to }, Math.min(d, adminCallDeadlineMs), rid),
      );
      return c.json(r, 200);
    },
  );
}
