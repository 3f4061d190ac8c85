import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { policy } from "../src/shared/access-policy.ts";
import { FILE, withTable } from "./policy-table.ts";

describe("docs/security.md's table of who may do what", () => {
  it("matches src/shared/access-policy.ts (run `npm run docs:policy` after changing it)", () => {
    const doc = readFileSync(FILE, "utf8");
    expect(doc).toBe(withTable(doc));
    for (const key of Object.keys(policy)) expect(doc).toContain(`| \`${key}\` |`);
  });
});
