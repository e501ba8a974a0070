import { decodeEntry, fieldsToRecord, type DurableEntry } from './durable-entry.js';

/** One entry of a group's dead-letter stream, as `durable.deadLetters()` lists it. */
export interface DeadLetter {
  /** Id in the dead-letter stream: pass it to `replayDeadLetter`. */
  readonly id: string;
  /** Id the entry had in the main stream. */
  readonly entryId: string;
  readonly pattern: string;
  readonly group: string;
  /** Deliveries made before giving up. */
  readonly attempts: number;
  /** The last error, as the handler's exception filters rendered it (an `RpcException`'s payload intact). */
  readonly error: unknown;
  readonly failedAt: number;
  /** Instance that dead-lettered it. */
  readonly consumer: string;
  /** The entry itself, or a string saying why it could not be read. */
  readonly entry: DurableEntry | string;
  /** The original entry's raw fields (what a replay publishes again). */
  readonly fields: readonly string[];
}

/** Dead-letter fields added in front of the original entry's fields (docs/protocol.md). */
const DEAD_FIELDS = ['dead.entryId', 'dead.group', 'dead.attempts', 'dead.error', 'dead.failedAt', 'dead.consumer'] as const;

export interface DeadLetterInput {
  readonly entryId: string;
  readonly group: string;
  readonly attempts: number;
  readonly error: unknown;
  readonly consumer: string;
  readonly failedAt: number;
  readonly fields: readonly string[];
}

/** The field-value list of a dead letter: `dead.*` fields, then the original entry's fields unchanged. */
export function encodeDeadLetter(input: DeadLetterInput): string[] {
  return [
    'dead.entryId', input.entryId,
    'dead.group', input.group,
    'dead.attempts', String(input.attempts),
    'dead.error', safeJson(input.error),
    'dead.failedAt', String(input.failedAt),
    'dead.consumer', input.consumer,
    ...input.fields,
  ];
}

export function decodeDeadLetter(id: string, fields: readonly string[]): DeadLetter {
  const record = fieldsToRecord(fields);
  const original = fields.slice(DEAD_FIELDS.length * 2);
  let error: unknown = record['dead.error'];
  try {
    error = JSON.parse(record['dead.error'] ?? 'null');
  } catch {
    // Kept as the raw string.
  }
  const entry = decodeEntry(original);
  return {
    id,
    entryId: record['dead.entryId'] ?? '',
    pattern: typeof entry === 'string' ? (fieldsToRecord(original).pattern ?? '') : entry.pattern,
    group: record['dead.group'] ?? '',
    attempts: Number(record['dead.attempts'] ?? 0),
    error,
    failedAt: Number(record['dead.failedAt'] ?? 0),
    consumer: record['dead.consumer'] ?? '',
    entry,
    fields: original,
  };
}

/**
 * The original fields, minus routing left by an earlier replay, plus `group` so only this group runs
 * it again. The replay script (scripts/replay.script.ts) builds the same list inside Redis.
 */
export function replayFields(deadLetter: DeadLetter): string[] {
  const fields: string[] = [];
  for (let index = 0; index + 1 < deadLetter.fields.length; index += 2) {
    if (deadLetter.fields[index] === 'group') continue;
    fields.push(deadLetter.fields[index]!, deadLetter.fields[index + 1]!);
  }
  fields.push('group', deadLetter.group);
  return fields;
}

/** An error as JSON: an Error's own message and code, anything else as it serializes. */
function safeJson(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return JSON.stringify({ name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) });
  }
  try {
    return JSON.stringify(error ?? null) ?? 'null';
  } catch {
    return JSON.stringify(String(error));
  }
}
