// The calendar rules on their own: which zone names are accepted, and what counts as the past.
import { describe, expect, it } from "vitest";
import { AppError } from "../shared/errors.ts";
import { isTimeZone, requireDate, requireNotPast } from "./time.ts";

describe("calendar rules", () => {
  it("accepts IANA zone names and refuses offsets, POSIX strings and made-up names", () => {
    for (const tz of [
      "UTC",
      "Europe/Berlin",
      "Australia/Sydney",
      "America/Argentina/Buenos_Aires",
      "Etc/GMT+5",
    ])
      expect(isTimeZone(tz), tz).toBe(true);
    for (const tz of [
      "",
      "+05:00",
      "-0300",
      "EST-5",
      "UTC+3",
      "Mars/Olympus",
      "Europe/",
      "a".repeat(200),
      "Z",
    ])
      expect(isTimeZone(tz), tz).toBe(false);
  });

  it("a date out of range is refused with the range in the message", () => {
    expect(() => requireDate("1900-01-01", "date")).toThrow(/1970-01-01 to 9999-12-31/);
    expect(requireDate("1970-01-01", "date")).toBe("1970-01-01");
  });

  it("a start before now is SLOT_IN_PAST naming the field; now itself is not the past", () => {
    const now = new Date("2030-01-01T10:00:00Z");
    expect(() => requireNotPast(new Date("2030-01-01T09:59:59Z"), "start", now)).toThrow(AppError);
    try {
      requireNotPast(new Date("2030-01-01T09:59:59Z"), "start", now);
    } catch (err) {
      expect(err).toMatchObject({ code: "SLOT_IN_PAST", field: "start" });
    }
    expect(requireNotPast(now, "start", now)).toBe(now);
  });
});
