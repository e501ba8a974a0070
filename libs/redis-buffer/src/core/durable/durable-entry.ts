import { ENVELOPE_LIMITS, validateHeaders, type BufferHeaders } from '../wire/envelope.js';

/**
 * The stream entry format, version 1, documented in docs/protocol.md (keep the two in step).
 * An entry is a flat list of field-value pairs, all strings, so `redis-cli XADD` can write one.
 *
 * | field     | required | value                                                         |
 * | --------- | -------- | ------------------------------------------------------------- |
 * | `v`       | yes      | `1`                                                           |
 * | `pattern` | yes      | the pattern, equal to the stream's                            |
 * | `data`    | no       | JSON of the payload; absent means `undefined`                 |
 * | `headers` | no       | JSON object of string headers                                 |
 * | `key`     | no       | ordering key                                                  |
 * | `idem`    | no       | idempotency key                                               |
 * | `from`    | no       | publisher's instance id                                       |
 * | `at`      | no       | publication time, ms since the epoch                          |
 * | `group`   | no       | only this group handles it (a replayed dead letter); others acknowledge it unrun |
 * | `sig`     | with `signingKey` | the entry's signature (see entry-signing.ts)          |
 * | `oversized` | —      | only in a dead letter of an entry over `maxPayloadBytes`: its size; such an entry is never run |
 */
export const DURABLE_ENTRY_VERSION = '1';

/** Bounds on the free-text fields of an entry; an entry outside them is dead-lettered unrun. */
export const DURABLE_LIMITS = {
  keyLength: 256,
} as const;

/**
 * What a consumer keeps of an entry over `maxPayloadBytes` (the FETCH script keeps the same, in
 * Redis, so the entry never crosses the network): these fields, the first of each, when their value
 * is at most OVERSIZED_KEPT_VALUE_BYTES, followed by `oversized` = the entry's size. Data, headers,
 * signature and anything else are dropped.
 */
export const OVERSIZED_KEPT_FIELDS = ['v', 'pattern', 'key', 'idem', 'from', 'at', 'group'] as const;
export const OVERSIZED_KEPT_VALUE_BYTES = 1024;

/** An entry's size as `maxPayloadBytes` counts it: the UTF-8 bytes of every field name and value (the publisher and the FETCH script count the same). */
export function entrySize(fields: readonly string[]): number {
  return fields.reduce((sum, field) => sum + Buffer.byteLength(field, 'utf8'), 0);
}

/** The fields kept of an oversized entry (see OVERSIZED_KEPT_FIELDS). */
export function oversizedFields(fields: readonly string[], size: number): string[] {
  const record = fieldsToRecord(fields);
  const kept: string[] = [];
  for (const name of OVERSIZED_KEPT_FIELDS) {
    const value = record[name];
    if (value !== undefined && Buffer.byteLength(value, 'utf8') <= OVERSIZED_KEPT_VALUE_BYTES) kept.push(name, value);
  }
  kept.push('oversized', String(size));
  return kept;
}

export interface DurableEntry {
  readonly pattern: string;
  readonly data: unknown;
  readonly headers: BufferHeaders;
  readonly key: string | undefined;
  readonly idempotencyKey: string | undefined;
  /** Publisher's instance id, when it said. */
  readonly from: string | undefined;
  /** Publication time, ms since the epoch, when the publisher said. */
  readonly publishedAt: number | undefined;
  /** Only this group handles it (a replayed dead letter). */
  readonly group: string | undefined;
}

/** Fields of a dead letter beside the original entry's (docs/protocol.md). */
export interface DeadLetterFields {
  /** Id of the entry in the main stream. */
  readonly entryId: string;
  readonly group: string;
  /** How many times it was delivered. */
  readonly attempts: number;
  /** The last error, as the handler's exception filters rendered it (JSON). */
  readonly error: unknown;
  readonly failedAt: number;
  /** The instance that gave up on it. */
  readonly consumer: string;
}

