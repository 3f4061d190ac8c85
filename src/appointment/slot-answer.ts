// Owns the ListSlots answer of an LRU hit: built and protobuf-encoded once per cache entry, then
// the same bytes are sent for every hit on it. An entry's day is never changed in place (a new
// version is a new object), so an answer keyed by the day object can only be of that version: the
// Redis version check in SlotCache.read still decides, on every call, whether the entry is served.
import {
  AppointmentServiceService,
  CacheTier,
  ListSlotsResponse,
  type Slot,
} from "../gen/medisync/v1/appointment.ts";
import type { DaySlots } from "./repo.ts";

const encodedBytes = Symbol("ListSlotsResponse bytes");

/** An answer that carries its own encoding (the fields stay, for readers in this process). */
type EncodedAnswer = ListSlotsResponse & { [encodedBytes]: Buffer };

const answers = new WeakMap<DaySlots, EncodedAnswer>();

/** The whole day's answer of an LRU hit on `day`, encoded at most once per entry. */
export function lruAnswer(
  clinicId: string,
  date: string,
  day: DaySlots,
  toProto: (s: DaySlots["slots"][number]) => Slot,
): ListSlotsResponse {
  const known = answers.get(day);
  // An entry is keyed by clinic and date, so its answer's are those of every read that hits it;
  // compared anyway, so that a caller that spells them otherwise never gets another's bytes.
  if (known && known.clinicId === clinicId && known.date === date) return known;
  const answer: ListSlotsResponse = {
    clinicId,
    date,
    slots: day.slots.map(toProto),
    tier: CacheTier.CACHE_TIER_LRU,
    version: day.version,
  };
  const encoded = Object.assign(answer, {
    [encodedBytes]: Buffer.from(ListSlotsResponse.encode(answer).finish()),
  });
  answers.set(day, encoded);
  return encoded;
}

const listSlots = AppointmentServiceService.listSlots;

/** A ListSlots answer's bytes: its own when it has them (an LRU hit's), else freshly encoded. */
export const encodeListSlots = (value: ListSlotsResponse): Buffer =>
  (value as Partial<EncodedAnswer>)[encodedBytes] ?? listSlots.responseSerialize(value);

/**
 * The service definition whose ListSlots sends an answer's own bytes when it has them (a
 * ListSlotsStream answer carries them through encodeListSlots).
 */
export const appointmentServiceDefinition: typeof AppointmentServiceService = {
  ...AppointmentServiceService,
  listSlots: { ...listSlots, responseSerialize: encodeListSlots },
};
