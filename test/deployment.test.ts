// deployment/ checked offline: every Kubernetes manifest parses and validates against the
// Kubernetes schemas (kubernetes-models), every overlay renders, and what they run agrees with the
// code (env names and values through src/shared/config.ts, commands, ports, peers, replicas).
// Same for the fly.toml files and create.sh. Each check is also shown to catch a broken manifest.
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as apps from "kubernetes-models/apps/v1";
import * as batch from "kubernetes-models/batch/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as core from "kubernetes-models/v1";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { type Config, envNames, loadConfig } from "../src/shared/config.ts";
import { containersOf, type K8sObject, parseManifests, renderKustomization } from "./support/kustomize.ts";
import { checkKubernetes, cliCommands, servicePorts } from "./support/manifest-checks.ts";

const k8sDir = "deployment/kubernetes";
const overlays = ["dev", "production"];
const yamlFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? yamlFiles(path.join(dir, e.name))
      : e.name.endsWith(".yaml")
        ? [path.join(dir, e.name)]
        : [],
  );

const models: Record<string, Record<string, new (o: unknown) => { validate(): void }>> = {
  v1: core as never,
  "apps/v1": apps as never,
  "batch/v1": batch as never,
  "networking.k8s.io/v1": networking as never,
  "policy/v1": policy as never,
};
/** Validates one object against its Kubernetes schema; returns the error, or undefined. */
function schemaError(o: K8sObject): string | undefined {
  const model = models[o.apiVersion]?.[o.kind];
  if (!model) return `no schema for ${o.apiVersion} ${o.kind}`;
  try {
    new model(structuredClone(o)).validate();
    return undefined;
  } catch (err) {
    return `${o.kind} ${o.metadata?.name}: ${(err as Error).message}`;
  }
}
const isKustomization = (f: string) => f.endsWith("kustomization.yaml");
const rendered = (overlay: string) => renderKustomization(path.join(k8sDir, "overlays", overlay));
const find = (objs: K8sObject[], kind: string, name: string) =>
  objs.find((o) => o.kind === kind && o.metadata.name === name)!;

/**
 * Who dials whom, as the code does (the clients each service builds from these variables): the
 * variable, and the command whose pods its addresses must reach.
 */
const dials: Record<
  string,
  {
    variable: "APPOINTMENT_ADDRS" | "MEDICATION_ADDRS" | "NOTIFICATION_ADDRS" | "INVENTORY_PEERS";
    callee: string;
  }[]
> = {
  gateway: [
    { variable: "APPOINTMENT_ADDRS", callee: "appointment" },
    { variable: "MEDICATION_ADDRS", callee: "medication" },
    { variable: "NOTIFICATION_ADDRS", callee: "notification" },
    { variable: "INVENTORY_PEERS", callee: "inventory" },
  ],
  medication: [
    { variable: "APPOINTMENT_ADDRS", callee: "appointment" },
    { variable: "INVENTORY_PEERS", callee: "inventory" },
  ],
  inventory: [{ variable: "INVENTORY_PEERS", callee: "inventory" }],
};
const addressesOf = (cfg: Config, variable: (typeof dials)[string][number]["variable"]): string[] =>
  variable === "INVENTORY_PEERS" ? cfg.INVENTORY_PEERS.map((p) => p.address) : cfg[variable];

type Pod = {
  w: K8sObject;
  command: string;
  labels: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: container specs are plain YAML
  c: any;
  cfg: Config;
};
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
// biome-ignore lint/suspicious/noExplicitAny: container specs are plain YAML
const portOf = (c: any, port: string | number): number | undefined =>
  typeof port === "number" ? port : c.ports?.find((p: { name?: string }) => p.name === port)?.containerPort;

/** The MediSync pods of a rendered overlay with the config each parses to (one pod per workload). */
function medisyncPods(objs: K8sObject[]): Pod[] {
  const pods: Pod[] = [];
  for (const w of objs.filter((o) => ["Deployment", "StatefulSet"].includes(o.kind))) {
    for (const c of containersOf(w)) {
      if (!String(c.image).includes("medisync")) continue;
      const podName = w.kind === "StatefulSet" ? `${w.metadata.name}-0` : `${w.metadata.name}-7d9f8-abcde`;
      const env: Record<string, string> = {};
      for (const from of c.envFrom ?? []) {
        const kind = from.configMapRef ? "ConfigMap" : "Secret";
        const src = objs.find(
          (o) => o.kind === kind && o.metadata.name === (from.configMapRef ?? from.secretRef).name,
        );
        Object.assign(env, src?.data ?? {}, src?.stringData ?? {});
      }
      for (const e of c.env ?? [])
        env[e.name] = e.valueFrom?.fieldRef?.fieldPath === "metadata.name" ? podName : String(e.value);
      try {
        pods.push({
          w,
          command: c.args?.[0] ?? "gateway",
          labels: w.spec.template.metadata.labels,
          c,
          cfg: loadConfig(env),
        });
      } catch {
        // checkKubernetes names the variable the config rejects.
      }
    }
  }
  return pods;
}

/**
 * What checkKubernetes does not cover: that every address
 * a service dials (table `dials`) reaches a Service selecting the right service's pods, on the port
 * they serve gRPC on; that a NetworkPolicy lets each such call in, and that no policy lets in a MediSync
 * pod that never dials that port (least privilege); a PodDisruptionBudget for every Deployment.
 */
