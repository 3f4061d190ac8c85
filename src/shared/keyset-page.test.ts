// Key positions and the paging of a list held whole: a walk through the pages sees every item once,
// in one order; a token stays short whatever the text; a token of another kind is refused.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "./errors.ts";
import {
  compareKeyPositions,
  decodeKeyPosition,
  decodePosition,
  encodeKeyPosition,
  encodePosition,
  type KeyPosition,
  pageOfHeld,
  positionKeyBytesMax,
  positionKeyOf,
} from "./keyset-page.ts";

const limits = { pageLimitDefault: 20, pageLimitMax: 100, cursorMax: 512 };
const uuid = "0b5e2f7c-3c41-4d8e-9a3b-6f1d2e4c5a7b";

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
};

describe("key positions", () => {
  it("round-trips, and refuses what it did not give out, naming cursor", () => {
    for (const p of [
      { key: "Harbour Clinic", id: uuid },
      { key: "amoxicillin-500mg", id: "" },
      { key: "", id: "" },
    ])
      expect(decodeKeyPosition(encodeKeyPosition(p), limits)).toEqual(p);
    expect(decodeKeyPosition("", limits)).toBeUndefined();
    const timeToken = encodePosition({ at: "2030-01-07T09:00:00.000001Z", id: uuid });
    for (const bad of [
      "x",
      timeToken,
      Buffer.from(JSON.stringify(["k", "a", "not-an-id"])).toString("base64url"),
      Buffer.from(JSON.stringify(["k", "a".repeat(positionKeyBytesMax + 1), ""])).toString("base64url"),
      Buffer.from(JSON.stringify(["k", 1, ""])).toString("base64url"),
    ]) {
      const e = refusal(() => decodeKeyPosition(bad, limits));
      expect(e, bad).toBeInstanceOf(AppError);
      expect(e).toMatchObject({ code: "VALIDATION", field: "cursor" });
    }
    // Nor is a key position taken for a time position.
    expect(
      refusal(() =>
        decodePosition(encodeKeyPosition({ key: "2030-01-07T09:00:00.000001Z", id: uuid }), limits),
      ),
    ).toMatchObject({ field: "cursor" });
  });

  it("a token stays within the services' cursorMax whatever the text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 800 }), (text) => {
        const key = positionKeyOf(text);
        expect(text.startsWith(key)).toBe(true);
        expect(positionKeyOf(key)).toBe(key);
        const token = encodeKeyPosition({ key, id: uuid });
        expect(token.length).toBeLessThanOrEqual(limits.cursorMax);
        expect(decodeKeyPosition(token, limits)).toEqual({ key, id: uuid });
      }),
    );
    expect(positionKeyOf("\u0000".repeat(1_000)).length).toBe(Math.floor(positionKeyBytesMax / 6));
  });
});

describe("pageOfHeld", () => {
  const item = fc.record({
    key: fc.string({ maxLength: 4 }),
    id: fc.uuid().map((s) => s.toLowerCase()),
  });

  it("walking the pages sees every item exactly once, in key then id order", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(item, { selector: (i) => i.id, maxLength: 60 }),
        fc.integer({ min: 1, max: 25 }),
        (items, size) => {
          const seen: KeyPosition[] = [];
          let token = "";
          for (let pages = 0; ; pages++) {
            expect(pages).toBeLessThanOrEqual(items.length);
            const { page, nextPageToken } = pageOfHeld(
              items,
              (i) => i,
              decodeKeyPosition(token, limits),
              size,
            );
            expect(page.length).toBeLessThanOrEqual(size);
            seen.push(...page);
            if (nextPageToken === "") break;
            expect(page).toHaveLength(size);
            token = nextPageToken;
          }
          expect(seen).toEqual([...items].sort(compareKeyPositions));
        },
      ),
    );
  });

  it("an item added behind the walk is not seen, one ahead is; none repeats", () => {
    const at = (key: string) => ({ key, id: "" });
    const first = pageOfHeld([at("b"), at("d"), at("a")], (i) => i, undefined, 2);
    expect(first.page.map((i) => i.key)).toEqual(["a", "b"]);
    const next = pageOfHeld(
      [at("b"), at("d"), at("a"), at("aa"), at("c")],
      (i) => i,
      decodeKeyPosition(first.nextPageToken, limits),
      2,
    );
    expect(next).toEqual({ page: [at("c"), at("d")], nextPageToken: "" });
  });
});
