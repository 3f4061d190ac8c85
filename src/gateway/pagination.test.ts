// The page rule every list shares: limit's range and default, a cursor's shape, the answer's shape.
import { describe, expect, it } from "vitest";
import { AppError } from "../shared/errors.ts";
import { cursorOf, heldCursorOf, heldPageOf, pageOf, pageQuery, pageTokenOf } from "./pagination.ts";

const limits = { limitMax: 100, limitDefault: 20, cursorMax: 16 };
const Query = pageQuery(limits);

const issues = (input: unknown) => {
  const r = Query.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => i.path.join("."));
};

describe("pageQuery", () => {
  it("limit: 1 to the maximum, the default when absent", () => {
    expect(Query.parse({})).toEqual({ limit: 20 });
    expect(Query.parse({ limit: "1" })).toEqual({ limit: 1 });
    expect(Query.parse({ limit: "100" })).toEqual({ limit: 100 });
    for (const limit of ["0", "101", "-1", "2.5", "", "abc", ["1", "2"]])
      expect(issues({ limit })).toEqual(["limit"]);
  });

  it("cursor: base64url characters up to cursorMax; anything else names cursor", () => {
    expect(Query.parse({ cursor: "eyJhIjoxfQ" })).toEqual({ limit: 20, cursor: "eyJhIjoxfQ" });
    for (const cursor of ["not a cursor", "a+b/c=", "x".repeat(17), ["a", "b"]])
      expect(issues({ cursor })).toEqual(["cursor"]);
  });

  it("refuses parameters it does not know, and keeps the extra ones it is given", () => {
    expect(issues({ colour: "red" })).toEqual([""]);
    expect(pageQuery(limits, {}).parse({ limit: "3" })).toEqual({ limit: 3 });
  });
});

describe("cursors and pages", () => {
  it("a cursor is the service's page token; none is the first page", () => {
    expect(pageTokenOf(undefined, limits)).toBe("");
    expect(pageTokenOf("abc_-", limits)).toBe("abc_-");
    const err = (() => {
      try {
        pageTokenOf("a b", limits);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "VALIDATION", field: "cursor" });
  });

  it("the answer: items through the view, nextCursor null on the last page", () => {
    expect(pageOf([1, 2], (n) => n * 10, "tok")).toEqual({ items: [10, 20], nextCursor: "tok" });
    expect(pageOf([], (n: number) => n, "")).toEqual({ items: [], nextCursor: null });
    expect(cursorOf("")).toBeNull();
  });
});

describe("a list the gateway holds whole", () => {
  const held = [
    { id: "", key: "c" },
    { id: "", key: "a" },
    { id: "", key: "b" },
  ];
  const big = { limitMax: 100, limitDefault: 20, cursorMax: 512 };

  it("pages by key position, the cursor a service's kind of token", () => {
    const first = heldPageOf(
      held,
      (x) => x,
      (x) => x.key,
      2,
      heldCursorOf(undefined, big),
    );
    expect(first.items).toEqual(["a", "b"]);
    expect(first.nextCursor).not.toBeNull();
    expect(
      heldPageOf(
        held,
        (x) => x,
        (x) => x.key,
        2,
        heldCursorOf(first.nextCursor!, big),
      ),
    ).toEqual({
      items: ["c"],
      nextCursor: null,
    });
  });

  it("refuses a cursor that is not a key position, naming cursor", () => {
    for (const cursor of ["a b", "bm90LW91cnM"])
      expect(() => heldCursorOf(cursor, big)).toThrow(expect.objectContaining({ field: "cursor" }));
  });
});
