// Owns rendering the kustomize subset deployment/kubernetes uses (resources, patches as strategic
// merges, images, namespace), so `npm test` can check overlays without kubectl (Debian ships no
// kubectl package). Anything outside that subset is refused rather than silently ignored.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field by the caller
  [k: string]: any;
};

const supported = new Set(["apiVersion", "kind", "namespace", "resources", "patches", "images"]);
const clusterScoped = new Set(["Namespace"]);

export function parseManifests(file: string): K8sObject[] {
  return YAML.parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/** Renders the kustomization in dir, as `kubectl kustomize dir` does for this subset. */
export function renderKustomization(dir: string): K8sObject[] {
  const k = YAML.parse(readFileSync(path.join(dir, "kustomization.yaml"), "utf8")) as Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!supported.has(key)) throw new Error(`${dir}: kustomization field ${key} is not supported here`);
  }
  const objects: K8sObject[] = [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = path.join(dir, r);
    objects.push(...(statSync(p).isDirectory() ? renderKustomization(p) : parseManifests(p)));
  }
  for (const patch of (k.patches ?? []) as { path?: string }[]) {
    if (!patch.path) throw new Error(`${dir}: only patches with a path are supported`);
    for (const doc of parseManifests(path.join(dir, patch.path))) {
      const target = objects.find((o) => o.kind === doc.kind && o.metadata.name === doc.metadata.name);
      if (!target) throw new Error(`${dir}/${patch.path}: no ${doc.kind} ${doc.metadata.name} to patch`);
      strategicMerge(target, doc);
    }
  }
  for (const img of (k.images ?? []) as { name: string; newName?: string; newTag?: string }[]) {
    for (const c of objects.flatMap(containersOf)) {
      const [name, tag] = splitImage(c.image);
      if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? tag ?? "latest"}`;
    }
  }
  if (typeof k.namespace === "string") {
    for (const o of objects) {
      if (o.kind === "Namespace") o.metadata.name = k.namespace;
      else if (!clusterScoped.has(o.kind)) o.metadata.namespace = k.namespace;
    }
  }
  return objects;
}

function splitImage(image: string): [string, string | undefined] {
  const i = image.lastIndexOf(":");
  return i > image.lastIndexOf("/") && i >= 0 ? [image.slice(0, i), image.slice(i + 1)] : [image, undefined];
}

// biome-ignore lint/suspicious/noExplicitAny: pod specs are plain YAML
export function containersOf(o: K8sObject): any[] {
  const spec = o.kind === "Pod" ? o.spec : o.spec?.template?.spec;
  return [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])];
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const keyOf = (v: unknown): unknown =>
  isMap(v) ? (v.name ?? (isMap(v.metadata) ? v.metadata.name : undefined)) : undefined;

/**
 * Maps merge key by key; lists of named items merge by name; any other list is replaced; a key
 * patched to null is deleted (as kustomize's strategic merge does: how an overlay drops a base key).
 */
export function strategicMerge(into: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    const current = into[key];
    if (value === null) delete into[key];
    else if (isMap(current) && isMap(value)) strategicMerge(current, value);
    else if (Array.isArray(current) && Array.isArray(value) && value.every((v) => keyOf(v) !== undefined)) {
      for (const item of value) {
        const existing = current.find((c) => keyOf(c) === keyOf(item));
        if (existing) strategicMerge(existing, item as Record<string, unknown>);
        else current.push(item);
      }
    } else into[key] = structuredClone(value);
  }
}
