/**
 * The wire format, version 1: the envelopes, their bounds and the one validator. Documented in
 * docs/protocol.md; keep the two in step. Reading a Redis message into envelopes is `decode.ts`,
 * writing them `encode.ts`.
 *
 * A Redis message holds one envelope (a JSON object) or a batch (a JSON array of envelopes).
 * Lengths below are counted in UTF-16 code units (JavaScript's `string.length`).
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
  /**
   * Milliseconds the caller still waits, counted when the request was published. The receiver's
   * deadline is its own clock at arrival plus `ttl`, so hosts need not agree on the time.
   */
  readonly ttl?: number;
  /** Absolute deadline (ms since the epoch), read only when `ttl` is absent (hand-written requests). */
  readonly deadline?: number;
  /**
   * The caller's clock (ms since the epoch) when it published the request. Optional; a receiver
   * that was cut off from Redis compares it with what it learnt of that caller's clock to drop
   * requests that waited in the network past their `ttl` (docs/protocol.md, "Cut off from Redis").
   */
  readonly sent?: number;
  readonly headers: BufferHeaders;
  readonly data: unknown;
  /**
   * `1`: the caller reads compact replies (`[id, from, seq, done, data]`, see `encodeCompactReply`),
   * so an instance may send its value replies to this request in that form. Absent: objects only.
   */
  readonly cr?: 1;
}

export interface EventEnvelope {
  readonly v: 1;
  readonly kind: 'event';
  readonly id: string;
  readonly pattern: string;
  readonly from: string;
  /**
   * Absolute time (ms since the epoch) after which the event is dropped unhandled: it bounds how
   * long a captured (signed) event can be replayed. Absent: no bound.
   */
  readonly deadline?: number;
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
  /** Present when the handler failed, or the instance refused the request. */
  readonly error?: unknown;
  /** `true` when `error` is a refusal: the instance received the request and did not run it. */
  readonly refused?: boolean;
  /**
   * A topic request reached this instance again, on the channel of its wildcard binding `repeat`
   * (see docs/protocol.md, "Topics"): this reply counts that delivery as finished and carries
   * nothing (`done: true`, no `data`, no `error`). The instance answers the request once, on its
   * first delivery.
   */
  readonly repeat?: string;
}

/** Asks one instance (on its direct channel) for a sign of life; answered at once with a `pong`. */
export interface PingEnvelope {
  readonly v: 1;
  readonly kind: 'ping';
  readonly id: string;
  readonly from: string;
  readonly replyTo: string;
  /**
   * `true`: the pong may go to `{ns}:members` instead of `replyTo`, where every caller hears it, so
   * one ping serves every caller waiting on the instance (see docs/protocol.md, "Liveness").
   */
  readonly share?: boolean;
}

export interface PongEnvelope {
  readonly v: 1;
  readonly kind: 'pong';
  /** The ping's id. */
  readonly id: string;
  readonly from: string;
  /** The answering process's incarnation. */
  readonly inc: string;
}

/** An instance introduces itself: on the members channel when it joins, or to a `who`'s `replyTo`. */
export interface HelloEnvelope {
  readonly v: 1;
  readonly kind: 'hello';
  readonly id: string;
  readonly from: string;
  /** Random per process (per transport object): tells a restarted instance from the one before. */
  readonly inc: string;
  /** Request patterns it answers (channel form). */
  readonly patterns: readonly string[];
  /** Event patterns it handles (channel form). */
  readonly events: readonly string[];
  /** Replay protection (see `MembershipOrder`): this incarnation's membership sequence number. */
  readonly seq?: number;
  /** Replay protection: the sender's clock (ms since the epoch) when it sent this. */
  readonly at?: number;
  /** `true` from a draining instance: it takes no new requests but still answers what it received. */
  readonly draining?: boolean;
  /** `1`: this instance reads compact requests (see `decodeMessage`, "Compact requests" in docs/protocol.md). */
  readonly cq?: 1;
}

/** An instance has left: it answered everything it received and is gone. */
export interface ByeEnvelope {
  readonly v: 1;
  readonly kind: 'bye';
  readonly id: string;
  readonly from: string;
  readonly inc: string;
  /** Replay protection: as on `hello`, from the same counter. */
  readonly seq?: number;
  /** Replay protection: as on `hello`. */
  readonly at?: number;
}