function checkServices(objs: K8sObject[]): string[] {
  const problems: string[] = [];
  const pods = medisyncPods(objs);
  const services = objs.filter((o) => o.kind === "Service");
  const policies = objs.filter((o) => o.kind === "NetworkPolicy");
  // Every call: caller pod → Service → callee pods, on the callee's gRPC port.
  const calls: { caller: Pod; callee: Pod; port: number }[] = [];
  for (const caller of pods) {
    for (const { variable, callee } of dials[caller.command] ?? []) {
      for (const addr of addressesOf(caller.cfg, variable)) {
        const where = `${caller.w.metadata.name}: ${variable} ${addr}`;
        const [host, port] = addr.split(":") as [string, string];
        const parts = host.split(".");
        const svc = services.find((s) => s.metadata.name === parts[parts.length > 1 ? 1 : 0]);
        const sp = svc?.spec.ports?.find((x: { port: number }) => x.port === Number(port));
        if (!svc || !sp) {
          problems.push(`${where}: no Service with that name and port`);
          continue;
        }
        const reached = pods.filter((x) => selects(svc.spec.selector, x.labels));
        for (const r of reached) {
          const target = portOf(r.c, sp.targetPort ?? sp.port);
          const serve = servicePorts(r.command, r.cfg).serve;
          if (r.command !== callee) problems.push(`${where}: reaches ${r.command} pods, not ${callee}`);
          else if (target === undefined || target !== serve)
            problems.push(`${where}: reaches port ${target} of ${r.command}, which serves gRPC on ${serve}`);
          else calls.push({ caller, callee: r, port: target });
        }
        if (reached.length === 0)
          problems.push(`${where}: Service ${svc.metadata.name} selects no MediSync pod`);
      }
    }
  }
  type Rule = {
    from?: { podSelector?: { matchLabels?: Record<string, string> } }[];
    ports?: { port: number }[];
  };
  const admits = (rule: Rule, caller: Pod, port: number) =>
    (!rule.ports || rule.ports.some((x) => x.port === port)) &&
    (!rule.from ||
      rule.from.some((f) => f.podSelector && selects(f.podSelector.matchLabels ?? {}, caller.labels)));
  const policiesOf = (callee: Pod) =>
    policies.filter(
      (np) =>
        Object.keys(np.spec.podSelector ?? {}).length === 0 ||
        selects(np.spec.podSelector.matchLabels, callee.labels),
    );
  for (const { caller, callee, port } of calls) {
    if (!policiesOf(callee).some((np) => (np.spec.ingress ?? []).some((r: Rule) => admits(r, caller, port))))
      problems.push(
        `${caller.w.metadata.name} dials ${callee.w.metadata.name} on ${port}, but no NetworkPolicy lets it in`,
      );
  }
  for (const np of policies) {
    const selected = pods.filter((x) => policiesOf(x).includes(np));
    if (selected.length === 0) continue; // dev's PostgreSQL and Redis
    for (const rule of (np.spec.ingress ?? []) as Rule[]) {
      for (const f of rule.from ?? []) {
        if (!f.podSelector) continue;
        for (const caller of pods.filter((x) => selects(f.podSelector?.matchLabels ?? {}, x.labels)))
          for (const { port } of rule.ports ?? [])
            if (!calls.some((k) => k.caller === caller && k.port === port && selected.includes(k.callee)))
              problems.push(
                `NetworkPolicy ${np.metadata.name}: lets ${caller.w.metadata.name} in on ${port}, which it never dials`,
              );
      }
    }
  }
  for (const d of objs.filter((o) => o.kind === "Deployment" && pods.some((x) => x.w === o))) {
    const pdb = objs.find(
      (o) =>
        o.kind === "PodDisruptionBudget" &&
        selects(o.spec.selector?.matchLabels, d.spec.template.metadata.labels),
    );
    if (!pdb || !(pdb.spec.minAvailable >= 1))
      problems.push(`Deployment ${d.metadata.name}: needs a PodDisruptionBudget of minAvailable 1`);
  }
  return problems;
}
/** checkKubernetes and checkServices together. */
function checkAll(objs: K8sObject[]): string[] {
  return [...checkKubernetes(objs), ...checkServices(objs)];
}

