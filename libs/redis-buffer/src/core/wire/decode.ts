import { BadMessageError } from '../errors/bad-message.error.js';
import {
  boundedString,
  ENVELOPE_LIMITS,
  PROTOCOL_VERSION,
  validateEnvelope,
  validateHeaders,
  type Envelope,
  type RequestEnvelope,
} from './envelope.js';

// Reading one Redis message into envelopes (docs/protocol.md, "Messages and batches"): a bare
// envelope, a batch, compact replies, and compact requests after their head.

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

/**
 * What reading one message finds, given in the order the message holds it. A compact reply goes
 * to `compactReply` as its fields: the caller's inbox reads a batch of them without an envelope
 * object for each.
 */
export interface MessageReader {
  envelope(envelope: Envelope, channel: string | undefined): void;
  /** A compact reply that passed validation: a value reply with the object form's types and bounds. */
  compactReply(id: string, from: string, seq: number, done: boolean, data: unknown, channel: string | undefined): void;
  rejected(rejection: RejectedEnvelope): void;
}

/** Parses one Redis message into envelopes. Never throws: what is invalid lands in `rejected`. */
export function decodeMessage(raw: string, channel?: string): DecodedMessage {
  const envelopes: Envelope[] = [];
  const rejected: RejectedEnvelope[] = [];
  readMessage(raw, channel, {
    envelope: (envelope) => void envelopes.push(envelope),
    compactReply: (id, from, seq, done, data) => void envelopes.push({ v: PROTOCOL_VERSION, kind: 'reply', id, from, seq, done, data }),
    rejected: (rejection) => void rejected.push(rejection),
  });
  return { envelopes, rejected };
}

/**
 * Reads one Redis message, giving `reader` each envelope, compact reply and rejection in order.
 * Never throws of its own: what is invalid goes to `rejected` (what `reader` throws is its own).
 */
export function readMessage(raw: string, channel: string | undefined, reader: MessageReader): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (cause) {
    return reader.rejected({ error: new BadMessageError('not JSON', channel, { cause }) });
  }
  if (!Array.isArray(parsed)) {
    const result = validateEnvelope(parsed);
    return typeof result === 'string' ? reader.rejected(rejection(parsed, result, channel)) : reader.envelope(result, channel);
  }
  // No sender produces an empty batch: count it as malformed rather than drop it unseen.
  if (parsed.length === 0) return reader.rejected({ error: new BadMessageError('empty batch', channel) });
  if (parsed.length > ENVELOPE_LIMITS.batchLength) {
    return reader.rejected({ error: new BadMessageError(`batch of ${parsed.length} envelopes exceeds ${ENVELOPE_LIMITS.batchLength}`, channel) });
  }
  // A batch that opens with a request head carries compact requests (arrays) after it.
  let start = 0;
  let head: RequestHead | string | undefined;
  if (isRequestHead(parsed[0])) {
    head = validateRequestHead(parsed[0] as Record<string, unknown>);
    if (typeof head === 'string') reader.rejected({ error: new BadMessageError(`batch element 0: ${head}`, channel) });
    start = 1;
  }
  for (let index = start; index < parsed.length; index++) {
    const element: unknown = parsed[index];
    if (head !== undefined && Array.isArray(element)) {
      const result = typeof head === 'string' ? 'a compact request needs a valid request head' : compactRequest(element, head);
      if (typeof result !== 'string') reader.envelope(result, channel);
      else reader.rejected(compactRejection(element, head, `batch element ${index}: ${result}`, channel));
      continue;
    }
    if (Array.isArray(element)) {
      const problem = compactReplyProblem(element);
      if (problem === undefined) reader.compactReply(element[0] as string, element[1] as string, element[2] as number, element[3] as boolean, element[4], channel);
      else reader.rejected(rejection(element, `batch element ${index}: ${problem}`, channel));
      continue;
    }
    const result = validateEnvelope(element);
    if (typeof result === 'string') reader.rejected(rejection(element, `batch element ${index}: ${result}`, channel));
    else reader.envelope(result, channel);
  }
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
  const id = boundedString(element[0], ENVELOPE_LIMITS.idLength);
  if (typeof head === 'string' || id === undefined) return { error };
  return { error, refusable: { id, replyTo: head.replyTo, code: 'BUFFER_BAD_REQUEST', reason } };
}

/**
 * What is wrong with a compact reply (an element of a batch, never a message of its own), or
 * `undefined`: `[id, from, seq, done, data]`, a value reply with the object form's types and
 * bounds. Only value replies travel this way; errors, refusals, repeats and the closing envelope of
 * a stream are objects. An instance sends it only to a caller whose request said `"cr":1`.
 */
function compactReplyProblem(element: unknown[]): string | undefined {
  if (element.length !== 5) return `a compact reply is [id, from, seq, done, data], not an array of ${element.length}`;
  if (boundedString(element[0], ENVELOPE_LIMITS.idLength) === undefined) return `compact reply: id must be a string of 1 to ${ENVELOPE_LIMITS.idLength} characters`;
  if (boundedString(element[1], ENVELOPE_LIMITS.instanceIdLength) === undefined) return `compact reply: from must be a string of 1 to ${ENVELOPE_LIMITS.instanceIdLength} characters`;
  const seq = element[2];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return 'compact reply: seq must be a non-negative integer';
  if (typeof element[3] !== 'boolean') return 'compact reply: done must be a boolean';
  return undefined;
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
