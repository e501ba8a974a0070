import { BadMessageError } from '../errors/bad-message.error.js';

/**
 * The wire format, version 1. Documented in docs/protocol.md; keep the two in step.
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

/** A request that failed validation but names where to answer: the receiver refuses it there. */
export interface RefusableRequest {
  readonly id: string;
  readonly replyTo: string;
  readonly code: 'BUFFER_UNSUPPORTED_VERSION' | 'BUFFER_BAD_REQUEST';
  readonly reason: string;
}

export interface RejectedEnvelope {
  readonly error: BadMessageError;
  /** Set when the element was a request whose `id` and `replyTo` could be read. */
  readonly refusable?: RefusableRequest;
}

export interface DecodedMessage {
  readonly envelopes: Envelope[];
  readonly rejected: RejectedEnvelope[];
}

/** Parses one Redis message into envelopes. Never throws: what is invalid lands in `rejected`. */
export function decodeMessage(raw: string, channel?: string): DecodedMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (cause) {
    return { envelopes: [], rejected: [{ error: new BadMessageError('not JSON', channel, { cause }) }] };
  }
  if (!Array.isArray(parsed)) {
    const result = validateEnvelope(parsed);
    return typeof result === 'string' ? { envelopes: [], rejected: [rejection(parsed, result, channel)] } : { envelopes: [result], rejected: [] };
  }
  // No sender produces an empty batch: count it as malformed rather than drop it unseen.
  if (parsed.length === 0) return { envelopes: [], rejected: [{ error: new BadMessageError('empty batch', channel) }] };
  if (parsed.length > ENVELOPE_LIMITS.batchLength) {
    return { envelopes: [], rejected: [{ error: new BadMessageError(`batch of ${parsed.length} envelopes exceeds ${ENVELOPE_LIMITS.batchLength}`, channel) }] };
  }
  const envelopes: Envelope[] = [];
  const rejected: RejectedEnvelope[] = [];
  // A batch that opens with a request head carries compact requests (arrays) after it.
  let start = 0;
  let head: RequestHead | string | undefined;
  if (isRequestHead(parsed[0])) {
    head = validateRequestHead(parsed[0] as Record<string, unknown>);
    if (typeof head === 'string') rejected.push({ error: new BadMessageError(`batch element 0: ${head}`, channel) });
    start = 1;
  }
  for (let index = start; index < parsed.length; index++) {
    const element: unknown = parsed[index];
    if (head !== undefined && Array.isArray(element)) {
      const result = typeof head === 'string' ? 'a compact request needs a valid request head' : compactRequest(element, head);
      if (typeof result !== 'string') envelopes.push(result);
      else rejected.push(compactRejection(element, head, `batch element ${index}: ${result}`, channel));
      continue;
    }
    const result = Array.isArray(element) ? compactReply(element) : validateEnvelope(element);
    if (typeof result === 'string') rejected.push(rejection(element, `batch element ${index}: ${result}`, channel));
    else envelopes.push(result);
  }
  return { envelopes, rejected };
}

/**
 * The head of a batch of compact requests (its first element): what every request after it shares.
 * Not an envelope: it is read only as the first element of a batch, and only for the arrays after it.
 */
interface RequestHead {
  readonly from: string;
  readonly replyTo: string;
  readonly sent: number | undefined;
  readonly cr: 1 | undefined;
}

function isRequestHead(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'requests';
}

function validateRequestHead(input: Record<string, unknown>): RequestHead | string {
  if (input.v !== PROTOCOL_VERSION) return `unsupported protocol version ${JSON.stringify(input.v)} (this library speaks ${PROTOCOL_VERSION})`;
  const from = boundedString(input.from, ENVELOPE_LIMITS.instanceIdLength);
  if (from === undefined) return `request head: "from" must be a string of 1 to ${ENVELOPE_LIMITS.instanceIdLength} characters`;
  const replyTo = boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength);
  if (replyTo === undefined) return `request head: "replyTo" must be a string of 1 to ${ENVELOPE_LIMITS.channelLength} characters`;
  const sent = input.sent;
  if (sent !== undefined && (typeof sent !== 'number' || !Number.isFinite(sent))) return 'request head: "sent" must be a number (milliseconds since the epoch)';
  return { from, replyTo, sent: sent as number | undefined, cr: input.cr === 1 ? 1 : undefined };
}

/**
 * A compact request, `[id, pattern, ttl, data]` or `[id, pattern, ttl, data, headers]`, read with its
 * batch's head into the request object it stands for, with the object form's types and bounds.
 */
