// What a patient reads: the clinic's own local date and time (with its zone named), across a
// daylight-saving change, and what changed.
import { describe, expect, it } from "vitest";
import { bookedMessage, cancelledMessage, localWhen } from "./messages.ts";

describe("messages", () => {
  it("gives the time in the clinic's zone, not the server's, on both sides of a DST change", () => {
    expect(localWhen("2031-03-29T08:00:00Z", "Europe/Berlin")).toBe("Saturday 29 March 2031 at 09:00 CET");
    expect(localWhen("2031-03-31T08:00:00Z", "Europe/Berlin")).toBe("Monday 31 March 2031 at 10:00 CEST");
    // Late evening UTC is the next day in Tokyo.
    expect(localWhen("2031-03-31T20:30:00Z", "Asia/Tokyo")).toBe("Tuesday 1 April 2031 at 05:30 GMT+9");
  });

  it("says what changed and where", () => {
    const a = { clinicName: "Mitte", start: "2031-03-31T08:00:00Z", timeZone: "Europe/Berlin" };
    expect(bookedMessage(a).body).toBe(
      "Your appointment at Mitte on Monday 31 March 2031 at 10:00 CEST is booked.",
    );
    expect(cancelledMessage(a).subject).toBe(
      "Appointment cancelled: Mitte, Monday 31 March 2031 at 10:00 CEST",
    );
  });
});
