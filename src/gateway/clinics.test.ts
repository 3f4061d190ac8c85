// The gateway's clinic list: a known code costs no read and no promise; a code it does not hold reads
// the list again at most once per missRefreshMs, then is 404 naming the field; a list that cannot be
// read is 503, never a 404; the list is read again every refreshMs.
import { afterEach, describe, expect, it, vi } from "vitest";
import { AppError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { ClinicDirectory, type ClinicListing } from "./clinics.ts";

const log = createLogger({ service: "gateway", level: "silent" });
const harbour = { id: "0b0e8d6a-8f0b-4c3e-9d1b-6a3c5e2f1a77", code: "harbour" };
const riverside = { id: "1c1f9e7b-9a1c-4d4f-8e2c-7b4d6f3a2b88", code: "riverside" };

function directory(
  answers: (() => ClinicListing[])[],
  o: { missRefreshMs?: number; refreshMs?: number } = {},
) {
  let t = 0;
  const reads: number[] = [];
  const dir = new ClinicDirectory({
    list: async () => {
      reads.push(t);
      const next = answers[Math.min(reads.length - 1, answers.length - 1)]!;
      return next();
    },
    log,
    now: () => t,
    ...o,
  });
  return { dir, reads, advance: (ms: number) => (t += ms) };
}

const down = () => {
  throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
};

async function failure(p: Promise<void> | undefined): Promise<AppError> {
  expect(p).toBeInstanceOf(Promise);
  const err = await p!.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("ClinicDirectory", () => {
  it("answers a known code synchronously, without reading the list again", async () => {
    const { dir, reads } = directory([() => [harbour, riverside]]);
    await dir.check([["clinicId", "nowhere"]])?.catch(() => undefined);
    expect(reads).toHaveLength(1);
    expect(dir.check([["clinicId", "harbour"]])).toBeUndefined();
    expect(
      dir.check([
        ["fromClinicId", "harbour"],
        ["toClinicId", "riverside"],
      ]),
    ).toBeUndefined();
    expect(reads).toHaveLength(1);
  });

  it("a code it does not hold reads the list once, then is CLINIC_NOT_FOUND naming the field", async () => {
    const { dir, reads } = directory([() => [harbour]]);
    const err = await failure(
      dir.check([
        ["fromClinicId", "harbour"],
        ["toClinicId", "nowhere"],
      ]),
    );
    expect(err.code).toBe("CLINIC_NOT_FOUND");
    expect(err.field).toBe("toClinicId");
    expect(reads).toHaveLength(1);
  });

  it("misses read the list at most once per missRefreshMs, and many at once share one read", async () => {
    let clinics = [harbour];
    const { dir, reads, advance } = directory([() => clinics], { missRefreshMs: 1_000 });
    const storm = await Promise.all(
      Array.from({ length: 50 }, () => failure(dir.check([["clinicId", "seaside"]]))),
    );
    expect(storm.every((e) => e.code === "CLINIC_NOT_FOUND")).toBe(true);
    expect(reads).toHaveLength(1);
    // Added just after that read: within the second still 404, without a read.
    clinics = [harbour, { id: "2d2a0f8c-0b2d-4e5a-9f3d-8c5e7a4b3c99", code: "seaside" }];
    advance(999);
    expect((await failure(dir.check([["clinicId", "seaside"]]))).code).toBe("CLINIC_NOT_FOUND");
    expect(reads).toHaveLength(1);
    // Once the second has passed, the next miss reads again and finds it.
    advance(1);
    await dir.check([["clinicId", "seaside"]]);
    expect(reads).toHaveLength(2);
    expect(dir.check([["clinicId", "seaside"]])).toBeUndefined();
  });

  it("a list that cannot be read is UNAVAILABLE with Retry-After, never a false 404", async () => {
    const { dir, reads, advance } = directory([down, down, () => [harbour]]);
    const first = await failure(dir.check([["clinicId", "harbour"]]));
    expect(first.code).toBe("UNAVAILABLE");
    expect(first.meta["retry-after"]).toBe("1");
    // Within the second after a failed read: still 503, and no read.
    const again = await failure(dir.check([["clinicId", "nowhere"]]));
    expect(again.code).toBe("UNAVAILABLE");
    expect(reads).toHaveLength(1);
    advance(1_000);
    expect((await failure(dir.check([["clinicId", "harbour"]]))).code).toBe("UNAVAILABLE");
    advance(1_000);
    await dir.check([["clinicId", "harbour"]]);
    expect(reads).toHaveLength(3);
  });

  it("after an outage begins, known codes still pass and unknown ones are 503, not 404", async () => {
    const { dir, advance } = directory([() => [harbour], down]);
    await dir.check([["clinicId", "harbour"]]);
    advance(1_000);
    expect((await failure(dir.check([["clinicId", "nowhere"]]))).code).toBe("UNAVAILABLE");
    expect(dir.check([["clinicId", "harbour"]])).toBeUndefined();
  });

  it("a clinic's id where its code belongs is 404 saying the code to use", async () => {
    const { dir } = directory([() => [harbour]]);
    const err = await failure(dir.check([["clinicId", harbour.id]]));
    expect(err.code).toBe("CLINIC_NOT_FOUND");
    expect(err.message).toContain('"harbour"');
  });

  it("reads the list at start and every refreshMs; a clinic gone from the list is gone", async () => {
    vi.useFakeTimers();
    let clinics = [harbour, riverside];
    const reads: number[] = [];
    const dir = new ClinicDirectory({
      list: async () => {
        reads.push(Date.now());
        return clinics;
      },
      log,
      refreshMs: 30_000,
    });
    dir.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(reads).toHaveLength(1);
    expect(dir.size).toBe(2);
    clinics = [harbour];
    await vi.advanceTimersByTimeAsync(30_000);
    expect(reads).toHaveLength(2);
    expect(dir.size).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(reads).toHaveLength(4);
    dir.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(reads).toHaveLength(4);
  });
});