function compactRequest(element: unknown[], head: RequestHead): RequestEnvelope | string {
  if (element.length !== 4 && element.length !== 5) return `a compact request is [id, pattern, ttl, data] or [id, pattern, ttl, data, headers], not an array of ${element.length}`;
  const id = element[0];
  const pattern = element[1];
  const ttl = element[2];
  if (boundedString(id, ENVELOPE_LIMITS.idLength) === undefined) return `compact request: id must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
  if (boundedString(pattern, ENVELOPE_LIMITS.patternLength) === undefined) return `compact request: pattern must be a string of 1 to ${ENVELOPE_LIMITS.patternLength} characters`;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) return 'compact request: ttl must be a non-negative number of milliseconds';
  const headers = validateHeaders(element[4]);
  if (typeof headers === 'string') return `compact request: ${headers}`;
  return {
    v: PROTOCOL_VERSION,
    kind: 'request',
    id: id as string,
    pattern: pattern as string,
    from: head.from,
    replyTo: head.replyTo,
    ttl,
    sent: head.sent,
    cr: head.cr,
    headers,
    data: element[3] ?? null,
  };
}

/** A compact request that failed validation: refusable at its head's `replyTo` when its id can be read. */
function compactRejection(element: unknown[], head: RequestHead | string, reason: string, channel: string | undefined): RejectedEnvelope {
  const error = new BadMessageError(reason, channel);
  const id = typeof head === 'string' ? undefined : boundedString(element[0], ENVELOPE_LIMITS.idLength);
  if (id === undefined || typeof head === 'string') return { error };
  return { error, refusable: { id, replyTo: head.replyTo, code: 'BUFFER_BAD_REQUEST', reason } };
}

/**
 * A compact reply (an element of a batch, never a message of its own): `[id, from, seq, done,
 * data]`, a value reply with the object form's types and bounds, read into that object form. Only
 * value replies travel this way; errors, refusals, repeats and the closing envelope of a stream
 * are objects. An instance sends it only to a caller whose request said `"cr":1`.
 */
function compactReply(element: unknown[]): ReplyEnvelope | string {
  if (element.length !== 5) return `a compact reply is [id, from, seq, done, data], not an array of ${element.length}`;
  const [id, from, seq, done, data] = element;
  if (boundedString(id, ENVELOPE_LIMITS.idLength) === undefined) return `compact reply: id must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
  if (boundedString(from, ENVELOPE_LIMITS.instanceIdLength) === undefined) return `compact reply: from must be a string of 1 to ${ENVELOPE_LIMITS.instanceIdLength} characters`;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return 'compact reply: seq must be a non-negative integer';
  if (typeof done !== 'boolean') return 'compact reply: done must be a boolean';
  return { v: PROTOCOL_VERSION, kind: 'reply', id: id as string, from: from as string, seq, done, data };
}

function rejection(value: unknown, reason: string, channel: string | undefined): RejectedEnvelope {
  const error = new BadMessageError(reason, channel);
  const address = refusalAddress(value);
  if (address === undefined) return { error };
  const input = value as Record<string, unknown>;
  const code = input.v === PROTOCOL_VERSION ? 'BUFFER_BAD_REQUEST' : 'BUFFER_UNSUPPORTED_VERSION';
  return { error, refusable: { ...address, code, reason } };
}

/**
 * Where to refuse an invalid request: a request of any version whose `id` and `replyTo` are
 * strings within bounds. Anything else cannot be answered and is only dropped.
 */
function refusalAddress(value: unknown): { id: string; replyTo: string } | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const input = value as Record<string, unknown>;
  if (input.kind !== 'request') return undefined;
  const id = boundedString(input.id, ENVELOPE_LIMITS.idLength);
  const replyTo = boundedString(input.replyTo, ENVELOPE_LIMITS.channelLength);
  return id === undefined || replyTo === undefined ? undefined : { id, replyTo };
}

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

function boundedString(value: unknown, maxLength: number): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= maxLength ? value : undefined;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const NO_HEADERS: BufferHeaders = Object.freeze(Object.create(null) as Record<string, string>);

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

// Characters a JSON string may hold as they are (printable ASCII but the quote and the backslash).
const PLAIN_JSON = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** `JSON.stringify` of a string, without its scan and copy when nothing needs escaping (ids, most patterns). */
export function jsonString(value: string): string {
  return PLAIN_JSON.test(value) ? `"${value}"` : JSON.stringify(value);
}

function hasOwnKeys(value: object): boolean {
  for (const key in value) if (Object.hasOwn(value, key)) return true;
  return false;
}

/** Encodes an envelope as one JSON object. */
export function encodeEnvelope(envelope: Envelope): string {
  return JSON.stringify(envelope);
}

/** A request's parts, encoded once when it is sent; its form (object or compact) is chosen when its batch is flushed. */
export interface EncodedRequest {
  readonly idJson: string;
  readonly patternJson: string;
  /** `undefined` when it has none: no headers travel as no field (one object less to parse per receiver). */
  readonly headersJson: string | undefined;
  readonly dataJson: string;
}

