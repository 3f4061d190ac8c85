#!/usr/bin/env node
// Owns `npm start`: runs the compiled build in dist/ (what the benchmarks and the Docker image
// run; tsx's transform costs a hot path real time), compiling it first when a source or build
// setting is newer than the last build. Building here rather than in an npm `prepare` script keeps
// `npm ci` (CI, the Docker build stage) from paying for a build it does not use.
//   node scripts/start.mjs <medisync command>   (npm start: the supervisor)
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(import.meta.dirname, "..");
const main = path.join(root, "dist", "src", "cli", "main.js");
/** Touched with the time a successful build started: a source saved during a build is newer. */
const stamp = path.join(root, "dist", ".build-stamp");
const inputs = ["src", "raft", "tsconfig.json", "tsconfig.build.json", "package.json", "package-lock.json"];

function newestMtimeMs(p) {
  if (!existsSync(p)) return 0;
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  // A deleted file changes its directory's mtime, so the directory counts too.
  let newest = st.mtimeMs;
  for (const e of readdirSync(p)) newest = Math.max(newest, newestMtimeMs(path.join(p, e)));
  return newest;
}

function stale() {
  if (!existsSync(main) || !existsSync(stamp)) return true;
  const built = statSync(stamp).mtimeMs;
  return inputs.some((i) => newestMtimeMs(path.join(root, i)) > built);
}

if (stale()) {
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  } catch {
    process.stderr.write(
      "medisync: dist/ is missing or older than the sources, and TypeScript is not installed to build it (npm ci)\n",
    );
    process.exit(1);
  }
  const startedAt = new Date();
  process.stderr.write("medisync: building dist/ (sources newer than the last build)\n");
  try {
    execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
  } catch {
    process.stderr.write("medisync: build failed; nothing started\n");
    process.exit(1);
  }
  writeFileSync(stamp, "");
  utimesSync(stamp, startedAt, startedAt);
}

// The supervisor starts its children as `node <execArgv> <argv[1]> <service>`: the built entry point.
process.argv[1] = main;
await import(pathToFileURL(main).href);
