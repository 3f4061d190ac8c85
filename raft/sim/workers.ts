// Owns fanning a soak out over child processes: each runs `script` with the caller's arguments
// (less --workers) plus its --worker-index and --worker-count, prints one JSON summary as its last
// stdout line, and reports failures on stderr as it goes. Shared by both simulator CLIs.
import { spawn } from "node:child_process";

export function runWorkers<T>(script: string, argv: string[], workers: number): Promise<T[]> {
  const pass = argv.filter((x, i, xs) => x !== "--workers" && xs[i - 1] !== "--workers");
  return Promise.all(
    Array.from(
      { length: workers },
      (_, index) =>
        new Promise<T>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            [
              ...process.execArgv,
              script,
              ...pass,
              "--worker-index",
              String(index),
              "--worker-count",
              String(workers),
            ],
            { stdio: ["ignore", "pipe", "inherit"] },
          );
          let out = "";
          child.stdout.on("data", (d) => {
            out += String(d);
          });
          child.on("error", reject);
          child.on("exit", (code) => {
            if (code !== 0) reject(new Error(`worker ${index} exited with ${code}`));
            else resolve(JSON.parse(out.trim().split("\n").pop()!) as T);
          });
        }),
    ),
  );
}
