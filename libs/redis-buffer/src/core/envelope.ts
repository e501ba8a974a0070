import { BadMessageError } from './errors/bad-message.error.js';

/**
 * The wire format, version 1. Documented in docs/protocol.md; keep the two in step.
 *
 * A Redis message holds one envelope (a JSON object) or a batch (a JSON array of envelopes).
 */
export const PROTOCOL_VERSION = 1;

export type BufferHeaders = Readonly<Record<string, string>>;

export interface RequestEnvelope {
  readonly v: 1;
  readonly kind: 'request';
  readonly id: string;
  readonly pattern: string;
  readonly from: string;
  readonly replyTo: string;
  /** Absolute deadline, milliseconds since the Unix epoch. */
  readonly deadline: number;
  readonly headers: BufferHeaders;
  readonly data: unknown;
}

export interface EventEnvelope {
  readonly v: 1;
  readonly kind: 'event';
  readonly id: string;
  readonly pattern: string;
  readonly from: string;
  readonly headers: BufferHeaders;
  readonly data: unknown;
}

export interface ReplyEnvelope {
  readonly v: 1;
  readonly kind: 'reply';
  /** The request's id. */
  readonly id: string;
  readonly from: string;
  /** 0, 1, 2… per (request, instance); a repeated sequence number is a duplicate. */
  readonly seq: number;
  /** This instance has nothing more to send for this request. */
  readonly done: boolean;
  /** Present when the reply carries a value. */
  readonly data?: unknown;
  /** Present when the handler failed. */
  readonly error?: unknown;
}

export type Envelope = RequestEnvelope | EventEnvelope | ReplyEnvelope;

/** Bounds on identifier fields; a message outside them is rejected as malformed. */
export const ENVELOPE_LIMITS = {
  idLength: 128,
  patternLength: 1024,
  instanceIdLength: 256,
  channelLength: 1024,
  headerCount: 64,
  headerValueLength: 8192,
  batchLength: 10_000,
} as const;

export interface DecodedMessage {
  readonly envelopes: Envelope[];
  readonly rejected: BadMessageError[];
}

/** Parses one Redis message into envelopes. Never throws: what is invalid lands in `rejected`. */
export function decodeMessage(raw: string, channel?: string): DecodedMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (cause) {
    return { envelopes: [], rejected: [new BadMessageError('not JSON', channel, { cause })] };
  }
  if (!Array.isArray(parsed)) {
    const result = validateEnvelope(parsed);
    return typeof result === 'string'
      ? { envelopes: [], rejected: [new BadMessageError(result, channel)] }
      : { envelopes: [result], rejected: [] };
  }
  // No sender produces an empty batch: count it as malformed rather than drop it unseen.
  if (parsed.length === 0) return { envelopes: [], rejected: [new BadMessageError('empty batch', channel)] };
  if (parsed.length > ENVELOPE_LIMITS.batchLength) {
    return { envelopes: [], rejected: [new BadMessageError(`batch of ${parsed.length} envelopes exceeds ${ENVELOPE_LIMITS.batchLength}`, channel)] };
  }
  const envelopes: Envelope[] = [];
  const rejected: BadMessageError[] = [];
  for (let index = 0; index < parsed.length; index++) {
    const result = validateEnvelope(parsed[index]);
    if (typeof result === 'string') rejected.push(new BadMessageError(`batch element ${index}: ${result}`, channel));
    else envelopes.push(result);
  }
  return { envelopes, rejected };
}

/**
 * Checks a parsed envelope in place and returns it typed, or a string saying what is wrong.
 *
 * The parsed object is used as it is rather than copied (a copy per message showed up in the
 * profile): unknown fields stay on it but nothing reads them, and `JSON.parse` never touches a
 * prototype, even for a `"__proto__"` key. Header names that could shadow a prototype are refused.
 */