export interface EncodeEntryInput {
  readonly pattern: string;
  /** JSON of the payload, or undefined for none. */
  readonly dataJson: string | undefined;
  readonly headers: BufferHeaders;
  readonly key?: string | undefined;
  readonly idempotencyKey?: string | undefined;
  readonly from?: string | undefined;
  readonly publishedAt?: number | undefined;
  readonly group?: string | undefined;
}

/** The field-value list for XADD. */
export function encodeEntry(input: EncodeEntryInput): string[] {
  const fields = ['v', DURABLE_ENTRY_VERSION, 'pattern', input.pattern];
  if (input.dataJson !== undefined) fields.push('data', input.dataJson);
  if (Object.keys(input.headers).length > 0) fields.push('headers', JSON.stringify(input.headers));
  if (input.key !== undefined) fields.push('key', input.key);
  if (input.idempotencyKey !== undefined) fields.push('idem', input.idempotencyKey);
  if (input.from !== undefined) fields.push('from', input.from);
  if (input.publishedAt !== undefined) fields.push('at', String(input.publishedAt));
  if (input.group !== undefined) fields.push('group', input.group);
  return fields;
}

/** Field-value list (as XRANGE returns it) to an object; a repeated field keeps its first value. */
export function fieldsToRecord(fields: readonly string[]): Record<string, string> {
  const record: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let index = 0; index + 1 < fields.length; index += 2) {
    const name = fields[index]!;
    if (!(name in record)) record[name] = fields[index + 1]!;
  }
  return record;
}

/** Reads an entry. Never throws: returns a string saying what is wrong instead. */
export function decodeEntry(fields: readonly string[]): DurableEntry | string {
  const record = fieldsToRecord(fields);
  if (record.v !== DURABLE_ENTRY_VERSION) return `unsupported entry version ${JSON.stringify(record.v)} (this library reads ${DURABLE_ENTRY_VERSION})`;
  if (record.oversized !== undefined) return `it was over "maxPayloadBytes" (${record.oversized} bytes) and only its small fields were kept: it cannot run again; publish its data anew`;
  const pattern = record.pattern;
  if (!isPattern(pattern)) return '"pattern" must be a non-empty string without "{" or "}"';
  let data: unknown;
  if (record.data !== undefined) {
    try {
      data = JSON.parse(record.data);
    } catch {
      return '"data" is not JSON';
    }
  }
  let headers = validateHeaders(undefined);
  if (record.headers !== undefined) {
    try {
      headers = validateHeaders(JSON.parse(record.headers));
    } catch {
      return '"headers" is not JSON';
    }
  }
  if (typeof headers === 'string') return headers;
  for (const field of ['key', 'idem', 'from', 'group'] as const) {
    const value = record[field];
    if (value !== undefined && (value.length === 0 || value.length > DURABLE_LIMITS.keyLength)) return `"${field}" must be 1 to ${DURABLE_LIMITS.keyLength} characters`;
  }
  const publishedAt = record.at === undefined ? undefined : Number(record.at);
  if (publishedAt !== undefined && !Number.isFinite(publishedAt)) return '"at" must be a number';
  return { pattern, data, headers, key: record.key, idempotencyKey: record.idem, from: record.from, publishedAt, group: record.group };
}

/** A pattern usable as a stream name: it is also the key's Redis Cluster hash tag, so no braces. */
export function isPattern(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= ENVELOPE_LIMITS.patternLength && !/[{}]/.test(value);
}

/** Stream entry ids compare as two integers, not as strings ("5-10" comes after "5-9"). */
export function compareEntryIds(a: string, b: string): number {
  const [aMs, aSeq] = splitId(a);
  const [bMs, bSeq] = splitId(b);
  return aMs === bMs ? Number(aSeq - bSeq) : Number(aMs - bMs);
}

function splitId(id: string): [bigint, bigint] {
  const dash = id.indexOf('-');
  return dash < 0 ? [BigInt(id), 0n] : [BigInt(id.slice(0, dash)), BigInt(id.slice(dash + 1))];
}