/** Encodes a request's parts. `data` that JSON cannot represent (a function) travels as `null`, which is what the receiver reads for a missing `data`. */
export function encodeRequestParts(envelope: RequestEnvelope): EncodedRequest {
  const dataJson = JSON.stringify(envelope.data) as string | undefined;
  const headersJson = envelope.headers === NO_HEADERS || !hasOwnKeys(envelope.headers) ? undefined : JSON.stringify(envelope.headers);
  return { idJson: jsonString(envelope.id), patternJson: jsonString(envelope.pattern), headersJson, dataJson: dataJson ?? 'null' };
}

/**
 * A request as an object, as `encodeEnvelope` writes it with `ttl` and `sent` first: from parts,
 * with the constant ones (`from`, `replyTo`) encoded once by the caller, a third of the cost of
 * `JSON.stringify` on the whole envelope. It says `"cr":1`: this library's callers read compact
 * replies (`encodeCompactReply`).
 */
export function encodeRequestObject(parts: EncodedRequest, ttl: number, sent: number, fromJson: string, replyToJson: string): string {
  const headers = parts.headersJson === undefined ? '' : `,"headers":${parts.headersJson}`;
  return `{"ttl":${ttl},"sent":${sent},"v":1,"kind":"request","cr":1,"id":${parts.idJson},"pattern":${parts.patternJson},"from":${fromJson},"replyTo":${replyToJson}${headers},"data":${parts.dataJson}}`;
}

/**
 * A request in the compact form, `[id, pattern, ttl, data]` (`[id, pattern, ttl, data, headers]`
 * with headers): an element of a batch that opens with `encodeRequestHead`'s head, which carries
 * what the caller's requests share. Sent only to instances that said `"cq":1`.
 */
export function encodeCompactRequest(parts: EncodedRequest, ttl: number): string {
  return `[${parts.idJson},${parts.patternJson},${ttl},${parts.dataJson}${parts.headersJson === undefined ? ']' : `,${parts.headersJson}]`}`;
}

/** The head of a batch of compact requests: the caller's `from`, its inbox, `"cr":1`, and its clock (`sent`). */
export function encodeRequestHead(fromJson: string, replyToJson: string, sent: number): string {
  return `{"v":1,"kind":"requests","from":${fromJson},"replyTo":${replyToJson},"cr":1,"sent":${sent}}`;
}

/** A batch of `encoded` envelopes after `head` (compact requests among them). */
export function encodeHeadedBatch(head: string, encoded: readonly string[]): string {
  return `[${head},${encoded.join(',')}]`;
}

/**
 * Encodes a reply from pre-encoded parts: the value is serialized once, when the handler emits it,
 * so its size can be checked at once, while `done` may still be set before the batch is flushed.
 */
export function encodeReplyParts(idJson: string, fromJson: string, seq: number, done: boolean, bodyKey: 'data' | 'error' | undefined, bodyJson: string | undefined, refused = false): string {
  const body = bodyKey === undefined ? '' : `,"${bodyKey}":${bodyJson}`;
  return `{"v":1,"kind":"reply","id":${idJson},"from":${fromJson},"seq":${seq},"done":${done}${refused ? ',"refused":true' : ''}${body}}`;
}

/**
 * A value reply in the compact form, for a caller whose request said `"cr":1`: `[id, from, seq,
 * done, data]`. It is only ever an element of a batch (`encodeBatch` keeps a lone one in `[…]`),
 * since a message that is an array is a batch.
 */
export function encodeCompactReply(idJson: string, fromJson: string, seq: number, done: boolean, dataJson: string): string {
  return `[${idJson},${fromJson},${seq},${done},${dataJson}]`;
}

/** The reply to a repeated delivery of a topic request, on the channel of the wildcard binding `binding` (see `ReplyEnvelope.repeat`). */
export function encodeRepeatReply(idJson: string, fromJson: string, binding: string): string {
  return `{"v":1,"kind":"reply","id":${idJson},"from":${fromJson},"seq":0,"done":true,"repeat":${jsonString(binding)}}`;
}

/**
 * Joins encoded envelopes into one Redis message: the envelope itself when alone, else a batch. A
 * compact reply (an array) stays a batch even alone, since a message that is an array is a batch.
 */
export function encodeBatch(encoded: readonly string[]): string {
  return encoded.length === 1 && encoded[0]!.charCodeAt(0) !== 0x5b ? encoded[0]! : `[${encoded.join(',')}]`;
}

/**
 * The UTF-8 size of `text` for a comparison against `limit`: exact when it could exceed the limit;
 * when three bytes per UTF-16 unit still fit, the (smaller) UTF-16 length, which is then enough.
 */
export function utf8Bytes(text: string, limit: number): number {
  // A UTF-16 length times 3 bounds the UTF-8 size.
  return text.length * 3 <= limit ? text.length : Buffer.byteLength(text);
}