export function validateEnvelope(value: unknown): Envelope | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'envelope is not an object';
  const input = value as Record<string, unknown>;
  if (input.v !== PROTOCOL_VERSION) return `unsupported protocol version ${JSON.stringify(input.v)} (this library speaks ${PROTOCOL_VERSION})`;
  if (boundedString(input.id, ENVELOPE_LIMITS.idLength) === undefined) return '"id" must be a non-empty string';
  if (boundedString(input.from, ENVELOPE_LIMITS.instanceIdLength) === undefined) return '"from" must be a non-empty string';
  switch (input.kind) {
    case 'reply': {
      const seq = input.seq;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return '"seq" must be a non-negative integer';
      if (typeof input.done !== 'boolean') return '"done" must be a boolean';
      const hasData = Object.hasOwn(input, 'data');
      const hasError = Object.hasOwn(input, 'error');
      if (hasData && hasError) return 'a reply carries "data" or "error", not both';
      if (!hasData && !hasError && !input.done) return 'a reply without "data" or "error" must have "done": true';
      return input as unknown as ReplyEnvelope;
    }
    case 'request': {
      if (boundedString(input.pattern, ENVELOPE_LIMITS.patternLength) === undefined) return '"pattern" must be a non-empty string';
      if (boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength) === undefined) return '"replyTo" must be a non-empty string';
      const deadline = input.deadline;
      if (typeof deadline !== 'number' || !Number.isFinite(deadline)) return '"deadline" must be a number (milliseconds since the epoch)';
      const headers = validateHeaders(input.headers);
      if (typeof headers === 'string') return headers;
      input.headers = headers;
      input.data ??= null;
      return input as unknown as RequestEnvelope;
    }
    case 'event': {
      if (boundedString(input.pattern, ENVELOPE_LIMITS.patternLength) === undefined) return '"pattern" must be a non-empty string';
      const headers = validateHeaders(input.headers);
      if (typeof headers === 'string') return headers;
      input.headers = headers;
      input.data ??= null;
      return input as unknown as EventEnvelope;
    }
    default:
      return `unknown "kind" ${JSON.stringify(input.kind)}`;
  }
}

function boundedString(value: unknown, maxLength: number): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= maxLength ? value : undefined;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const NO_HEADERS: BufferHeaders = Object.freeze(Object.create(null) as Record<string, string>);

/** Checks headers: an object of at most 64 strings, none named `__proto__`, `constructor` or `prototype`. */
export function validateHeaders(value: unknown): BufferHeaders | string {
  if (value === undefined || value === null) return NO_HEADERS;
  if (typeof value !== 'object' || Array.isArray(value)) return '"headers" must be an object of strings';
  let count = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (++count > ENVELOPE_LIMITS.headerCount) return `more than ${ENVELOPE_LIMITS.headerCount} headers`;
    if (FORBIDDEN_KEYS.has(key)) return `header name "${key}" is not allowed`;
    const headerValue = (value as Record<string, unknown>)[key];
    if (typeof headerValue !== 'string' || headerValue.length > ENVELOPE_LIMITS.headerValueLength) {
      return `header "${key}" must be a string of at most ${ENVELOPE_LIMITS.headerValueLength} characters`;
    }
  }
  return value as BufferHeaders;
}

/** Encodes a request or event envelope. */
export function encodeEnvelope(envelope: RequestEnvelope | EventEnvelope | ReplyEnvelope): string {
  return JSON.stringify(envelope);
}

/**
 * Encodes a reply from pre-encoded parts: the value is serialized once, when the handler emits it,
 * so its size can be checked at once, while `done` may still be set before the batch is flushed.
 */
export function encodeReplyParts(idJson: string, fromJson: string, seq: number, done: boolean, bodyKey: 'data' | 'error' | undefined, bodyJson: string | undefined): string {
  const body = bodyKey === undefined ? '' : `,"${bodyKey}":${bodyJson}`;
  return `{"v":1,"kind":"reply","id":${idJson},"from":${fromJson},"seq":${seq},"done":${done}${body}}`;
}

/** Joins encoded envelopes into one Redis message: the envelope itself when alone, else a batch. */
export function encodeBatch(encoded: readonly string[]): string {
  return encoded.length === 1 ? encoded[0]! : `[${encoded.join(',')}]`;
}
