// deployment/ checked offline: every Kubernetes manifest parses and validates against the
// Kubernetes schemas (kubernetes-models), every overlay renders, and what they run agrees with the
// code (env names and values through src/shared/config.ts, commands, ports, peers, replicas).
// Same for the fly.toml files and create.sh. Each check is also shown to catch a broken manifest.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import * as apps from "kubernetes-models/apps/v1";
import * as batch from "kubernetes-models/batch/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as core from "kubernetes-models/v1";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { envNames, loadConfig } from "../src/shared/config.ts";
import { type K8sObject, parseManifests, renderKustomization } from "./support/kustomize.ts";
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
    expect(checkKubernetes(objs)).toEqual([]);
    const ns = overlay === "dev" ? "medisync-dev" : "medisync";
    expect(objs.filter((o) => o.kind !== "Namespace").every((o) => o.metadata.namespace === ns)).toBe(true);
    expect(find(objs, "StatefulSet", "inv").spec.replicas).toBe(3);
    expect(find(objs, "Deployment", "appointment").spec.replicas).toBe(2);
  });

  it("the overlays differ where they mean to: in-cluster databases and demo data in dev only", () => {
    const dev = rendered("dev");
    const prod = rendered("production");
    expect(find(dev, "StatefulSet", "postgres")).toBeDefined();
    expect(find(prod, "StatefulSet", "postgres")).toBeUndefined();
    expect(find(dev, "ConfigMap", "medisync-config").data.SEED_DEMO).toBe("true");
    expect(find(prod, "ConfigMap", "medisync-config").data.SEED_DEMO).toBe("false");
    expect(find(prod, "Service", "gateway").spec.type).toBe("LoadBalancer");
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

  it("only the gateway is open to everyone; inventory's gRPC port only to the gateway and replicas", () => {
    const objs = rendered("production");
    const open = objs.filter(
      (o) => o.kind === "NetworkPolicy" && o.spec.ingress?.some((r: { from?: unknown }) => !r.from),
    );
    expect(open.map((o) => o.spec.podSelector.matchLabels)).toEqual([
      { "app.kubernetes.io/name": "gateway" },
    ]);
    const inv = find(objs, "NetworkPolicy", "inventory-from-gateway-and-peers");
    const from = inv.spec.ingress.flatMap((r: { from: { podSelector: { matchLabels: object } }[] }) =>
      r.from.map((f) => f.podSelector.matchLabels["app.kubernetes.io/name" as never]),
    );
    expect(from.sort()).toEqual(["gateway", "inventory"]);
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
      return checkKubernetes(objs);
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
            (find(o, "NetworkPolicy", "inventory-from-gateway-and-peers").spec.ingress[0].ports[0].port =
              50062),
        ),
      ).toContain(
        "NetworkPolicy inventory-from-gateway-and-peers: opens port 50062, on which no selected pod listens",
      );
      expect(mutate((o) => o.splice(o.indexOf(find(o, "PodDisruptionBudget", "inventory")), 1))).toContain(
        "StatefulSet inv: needs a PodDisruptionBudget of minAvailable 2",
      );
      expect(
        mutate((o) => (find(o, "Service", "inventory-peers").spec.publishNotReadyAddresses = false)).join(),
      ).toMatch(/publishNotReadyAddresses/);
    });
  });
});

type FlyToml = {
  app: string;
  processes?: Record<string, string>;
  env?: Record<string, string>;
  deploy?: { release_command?: string };
  http_service?: { internal_port: number; checks?: { path: string }[] };
  checks?: Record<string, { port: number; path: string }>;
  mounts?: { source: string; destination: string }[];
};
const flyDir = "deployment/fly";
const fly = (name: string) =>
  parseToml(readFileSync(path.join(flyDir, `${name}.fly.toml`), "utf8")) as unknown as FlyToml;
const createScript = readFileSync(path.join(flyDir, "create.sh"), "utf8");
// The secrets create.sh sets; fly.toml's [env] holds the rest.
const secretNames = [
  ...new Set(
    createScript
      .split("\n")
      .filter((l) => l.includes("fly secrets set"))
      .flatMap((l) => [...l.matchAll(/\b([A-Z_]+)="\$/g)].map((m) => m[1]!)),
  ),
];
const placeholderSecrets = Object.fromEntries(
  secretNames.map((n) => [n, "postgres://u@db.example.internal:5432/x"]),
);

/** Every problem in one fly.toml; [] when it agrees with the code. */
function checkFly(t: FlyToml): string[] {
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
  for (const p of command === "gateway" || command === "inventory" ? cfg.INVENTORY_PEERS : []) {
    if (p.address !== `medisync-${p.id}.internal:${cfg.INVENTORY_GRPC_PORT}`)
      problems.push(`${t.app}: peer ${p.id}=${p.address} is not its app's private name and port`);
  }
  for (const a of command === "gateway" ? cfg.APPOINTMENT_ADDRS : [])
    if (
      a !== `${fly("appointment").app}.internal:${loadConfig(fly("appointment").env).APPOINTMENT_GRPC_PORT}`
    )
      problems.push(`${t.app}: APPOINTMENT_ADDRS ${a} is not the appointment app's private name and port`);
  return problems;
}

describe("deployment/fly", () => {
  const services = ["gateway", "appointment", "inventory", "notification"];

  it.each(services)("%s.fly.toml agrees with what the code reads", (name) => {
    expect(checkFly(fly(name))).toEqual([]);
  });

  it("create.sh sets only known secrets and creates one app, volume and deploy per peer", () => {
    expect(secretNames.sort()).toEqual(
      expect.arrayContaining(["DATABASE_URL", "INVENTORY_DATABASE_URL", "REDIS_URL"]),
    );
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
});