describe("deployment/kubernetes", () => {
  it("every manifest parses and validates against the Kubernetes schemas", () => {
    const files = yamlFiles(k8sDir).filter((f) => !isKustomization(f));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      for (const o of parseManifests(f)) {
        // Patches are partial objects; they are validated once merged, below.
        if (f.includes("/overlays/") && !["dev/postgres.yaml", "dev/redis.yaml"].some((x) => f.endsWith(x)))
          continue;
        expect(schemaError(o), f).toBeUndefined();
      }
    }
  });

  it.each(overlays)("overlay %s renders, validates, and agrees with the code", (overlay) => {
    const objs = rendered(overlay);
    for (const o of objs) expect(schemaError(o)).toBeUndefined();
    expect(checkAll(objs)).toEqual([]);
    const ns = overlay === "dev" ? "medisync-dev" : "medisync";
    expect(objs.filter((o) => o.kind !== "Namespace").every((o) => o.metadata.namespace === ns)).toBe(true);
    expect(find(objs, "StatefulSet", "inv").spec.replicas).toBe(3);
    expect(find(objs, "Deployment", "appointment").spec.replicas).toBe(2);
    // Stateless, and its instances share the work (SKIP LOCKED recovery, one consumer group).
    expect(find(objs, "Deployment", "medication").spec.replicas).toBe(2);
    expect(find(objs, "Deployment", "notification").spec.replicas).toBe(2);
  });

  it("the overlays differ where they mean to: in-cluster databases and demo data in dev only", () => {
    const dev = rendered("dev");
    const prod = rendered("production");
    expect(find(dev, "StatefulSet", "postgres")).toBeDefined();
    expect(find(prod, "StatefulSet", "postgres")).toBeUndefined();
    expect(find(dev, "ConfigMap", "medisync-config").data.SEED_DEMO).toBe("true");
    expect(find(prod, "ConfigMap", "medisync-config").data.SEED_DEMO).toBe("false");
    expect(find(prod, "Service", "gateway").spec.type).toBe("LoadBalancer");
    // Dev's medication database is on the in-cluster PostgreSQL, not the base's placeholder host.
    // So are its notification and inventory databases (a key the dev patch lacks keeps the base's).
    for (const key of ["MEDICATION_DATABASE_URL", "NOTIFICATION_DATABASE_URL", "INVENTORY_DATABASE_URL"])
      expect(new URL(find(dev, "Secret", "medisync-db").stringData[key]).hostname, key).toBe("postgres");
    expect(find(prod, "Deployment", "gateway").spec.template.spec.containers[0].image).toBe(
      "registry.example.com/medisync:0.1.0",
    );
    // The production Secret is a placeholder: nothing that looks like a real credential is shipped.
    expect(
      Object.values(find(prod, "Secret", "medisync-db").stringData).every((v) =>
        String(v).includes("example"),
      ),
    ).toBe(true);
  });

  it("only the gateway is open to everyone; each gRPC port only to the pods that dial it", () => {
    const objs = rendered("production");
    const open = objs.filter(
      (o) => o.kind === "NetworkPolicy" && o.spec.ingress?.some((r: { from?: unknown }) => !r.from),
    );
    expect(open.map((o) => o.spec.podSelector.matchLabels)).toEqual([
      { "app.kubernetes.io/name": "gateway" },
    ]);
    const from = (policy: string) =>
      find(objs, "NetworkPolicy", policy)
        .spec.ingress.flatMap((r: { from: { podSelector: { matchLabels: object } }[] }) =>
          r.from.map((f) => f.podSelector.matchLabels["app.kubernetes.io/name" as never]),
        )
        .sort();
    expect(from("inventory-from-gateway-medication-and-peers")).toEqual([
      "gateway",
      "inventory",
      "medication",
    ]);
    expect(from("appointment-from-gateway-and-medication")).toEqual(["gateway", "medication"]);
    expect(from("medication-from-gateway")).toEqual(["gateway"]);
    expect(from("notification-from-gateway")).toEqual(["gateway"]);
  });

  it("the monitoring namespace may reach every ops port a pod declares, and no other port", () => {
    const objs = rendered("production");
    const declared = objs
      .filter((o) => ["Deployment", "StatefulSet"].includes(o.kind))
      .flatMap((o) => o.spec.template.spec.containers)
      .flatMap((c: { ports?: { name: string; containerPort: number }[] }) => c.ports ?? [])
      .filter((p: { name: string }) => p.name === "ops")
      .map((p: { containerPort: number }) => p.containerPort);
    const allowed = find(objs, "NetworkPolicy", "ops-from-monitoring").spec.ingress.flatMap(
      (r: { ports: { port: number }[] }) => r.ports.map((p) => p.port),
    );
    expect([...new Set(allowed)].sort()).toEqual([...new Set(declared)].sort());
    expect(declared.length).toBeGreaterThanOrEqual(3);
  });

  describe("a broken manifest is caught", () => {
    const mutate = (fn: (objs: K8sObject[]) => void) => {
      const objs = rendered("production");
      fn(objs);
      return checkAll(objs);
    };
    const inventory = (objs: K8sObject[]) =>
      find(objs, "StatefulSet", "inv").spec.template.spec.containers[0];

    it("by the schema: a port that is not a number", () => {
      const sts = structuredClone(find(rendered("production"), "StatefulSet", "inv"));
      sts.spec.template.spec.containers[0].ports[0].containerPort = "grpc";
      expect(schemaError(sts)).toMatch(/containerPort must be integer/);
    });

    it("a wrong container port", () => {
      const problems = mutate((o) => {
        inventory(o).ports[0].containerPort = 50062;
      });
      expect(problems).toContain(
        "StatefulSet inv/inventory: listens on 50061, which no containerPort declares",
      );
    });

    it("an unknown env name, in a container or in the ConfigMap", () => {
      expect(mutate((o) => inventory(o).env.push({ name: "INVENTORY_PORT", value: "1" }))).toContain(
        "StatefulSet inv/inventory: env INVENTORY_PORT is not a variable of src/shared/config.ts",
      );
      const problems = mutate((o) => {
        find(o, "ConfigMap", "medisync-config").data.GATEWAY_PORT = "8080";
      });
      expect(problems.some((p) => p.includes("key GATEWAY_PORT is not a variable"))).toBe(true);
    });

    it("a value the config rejects, and a port moved in the config but not in the manifest", () => {
      expect(
        mutate((o) => (find(o, "ConfigMap", "medisync-config").data.INVENTORY_PEERS = "inv-0")).join(),
      ).toMatch(/INVENTORY_PEERS: id=host:port/);
      expect(
        mutate((o) => (find(o, "ConfigMap", "medisync-config").data.APPOINTMENT_OPS_PORT = "9402")),
      ).toContain("Deployment appointment/appointment: readinessProbe port ops is not the ops port 9402");
    });

    it("a replica count that does not match the peer list", () => {
      expect(mutate((o) => (find(o, "StatefulSet", "inv").spec.replicas = 5))).toContain(
        "StatefulSet inv: 5 replicas, but INVENTORY_PEERS lists 3",
      );
    });

    it("a peer the StatefulSet does not have, a Service port, a NetworkPolicy port, a missing PDB", () => {
      expect(mutate((o) => (find(o, "StatefulSet", "inv").spec.replicas = 2)).join()).toMatch(
        /dials inv-2\.inventory-peers:50061, which is no pod/,
      );
      expect(mutate((o) => (find(o, "Service", "appointment").spec.ports[0].port = 50052)).join()).toMatch(
        /dials appointment:50051, but Service appointment has no port 50051/,
      );
      expect(
        mutate(
          (o) =>
            (find(
              o,
              "NetworkPolicy",
              "inventory-from-gateway-medication-and-peers",
            ).spec.ingress[0].ports[0].port = 50062),
        ),
      ).toContain(
        "NetworkPolicy inventory-from-gateway-medication-and-peers: opens port 50062, on which no selected pod listens",
      );
      expect(mutate((o) => o.splice(o.indexOf(find(o, "PodDisruptionBudget", "inventory")), 1))).toContain(
        "StatefulSet inv: needs a PodDisruptionBudget of minAvailable 2",
      );
      expect(
        mutate((o) => (find(o, "Service", "inventory-peers").spec.publishNotReadyAddresses = false)).join(),
      ).toMatch(/publishNotReadyAddresses/);
    });

    const medication = (objs: K8sObject[]) =>
      find(objs, "Deployment", "medication").spec.template.spec.containers[0];
    const config = (objs: K8sObject[]) => find(objs, "ConfigMap", "medisync-config").data;

    it("medication: a wrong container port, a port moved in the config only, a probe off the ops port", () => {
      expect(mutate((o) => (medication(o).ports[0].containerPort = 50072))).toEqual(
        expect.arrayContaining([
          "Deployment medication/medication: listens on 50071, which no containerPort declares",
          "Deployment medication/medication: containerPort 50072 is a port medication does not listen on",
        ]),
      );
      expect(mutate((o) => (config(o).MEDICATION_OPS_PORT = "9432"))).toContain(
        "Deployment medication/medication: readinessProbe port ops is not the ops port 9432",
      );
      expect(mutate((o) => (medication(o).livenessProbe.httpGet.port = 50071))).toContain(
        "Deployment medication/medication: livenessProbe port 50071 is not the ops port 9431",
      );
      expect(mutate((o) => (medication(o).readinessProbe.httpGet.path = "/healthz"))).toContain(
        "Deployment medication/medication: readinessProbe path /healthz, the ops server serves /readyz",
      );
      expect(mutate((o) => o.splice(o.indexOf(find(o, "PodDisruptionBudget", "medication")), 1))).toContain(
        "Deployment medication: needs a PodDisruptionBudget of minAvailable 1",
      );
    });

    it("medication: the gateway's MEDICATION_ADDRS, and what medication dials, reach the right pods", () => {
      expect(mutate((o) => (find(o, "Service", "medication").spec.ports[0].port = 50072))).toContain(
        "gateway: MEDICATION_ADDRS medication:50071: no Service with that name and port",
      );
      expect(mutate((o) => (config(o).MEDICATION_ADDRS = "appointment:50051"))).toContain(
        "gateway: MEDICATION_ADDRS appointment:50051: reaches appointment pods, not medication",
      );
      // The Service's port exists, but routes to the ops port.
      expect(mutate((o) => (find(o, "Service", "medication").spec.ports[0].targetPort = "ops"))).toContain(
        "gateway: MEDICATION_ADDRS medication:50071: reaches port 9431 of medication, which serves gRPC on 50071",
      );
      // Medication's own dials: shared ConfigMap values, so a wrong one is its problem too.
      expect(mutate((o) => (config(o).APPOINTMENT_ADDRS = "medication:50071"))).toContain(
        "medication: APPOINTMENT_ADDRS medication:50071: reaches medication pods, not appointment",
      );
    });

    it("medication: a NetworkPolicy that shuts out a caller, or lets in a pod that never dials", () => {
      const dropMedication = (policy: string) => (o: K8sObject[]) => {
        const rule = find(o, "NetworkPolicy", policy).spec.ingress[0];
        rule.from = rule.from.filter(
          (f: { podSelector: { matchLabels: Record<string, string> } }) =>
            f.podSelector.matchLabels["app.kubernetes.io/name"] !== "medication",
        );
      };
      expect(mutate(dropMedication("appointment-from-gateway-and-medication"))).toContain(
        "medication dials appointment on 50051, but no NetworkPolicy lets it in",
      );
      expect(mutate(dropMedication("inventory-from-gateway-medication-and-peers"))).toContain(
        "medication dials inv on 50061, but no NetworkPolicy lets it in",
      );
      expect(
        mutate((o) => o.splice(o.indexOf(find(o, "NetworkPolicy", "medication-from-gateway")), 1)),
      ).toContain("gateway dials medication on 50071, but no NetworkPolicy lets it in");
      expect(
        mutate((o) =>
          find(o, "NetworkPolicy", "medication-from-gateway").spec.ingress[0].from.push({
            podSelector: { matchLabels: { "app.kubernetes.io/name": "notification" } },
          }),
        ),
      ).toContain(
        "NetworkPolicy medication-from-gateway: lets notification in on 50071, which it never dials",
      );
      expect(
        mutate((o) =>
          find(o, "NetworkPolicy", "appointment-from-gateway-and-medication").spec.ingress[0].from.push({
            podSelector: { matchLabels: { "app.kubernetes.io/name": "inventory" } },
          }),
        ),
      ).toContain(
        "NetworkPolicy appointment-from-gateway-and-medication: lets inv in on 50051, which it never dials",
      );
    });

    const notification = (objs: K8sObject[]) =>
      find(objs, "Deployment", "notification").spec.template.spec.containers[0];

    it("notification: its gRPC port, the gateway's NOTIFICATION_ADDRS, and its NetworkPolicy", () => {
      expect(mutate((o) => (notification(o).ports[0].containerPort = 50082))).toEqual(
        expect.arrayContaining([
          "Deployment notification/notification: listens on 50081, which no containerPort declares",
          "Deployment notification/notification: containerPort 50082 is a port notification does not listen on",
        ]),
      );
      // The gateway told the wrong port, or the wrong service, or the Service moved.
      expect(mutate((o) => (config(o).NOTIFICATION_ADDRS = "notification:50082"))).toContain(
        "gateway: NOTIFICATION_ADDRS notification:50082: no Service with that name and port",
      );
      expect(mutate((o) => (config(o).NOTIFICATION_ADDRS = "medication:50071"))).toContain(
        "gateway: NOTIFICATION_ADDRS medication:50071: reaches medication pods, not notification",
      );
      expect(mutate((o) => (find(o, "Service", "notification").spec.ports[0].targetPort = "ops"))).toContain(
        "gateway: NOTIFICATION_ADDRS notification:50081: reaches port 9421 of notification, which serves gRPC on 50081",
      );
      // Missing from the ConfigMap, the gateway would dial the default 127.0.0.1:50081.
      expect(mutate((o) => delete config(o).NOTIFICATION_ADDRS)).toContain(
        "gateway: NOTIFICATION_ADDRS 127.0.0.1:50081: no Service with that name and port",
      );
      expect(
        mutate((o) => o.splice(o.indexOf(find(o, "NetworkPolicy", "notification-from-gateway")), 1)),
      ).toContain("gateway dials notification on 50081, but no NetworkPolicy lets it in");
      expect(
        mutate((o) =>
          find(o, "NetworkPolicy", "notification-from-gateway").spec.ingress[0].from.push({
            podSelector: { matchLabels: { "app.kubernetes.io/name": "medication" } },
          }),
        ),
      ).toContain(
        "NetworkPolicy notification-from-gateway: lets medication in on 50081, which it never dials",
      );
      expect(mutate((o) => o.splice(o.indexOf(find(o, "PodDisruptionBudget", "notification")), 1))).toContain(
        "Deployment notification: needs a PodDisruptionBudget of minAvailable 1",
      );
    });

    const gateway = (objs: K8sObject[]) =>
      find(objs, "Deployment", "gateway").spec.template.spec.containers[0];
    const auth = (objs: K8sObject[]) => find(objs, "ConfigMap", "medisync-auth").data;

    it("gateway: no JWKS (no URL, or a file on no Secret), or a JWKS over plain http", () => {
      expect(mutate((o) => delete auth(o).AUTH_JWKS_URL)).toContain(
        "Deployment gateway/gateway: no JWKS: AUTH_JWKS_URL is unset and AUTH_JWKS_FILE data/auth/jwks.json is not on a mounted Secret",
      );
      expect(mutate((o) => (auth(o).AUTH_JWKS_URL = "http://idp.example.com/jwks.json"))).toContain(
        "Deployment gateway/gateway: AUTH_JWKS_URL http://idp.example.com/jwks.json is not https",
      );
      // Dev's file without its Secret volume: the gateway would not start.
      const dev = rendered("dev");
      const g = gateway(dev);
      g.volumeMounts = g.volumeMounts.filter((m: { name: string }) => m.name !== "auth-jwks");
      expect(checkAll(dev)).toContain(
        "Deployment gateway/gateway: no JWKS: AUTH_JWKS_URL is unset and AUTH_JWKS_FILE /etc/medisync/auth/jwks.json is not on a mounted Secret",
      );
    });

    it("gateway: its ops port published, opened to anyone, undeclared, or moved in the config only", () => {
      // On the LoadBalancer Service, by number or by name.
      for (const targetPort of [9400, "ops"])
        expect(
          mutate((o) =>
            find(o, "Service", "gateway").spec.ports.push({ name: "metrics", port: 9400, targetPort }),
          ),
        ).toContain("Service gateway (LoadBalancer): publishes the ops port 9400 of gateway");
      // Instead of the HTTP port: published, and the HTTP port no longer reachable.
      expect(mutate((o) => (find(o, "Service", "gateway").spec.ports[0].targetPort = "ops"))).toEqual(
        expect.arrayContaining([
          "Service gateway (LoadBalancer): publishes the ops port 9400 of gateway",
          "Deployment gateway: no Service routes to its HTTP port 8080",
        ]),
      );
      expect(
        mutate((o) =>
          find(o, "NetworkPolicy", "gateway-from-anywhere").spec.ingress[0].ports.push({
            protocol: "TCP",
            port: 9400,
          }),
        ),
      ).toContain("NetworkPolicy gateway-from-anywhere: opens the ops port 9400 of gateway to anyone");
      expect(
        mutate((o) => delete find(o, "NetworkPolicy", "gateway-from-anywhere").spec.ingress[0].ports),
      ).toContain("NetworkPolicy gateway-from-anywhere: opens the ops port 9400 of gateway to anyone");
      expect(mutate((o) => gateway(o).ports.pop())).toContain(
        "Deployment gateway/gateway: listens on 9400, which no containerPort declares",
      );
      expect(mutate((o) => (config(o).GATEWAY_OPS_PORT = "9499"))).toEqual(
        expect.arrayContaining([
          "Deployment gateway/gateway: listens on 9499, which no containerPort declares",
          "Deployment gateway/gateway: containerPort 9400 is a port gateway does not listen on",
        ]),
      );
      expect(mutate((o) => (gateway(o).livenessProbe.httpGet.port = 50051))).toContain(
        "Deployment gateway/gateway: livenessProbe port 50051 is neither the HTTP port 8080 nor the ops port 9400",
      );
    });
  });
});