/** A caller asks every instance to introduce itself (`hello` to `replyTo`). */
export interface WhoEnvelope {
  readonly v: 1;
  readonly kind: 'who';
  readonly id: string;
  readonly from: string;
  readonly replyTo: string;
}

export type MemberEnvelope = HelloEnvelope | ByeEnvelope;
export type Envelope = RequestEnvelope | EventEnvelope | ReplyEnvelope | PingEnvelope | PongEnvelope | HelloEnvelope | ByeEnvelope | WhoEnvelope;

/** Bounds on fields; a message outside them is rejected as malformed. Lengths in UTF-16 code units. */
export const ENVELOPE_LIMITS = {
  idLength: 128,
  patternLength: 1024,
  instanceIdLength: 256,
  channelLength: 1024,
  headerCount: 64,
  headerNameLength: 256,
  headerValueLength: 8192,
  /** Envelopes in one batch. */
  batchLength: 10_000,
  /** Patterns (and, separately, event patterns) one `hello` may list. */
  helloPatterns: 10_000,
} as const;

/**
 * Checks a parsed envelope in place and returns it typed, or a string saying what is wrong. The
 * one validator: receivers run it on what arrives, and the caller runs it on what it is about to
 * publish, so nothing a caller sends is refused downstream.
 *
 * The parsed object is used as it is rather than copied (a copy per message showed up in the
 * profile): unknown fields stay on it but nothing reads them, and `JSON.parse` never touches a
 * prototype, even for a `"__proto__"` key. Header names that could shadow a prototype are refused.
 */
export function validateEnvelope(value: unknown): Envelope | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'envelope is not an object';
  const input = value as Record<string, unknown>;
  if (input.v !== PROTOCOL_VERSION) return `unsupported protocol version ${JSON.stringify(input.v)} (this library speaks ${PROTOCOL_VERSION})`;
  if (boundedString(input.id, ENVELOPE_LIMITS.idLength) === undefined) return `"id" must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
  if (boundedString(input.from, ENVELOPE_LIMITS.instanceIdLength) === undefined) return `"from" must be a string of 1 to ${ENVELOPE_LIMITS.instanceIdLength} characters`;
  switch (input.kind) {
    case 'reply': {
      const seq = input.seq;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return '"seq" must be a non-negative integer';
      if (typeof input.done !== 'boolean') return '"done" must be a boolean';
      const hasData = Object.hasOwn(input, 'data');
      const hasError = Object.hasOwn(input, 'error');
      if (hasData && hasError) return 'a reply carries "data" or "error", not both';
      if (!hasData && !hasError && !input.done) return 'a reply without "data" or "error" must have "done": true';
      if (input.refused !== undefined && (input.refused !== true || !hasError || !input.done)) return '"refused" may only be true, on a reply with "error" and "done": true';
      if (input.repeat !== undefined && (boundedString(input.repeat, ENVELOPE_LIMITS.patternLength) === undefined || hasData || hasError || !input.done)) {
        return `"repeat" must be a string of 1 to ${ENVELOPE_LIMITS.patternLength} characters, on a reply with "done": true and neither "data" nor "error"`;
      }
      return input as unknown as ReplyEnvelope;
    }
    case 'request': {
      if (boundedString(input.pattern, ENVELOPE_LIMITS.patternLength) === undefined) return `"pattern" must be a string of 1 to ${ENVELOPE_LIMITS.patternLength} characters`;
      if (boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength) === undefined) return `"replyTo" must be a string of 1 to ${ENVELOPE_LIMITS.channelLength} characters`;
      const { ttl, deadline } = input;
      if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0)) return '"ttl" must be a non-negative number of milliseconds';
      if (deadline !== undefined && (typeof deadline !== 'number' || !Number.isFinite(deadline))) return '"deadline" must be a number (milliseconds since the epoch)';
      if (ttl === undefined && deadline === undefined) return 'a request needs "ttl" (or "deadline")';
      const sent = (input as { sent?: unknown }).sent;
      if (sent !== undefined && (typeof sent !== 'number' || !Number.isFinite(sent))) return '"sent" must be a number (milliseconds since the epoch)';
      const headers = validateHeaders(input.headers);
      if (typeof headers === 'string') return headers;
      input.headers = headers;
      input.data ??= null;
      return input as unknown as RequestEnvelope;
    }
    case 'event': {
      if (boundedString(input.pattern, ENVELOPE_LIMITS.patternLength) === undefined) return `"pattern" must be a string of 1 to ${ENVELOPE_LIMITS.patternLength} characters`;
      const deadline = input.deadline;
      if (deadline !== undefined && (typeof deadline !== 'number' || !Number.isFinite(deadline))) return '"deadline" must be a number (milliseconds since the epoch)';
      const headers = validateHeaders(input.headers);
      if (typeof headers === 'string') return headers;
      input.headers = headers;
      input.data ??= null;
      return input as unknown as EventEnvelope;
    }
    case 'ping':
      if (input.share !== undefined && typeof input.share !== 'boolean') return '"share" must be a boolean';
      if (boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength) === undefined) return `"replyTo" must be a string of 1 to ${ENVELOPE_LIMITS.channelLength} characters`;
      return input as unknown as PingEnvelope;
    case 'who':
      if (boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength) === undefined) return `"replyTo" must be a string of 1 to ${ENVELOPE_LIMITS.channelLength} characters`;
      return input as unknown as WhoEnvelope;
    case 'pong':
      if (boundedString(input.inc, ENVELOPE_LIMITS.idLength) === undefined) return `"inc" must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
      return input as unknown as PongEnvelope;
    case 'bye': {
      if (boundedString(input.inc, ENVELOPE_LIMITS.idLength) === undefined) return `"inc" must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
      const order = validateMembershipOrder(input);
      if (order !== undefined) return order;
      return input as unknown as ByeEnvelope;
    }
    case 'hello': {
      if (boundedString(input.inc, ENVELOPE_LIMITS.idLength) === undefined) return `"inc" must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
      const order = validateMembershipOrder(input);
      if (order !== undefined) return order;
      if (input.draining !== undefined && typeof input.draining !== 'boolean') return '"draining" must be a boolean';
      for (const field of ['patterns', 'events'] as const) {
        const list = input[field];
        if (!Array.isArray(list) || list.length > ENVELOPE_LIMITS.helloPatterns || !list.every((item) => boundedString(item, ENVELOPE_LIMITS.patternLength) !== undefined)) {
          return `"${field}" must be an array of at most ${ENVELOPE_LIMITS.helloPatterns} patterns`;
        }
      }
      return input as unknown as HelloEnvelope;
    }
    default:
      return `unknown "kind" ${JSON.stringify(input.kind)}`;
  }
}

