import { decodeEntry, entrySize, fieldsToRecord, oversizedFields, type DurableEntry } from './durable-entry.js';
import type { EntrySigner } from './entry-signing.js';

/** Why an entry is dead-lettered without running: the `reason` of its dead letter's error. */
export type EntryRefusal = 'oversized' | 'unsigned' | 'forged' | 'malformed';

export interface AdmittedEntry {
  /** The entry, or why it cannot run. */
  readonly entry: DurableEntry | string;
  /** Set when `entry` is a reason. */
  readonly refusal: EntryRefusal | undefined;
  /** The fields to keep (in a dead letter): all of them, or for an oversized entry only the small ones. */
  readonly fields: string[];
}

/**
 * Decides, before anything of the entry is parsed, whether a consumer may run it, in this order:
 * 1. size: over `maxPayloadBytes` it is refused unread. `sizeInRedis` is set when the FETCH script
 *    measured it and sent only its small fields; an entry claimed from another consumer arrives
 *    whole and is measured here;
 * 2. signature (with `signingKey`): an entry without a valid `sig` for its stream is refused;
 * 3. format: `decodeEntry`'s rules.
 */
export function admitEntry(stream: string, fields: string[], maxPayloadBytes: number, signer: EntrySigner | undefined, sizeInRedis?: number): AdmittedEntry {
  const size = sizeInRedis ?? entrySize(fields);
  if (size > maxPayloadBytes) {
    return {
      entry: `it is ${size} bytes, over "maxPayloadBytes" (${maxPayloadBytes}): it was not read, and only its small fields are kept (no data, no headers)`,
      refusal: 'oversized',
      fields: sizeInRedis === undefined ? oversizedFields(fields, size) : fields,
    };
  }
  if (signer !== undefined) {
    const failure = signer.check(stream, fieldsToRecord(fields));
    if (failure !== undefined) {
      const problem =
        failure === 'unsigned'
          ? 'it is not signed, and signing is on ("signingKey"): written by something that does not hold the key, or before signing was turned on'
          : 'its signature is not valid for this stream with any of the "signingKey" keys: forged, altered, copied from another stream, or signed with a key no longer in the list';
      return { entry: problem, refusal: failure, fields };
    }
  }
  const entry = decodeEntry(fields);
  return { entry, refusal: typeof entry === 'string' ? 'malformed' : undefined, fields };
}