describe("the gateway in each overlay", () => {
  it.each(overlays)(
    "%s: keys to check tokens with, HTTP published, ops port declared but inside",
    (overlay) => {
      const objs = rendered(overlay);
      const w = find(objs, "Deployment", "gateway");
      const [pod] = medisyncPods(objs).filter((p) => p.w === w);
      const cfg = pod!.cfg;
      if (overlay === "production") {
        // A placeholder an operator replaces, never a key source that would work by accident.
        expect(cfg.AUTH_JWKS_URL).toBe("https://idp.example.com/.well-known/jwks.json");
      } else {
        expect(cfg.AUTH_JWKS_URL).toBeUndefined();
        const mount = pod!.c.volumeMounts.find((m: { mountPath: string }) =>
          cfg.AUTH_JWKS_FILE.startsWith(`${m.mountPath}/`),
        );
        const volume = w.spec.template.spec.volumes.find((v: { name: string }) => v.name === mount.name);
        expect(volume.secret.secretName).toBe("medisync-auth-jwks");
        expect(cfg.AUTH_JWKS_FILE).toBe("/etc/medisync/auth/jwks.json");
        expect([cfg.AUTH_ISSUER, cfg.AUTH_AUDIENCE]).toEqual(["medisync-dev", "medisync"]);
      }
      expect(pod!.c.ports).toContainEqual({ name: "ops", containerPort: cfg.GATEWAY_OPS_PORT });
      const svc = find(objs, "Service", "gateway");
      expect(svc.spec.ports.map((p: { targetPort: string }) => portOf(pod!.c, p.targetPort))).toEqual([
        cfg.PORT,
      ]);
    },
  );
});