/** `seq` and `at` on `hello`/`bye`: optional (older senders), but well-formed when present. */
function validateMembershipOrder(input: Record<string, unknown>): string | undefined {
  const { seq, at } = input;
  if (seq !== undefined && (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)) return '"seq" must be a non-negative integer';
  if (at !== undefined && (typeof at !== 'number' || !Number.isFinite(at))) return '"at" must be a number (milliseconds since the epoch)';
  return undefined;
}

/** `value` when it is a string of 1 to `maxLength` UTF-16 units, else undefined. */
export function boundedString(value: unknown, maxLength: number): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= maxLength ? value : undefined;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
/** No headers: what a message without any carries (shared, frozen). */
export const NO_HEADERS: BufferHeaders = Object.freeze(Object.create(null) as Record<string, string>);

/**
 * Checks headers: an object of at most 64 entries, names of 1 to 256 characters other than
 * `__proto__`, `constructor` and `prototype`, values strings of at most 8192 characters.
 */
export function validateHeaders(value: unknown): BufferHeaders | string {
  if (value === undefined || value === null) return NO_HEADERS;
  if (typeof value !== 'object' || Array.isArray(value)) return '"headers" must be an object of strings';
  let count = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (++count > ENVELOPE_LIMITS.headerCount) return `more than ${ENVELOPE_LIMITS.headerCount} headers`;
    if (FORBIDDEN_KEYS.has(key)) return `header name "${key}" is not allowed`;
    if (key.length === 0 || key.length > ENVELOPE_LIMITS.headerNameLength) return `header names must have 1 to ${ENVELOPE_LIMITS.headerNameLength} characters`;
    const headerValue = (value as Record<string, unknown>)[key];
    if (typeof headerValue !== 'string' || headerValue.length > ENVELOPE_LIMITS.headerValueLength) {
      return `header "${key}" must be a string of at most ${ENVELOPE_LIMITS.headerValueLength} characters`;
    }
  }
  return value as BufferHeaders;
}
