import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { envNames } from "../src/shared/config.ts";
import { withTable } from "./env-table.ts";

describe("README environment table", () => {
  it("matches the config schema (run `npm run docs:env` after changing src/shared/config.ts)", () => {
    const readme = readFileSync("README.md", "utf8");
    expect(readme).toBe(withTable(readme));
    for (const n of envNames) expect(readme).toContain(`| \`${n}\` |`);
  });
});
