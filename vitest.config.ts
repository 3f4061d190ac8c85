import { defineConfig } from "vitest/config";

// One test command for everything (unit, simulation, integration, cluster). Integration tests use their
// own databases and Redis key prefixes, so files may run in parallel; 2 workers match a 2-core machine.
export default defineConfig({
  test: {
    include: [
      "src/**/*.test.ts",
      "raft/**/*.test.ts",
      "test/**/*.test.ts",
      "jepsen-lite/**/*.test.ts",
      "scripts/**/*.test.ts",
    ],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