type FlyToml = {
  app: string;
  processes?: Record<string, string>;
  env?: Record<string, string>;
  deploy?: { release_command?: string };
  http_service?: { internal_port: number; checks?: { path: string }[] };
  services?: { internal_port: number }[];
  checks?: Record<string, { port: number; path: string }>;
  mounts?: { source: string; destination: string }[];
  /** Files written at boot from a secret's base64 value (the TLS certificates). */
  files?: { guest_path: string; secret_name: string }[];
};
const flyDir = "deployment/fly";
const fly = (name: string) =>
  parseToml(readFileSync(path.join(flyDir, `${name}.fly.toml`), "utf8")) as unknown as FlyToml;
const createScript = readFileSync(path.join(flyDir, "create.sh"), "utf8");
/** Secrets that are files' contents (fly.toml [[files]]), not variables: the TLS certificates. */
const fileSecretNames = new Set(
  ["gateway", "appointment", "inventory", "notification", "medication"].flatMap((n) =>
    (fly(n).files ?? []).map((f) => f.secret_name),
  ),
);
// The variables create.sh sets as secrets; fly.toml's [env] holds the rest.
const secretNames = [
  ...new Set(
    createScript
      .split("\n")
      .filter((l) => l.includes("fly secrets set"))
      .flatMap((l) => [...l.matchAll(/\b([A-Z_]+)="\$/g)].map((m) => m[1]!))
      .filter((n) => !fileSecretNames.has(n)),
  ),
];
const placeholderSecrets = Object.fromEntries(
  secretNames.map((n) => [
    n,
    n === "AUTH_JWKS_URL"
      ? "https://idp.example.com/.well-known/jwks.json"
      : n === "REDIS_URL"
        ? "redis://r.example.internal:6379"
        : "postgres://u@db.example.internal:5432/x",
  ]),
);

/** The secrets create.sh sets for one app (`fly secrets set --app <app>`). */
const secretsOf = (app: string) =>
  createScript
    .split("\n")
    .filter((l) => l.includes("fly secrets set") && l.includes(`--app ${app} `))
    .flatMap((l) => [...l.matchAll(/\b([A-Z_]+)="\$/g)].map((m) => m[1]!))
    .filter((n) => !fileSecretNames.has(n));

/**
 * Every problem in one fly.toml; [] when it agrees with the code. `apps` are the fly.toml files the
 * addresses it dials must name (read from deployment/fly unless a test passes a changed one).
 */
function checkFly(
  t: FlyToml,
  apps: Record<string, FlyToml> = {
    appointment: fly("appointment"),
    medication: fly("medication"),
    notification: fly("notification"),
  },
): string[] {
  const problems: string[] = [];
  const command = t.processes?.app ?? "";
  if (!cliCommands.includes(command)) problems.push(`${t.app}: medisync has no command ${command}`);
  for (const k of Object.keys(t.env ?? {}))
    if (!(envNames as string[]).includes(k)) problems.push(`${t.app}: env ${k} is unknown`);
  if (t.deploy?.release_command && !cliCommands.includes(t.deploy.release_command))
    problems.push(`${t.app}: release_command ${t.deploy.release_command} is no command`);
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig({ ...t.env, ...placeholderSecrets, REDIS_URL: "redis://r.example.internal:6379" });
  } catch (err) {
    return [...problems, `${t.app}: ${(err as Error).message}`];
  }
  const ports = servicePorts(command, cfg);
  if (t.http_service && command !== "gateway")
    problems.push(`${t.app}: ${command} is private, but has an [http_service]`);
  if (command !== "gateway" && Object.keys(t.checks ?? {}).length === 0)
    problems.push(`${t.app}: no check on the ops port ${ports.ops}`);
  for (const c of Object.values(t.checks ?? {}))
    if (c.path !== "/readyz" && c.path !== "/healthz")
      problems.push(`${t.app}: check path ${c.path}, the ops server serves /readyz and /healthz`);
  if (command === "gateway") {
    // Fly's proxy publishes [http_service] and [[services]]: the HTTP port, never the ops port.
    if (!t.http_service) problems.push(`${t.app}: no [http_service] on ${ports.serve}`);
    for (const p of [t.http_service?.internal_port, ...(t.services ?? []).map((x) => x.internal_port)])
      if (p === ports.ops) problems.push(`${t.app}: publishes the ops port ${ports.ops}`);
    // It does not start without keys: the identity provider's URL (a secret create.sh sets), or a file.
    const url =
      t.env?.AUTH_JWKS_URL ?? (secretsOf(t.app).includes("AUTH_JWKS_URL") ? cfg.AUTH_JWKS_URL : undefined);
    if (url === undefined && !t.files?.some((f) => f.guest_path === cfg.AUTH_JWKS_FILE))
      problems.push(`${t.app}: no JWKS: no AUTH_JWKS_URL secret and no [[files]] at ${cfg.AUTH_JWKS_FILE}`);
    else if (url !== undefined && !url.startsWith("https://"))
      problems.push(`${t.app}: AUTH_JWKS_URL ${url} is not https`);
    if (!t.env?.AUTH_ISSUER)
      problems.push(
        `${t.app}: no AUTH_ISSUER: only the development issuer ${cfg.AUTH_ISSUER} would be accepted`,
      );
  }
  if (t.http_service && t.http_service.internal_port !== ports.serve)
    problems.push(
      `${t.app}: internal_port ${t.http_service.internal_port}, but ${command} listens on ${ports.serve}`,
    );
  for (const c of Object.values(t.checks ?? {}))
    if (c.port !== ports.ops)
      problems.push(`${t.app}: check on port ${c.port}, the ops port is ${ports.ops}`);
  if (command === "inventory") {
    if (t.mounts?.[0]?.destination !== cfg.INVENTORY_DATA_DIR)
      problems.push(`${t.app}: INVENTORY_DATA_DIR is not on the volume`);
    if (!cfg.INVENTORY_PEERS.some((p) => p.id === cfg.INVENTORY_ID))
      problems.push(`${t.app}: INVENTORY_ID is not a peer`);
  }
  // What it dials (the `dials` table above): the callee app's private name and the port it binds.
  for (const { variable, callee } of dials[command] ?? []) {
    if (variable === "INVENTORY_PEERS") {
      for (const p of cfg.INVENTORY_PEERS)
        if (p.address !== `medisync-${p.id}.internal:${cfg.INVENTORY_GRPC_PORT}`)
          problems.push(`${t.app}: peer ${p.id}=${p.address} is not its app's private name and port`);
      continue;
    }
    const app = apps[callee]!;
    const want = `${app.app}.internal:${servicePorts(callee, loadConfig(app.env)).serve}`;
    for (const a of addressesOf(cfg, variable))
      if (a !== want)
        problems.push(`${t.app}: ${variable} ${a} is not the ${callee} app's private name and port ${want}`);
  }
  return problems;
}

describe("deployment/fly", () => {
  const services = ["gateway", "appointment", "inventory", "notification", "medication"];

  it.each(services)("%s.fly.toml agrees with what the code reads", (name) => {
    expect(checkFly(fly(name))).toEqual([]);
  });

  it.each(services)(
    "%s.fly.toml has its TLS files, each from a secret create.sh sets for every app",
    (name) => {
      const t = fly(name);
      const cfg = loadConfig({ ...t.env, ...placeholderSecrets });
      const paths = [cfg.TLS_CA_FILE, cfg.TLS_CERT_FILE, cfg.TLS_KEY_FILE];
      expect(paths.every((p) => p !== undefined)).toBe(true);
      const tlsSetter = createScript.slice(createScript.indexOf("tls_secrets() {"));
      for (const p of paths) {
        const file = t.files?.find((f) => f.guest_path === p);
        expect(file, `${name}: ${p}`).toBeDefined();
        expect(tlsSetter.split("}")[0]).toContain(`${file!.secret_name}="$(base64 -w0 `);
      }
      // Every app gets them: each replica its own certificate, each other app its service's.
      const app = name === "inventory" ? '"medisync-$id" "$id"' : '"medisync-$name" "$name"';
      expect(createScript).toContain(`tls_secrets ${app}`);
      if (name !== "inventory")
        expect(createScript).toMatch(new RegExp(`for name in [^;]*\\b${name}\\b[^;]*; do tls_secrets`));
    },
  );

  it("create.sh sets only known secrets and creates one app, volume and deploy per peer", () => {
    expect(secretNames.sort()).toEqual(
      expect.arrayContaining([
        "DATABASE_URL",
        "INVENTORY_DATABASE_URL",
        "MEDICATION_DATABASE_URL",
        "REDIS_URL",
      ]),
    );
    // Each app gets the database its service reads (a missing one would default to 127.0.0.1) and Redis.
    expect(secretsOf(fly("appointment").app).sort()).toEqual(["DATABASE_URL", "REDIS_URL"]);
    expect(secretsOf(fly("notification").app).sort()).toEqual(["NOTIFICATION_DATABASE_URL", "REDIS_URL"]);
    expect(secretsOf(fly("medication").app).sort()).toEqual(["MEDICATION_DATABASE_URL", "REDIS_URL"]);
    expect(secretsOf(fly("gateway").app).sort()).toEqual([
      "AUDIT_DATABASE_URL",
      "AUTH_JWKS_URL",
      "DATABASE_URL",
      "REDIS_URL",
    ]);
    // Each is required before anything is created (set -u alone would stop halfway through).
    for (const n of secretNames) expect(createScript).toContain(`:?set ${n}}`);
    for (const name of ["appointment", "notification", "medication", "gateway"]) {
      expect(createScript).toContain(`create_app ${fly(name).app}\n`);
      expect(createScript).toContain(`fly deploy --config ${name}.fly.toml`);
    }
    for (const n of secretNames) expect(envNames).toContain(n);
    const replicas = /replicas=\(([^)]*)\)/.exec(createScript)![1]!.trim().split(/\s+/);
    const peers = loadConfig(fly("gateway").env).INVENTORY_PEERS.map((p) => p.id);
    expect(replicas).toEqual(peers);
    expect(loadConfig(fly("inventory").env).INVENTORY_PEERS.map((p) => p.id)).toEqual(peers);
    expect(createScript).toContain(`fly volumes create ${fly("inventory").mounts![0]!.source}`);
    // Volumes exist before the replicas that mount them are deployed, and the gateway comes last.
    const at = (s: string) => createScript.indexOf(s);
    expect(at("fly volumes create")).toBeLessThan(at("--config inventory.fly.toml"));
    expect(at("--config inventory.fly.toml")).toBeLessThan(at("--config gateway.fly.toml"));
    // Medication after what it dials (inventory, appointment), before the gateway that dials it.
    expect(at("--config appointment.fly.toml")).toBeLessThan(at("--config medication.fly.toml"));
    expect(at("--config inventory.fly.toml")).toBeLessThan(at("--config medication.fly.toml"));
    expect(at("--config medication.fly.toml")).toBeLessThan(at("--config gateway.fly.toml"));
    expect(at("fly secrets set --app medisync-medication")).toBeLessThan(at("--config medication.fly.toml"));
  });

  it("the gateway: its ops port set and unpublished, a JWKS, and the issuer an operator sets", () => {
    const gw = fly("gateway");
    const cfg = loadConfig({ ...gw.env, ...placeholderSecrets });
    expect(cfg.GATEWAY_OPS_PORT).toBe(9400);
    expect(gw.http_service?.internal_port).toBe(cfg.PORT);
    expect(gw.env?.AUTH_ISSUER).toBe("https://idp.example.com/");
    expect(gw.env?.AUTH_AUDIENCE).toBe("medisync");
    expect(checkFly({ ...gw, http_service: { internal_port: 9400 } })).toEqual(
      expect.arrayContaining([
        "medisync-gateway: publishes the ops port 9400",
        "medisync-gateway: internal_port 9400, but gateway listens on 8080",
      ]),
    );
    expect(checkFly({ ...gw, services: [{ internal_port: 9400 }] })).toEqual([
      "medisync-gateway: publishes the ops port 9400",
    ]);
    const { http_service: _h, ...private_ } = gw;
    expect(checkFly(private_)).toContain("medisync-gateway: no [http_service] on 8080");
    // The ops port moved in its env onto the public one.
    expect(checkFly({ ...gw, env: { ...gw.env, GATEWAY_OPS_PORT: "8080" } })).toContain(
      "medisync-gateway: publishes the ops port 8080",
    );
    const renamed = { ...gw, app: "medisync-gw" }; // an app create.sh sets no AUTH_JWKS_URL for
    expect(checkFly(renamed)).toContain(
      "medisync-gw: no JWKS: no AUTH_JWKS_URL secret and no [[files]] at data/auth/jwks.json",
    );
    expect(checkFly({ ...gw, env: { ...gw.env, AUTH_JWKS_URL: "http://idp.example.com/jwks" } })).toContain(
      "medisync-gateway: AUTH_JWKS_URL http://idp.example.com/jwks is not https",
    );
    const { AUTH_ISSUER: _i, ...noIssuer } = gw.env!;
    expect(checkFly({ ...gw, env: noIssuer })).toContain(
      "medisync-gateway: no AUTH_ISSUER: only the development issuer medisync-dev would be accepted",
    );
  });

  it("create.sh stops before touching Fly with a placeholder issuer or a JWKS URL that is not https", () => {
    // Run for real, in a copy, with a `fly` on PATH that records its calls and fails (set -e stops there).
    const dir = mkdtempSync(path.join(tmpdir(), "medisync-fly-"));
    try {
      writeFileSync(path.join(dir, "fly"), `#!/bin/sh\necho "$@" >> "${dir}/calls"\nexit 1\n`, {
        mode: 0o755,
      });
      copyFileSync(path.join(flyDir, "create.sh"), path.join(dir, "create.sh"));
      const run = (toml: string, jwksUrl: string) => {
        writeFileSync(path.join(dir, "gateway.fly.toml"), toml);
        rmSync(path.join(dir, "calls"), { force: true });
        const r = spawnSync("bash", [path.join(dir, "create.sh")], {
          encoding: "utf8",
          env: {
            PATH: `${dir}:${process.env.PATH}`,
            ...Object.fromEntries(secretNames.map((n) => [n, placeholderSecrets[n]])),
            AUTH_JWKS_URL: jwksUrl,
          },
        });
        return { status: r.status, stderr: r.stderr, flyCalled: existsSync(path.join(dir, "calls")) };
      };
      const shipped = readFileSync(path.join(flyDir, "gateway.fly.toml"), "utf8");
      const jwks = "https://idp.clinic.test/.well-known/jwks.json";
      const placeholder = run(shipped, jwks);
      expect(placeholder).toMatchObject({ status: 1, flyCalled: false });
      expect(placeholder.stderr).toContain("set AUTH_ISSUER in gateway.fly.toml");
      const real = shipped.replace(
        'AUTH_ISSUER = "https://idp.example.com/"',
        'AUTH_ISSUER = "https://idp.clinic.test/"',
      );
      expect(real).not.toBe(shipped);
      const http = run(real, "http://idp.clinic.test/jwks.json");
      expect(http).toMatchObject({ status: 1, flyCalled: false });
      expect(http.stderr).toContain("AUTH_JWKS_URL must be https");
      // Both set: the guards pass and the script goes on to Fly (the stub fails it there).
      expect(run(real, jwks)).toMatchObject({ status: 1, flyCalled: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a broken fly.toml is caught: wrong port, unknown env name, a peer off its app", () => {
    const gw = fly("gateway");
    expect(checkFly({ ...gw, http_service: { internal_port: 3000 } })).toContain(
      "medisync-gateway: internal_port 3000, but gateway listens on 8080",
    );
    expect(checkFly({ ...gw, env: { ...gw.env, GATEWAY_PORT: "8080" } })).toContain(
      "medisync-gateway: env GATEWAY_PORT is unknown",
    );
    const inv = fly("inventory");
    expect(checkFly({ ...inv, checks: { alive: { port: 9401, path: "/healthz" } } })).toContain(
      "medisync-inv-1: check on port 9401, the ops port is 9411",
    );
    const peers = inv.env!.INVENTORY_PEERS!.replace("medisync-inv-2.internal", "medisync-inv-9.internal");
    expect(checkFly({ ...inv, env: { ...inv.env, INVENTORY_PEERS: peers } }).join()).toMatch(
      /peer inv-2=medisync-inv-9/,
    );
  });

  it("a broken medication fly.toml, or a gateway that dials it wrong, is caught", () => {
    const med = fly("medication");
    expect(checkFly({ ...med, checks: { ready: { port: 9401, path: "/readyz" } } })).toContain(
      "medisync-medication: check on port 9401, the ops port is 9431",
    );
    expect(checkFly({ ...med, checks: {} })).toContain("medisync-medication: no check on the ops port 9431");
    expect(checkFly({ ...med, http_service: { internal_port: 50071 } })).toContain(
      "medisync-medication: medication is private, but has an [http_service]",
    );
    // The ops port moved in its env but not in the check.
    expect(checkFly({ ...med, env: { ...med.env, MEDICATION_OPS_PORT: "9432" } })).toContain(
      "medisync-medication: check on port 9431, the ops port is 9432",
    );
    expect(
      checkFly({ ...med, env: { ...med.env, APPOINTMENT_ADDRS: "medisync-appointment.internal:50071" } }),
    ).toContain(
      "medisync-medication: APPOINTMENT_ADDRS medisync-appointment.internal:50071 is not the appointment app's private name and port medisync-appointment.internal:50051",
    );
    const peers = med.env!.INVENTORY_PEERS!.replace(
      "medisync-inv-3.internal:50061",
      "medisync-inv-3.internal:50063",
    );
    expect(checkFly({ ...med, env: { ...med.env, INVENTORY_PEERS: peers } }).join()).toMatch(
      /medisync-medication: peer inv-3=medisync-inv-3.internal:50063/,
    );
    const gw = fly("gateway");
    for (const wrong of [
      "medisync-medication.internal:50051",
      "medisync-appointment.internal:50071",
      "medication:50071",
    ])
      expect(checkFly({ ...gw, env: { ...gw.env, MEDICATION_ADDRS: wrong } })).toContain(
        `medisync-gateway: MEDICATION_ADDRS ${wrong} is not the medication app's private name and port medisync-medication.internal:50071`,
      );
    // Missing from the gateway's env, it would dial the default 127.0.0.1:50071.
    const { MEDICATION_ADDRS: _, ...withoutAddrs } = gw.env!;
    expect(checkFly({ ...gw, env: withoutAddrs })).toContain(
      "medisync-gateway: MEDICATION_ADDRS 127.0.0.1:50071 is not the medication app's private name and port medisync-medication.internal:50071",
    );
    // Medication's gRPC port moved in its own fly.toml, the gateway not told.
    const moved = { ...med, env: { ...med.env, MEDICATION_GRPC_PORT: "50072" } };
    expect(
      checkFly(gw, { appointment: fly("appointment"), medication: moved, notification: fly("notification") }),
    ).toContain(
      "medisync-gateway: MEDICATION_ADDRS medisync-medication.internal:50071 is not the medication app's private name and port medisync-medication.internal:50072",
    );
  });

  it("a broken notification fly.toml, or a gateway that dials it wrong, is caught", () => {
    const ntf = fly("notification");
    expect(checkFly({ ...ntf, http_service: { internal_port: 50081 } })).toContain(
      "medisync-notification: notification is private, but has an [http_service]",
    );
    expect(checkFly({ ...ntf, checks: { ready: { port: 50081, path: "/readyz" } } })).toContain(
      "medisync-notification: check on port 50081, the ops port is 9421",
    );
    const gw = fly("gateway");
    for (const wrong of [
      "medisync-notification.internal:50082",
      "medisync-medication.internal:50081",
      "notification:50081",
    ])
      expect(checkFly({ ...gw, env: { ...gw.env, NOTIFICATION_ADDRS: wrong } })).toContain(
        `medisync-gateway: NOTIFICATION_ADDRS ${wrong} is not the notification app's private name and port medisync-notification.internal:50081`,
      );
    // Missing from the gateway's env, it would dial the default 127.0.0.1:50081.
    const { NOTIFICATION_ADDRS: _, ...withoutAddrs } = gw.env!;
    expect(checkFly({ ...gw, env: withoutAddrs })).toContain(
      "medisync-gateway: NOTIFICATION_ADDRS 127.0.0.1:50081 is not the notification app's private name and port medisync-notification.internal:50081",
    );
    // Notification's gRPC port moved in its own fly.toml, the gateway not told.
    const moved = { ...ntf, env: { ...ntf.env, NOTIFICATION_GRPC_PORT: "50082" } };
    expect(
      checkFly(gw, { appointment: fly("appointment"), medication: fly("medication"), notification: moved }),
    ).toContain(
      "medisync-gateway: NOTIFICATION_ADDRS medisync-notification.internal:50081 is not the notification app's private name and port medisync-notification.internal:50082",
    );
  });
});
