import { NO_HEADERS, type Envelope, type RequestEnvelope } from './envelope.js';

// Writing envelopes and batches (docs/protocol.md), from pre-encoded parts on the hot paths.

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

// The object form's length around its parts, read off `encodeRequestObject` itself (less the two
// one-digit numbers given for `ttl` and `sent`), and what a `headers` field adds around its value.
const EMPTY_PARTS: EncodedRequest = { idJson: '', patternJson: '', headersJson: undefined, dataJson: '' };
const OBJECT_AROUND_PARTS = encodeRequestObject(EMPTY_PARTS, 0, 0, '', '').length - 2;
const HEADERS_FIELD = encodeRequestObject({ ...EMPTY_PARTS, headersJson: '' }, 0, 0, '', '').length - 2 - OBJECT_AROUND_PARTS;

/** `encodeRequestObject(…).length`, without writing the request: its size is checked when it is sent, its form chosen later. */
export function requestObjectLength(parts: EncodedRequest, ttl: number, sent: number, fromJson: string, replyToJson: string): number {
  const headers = parts.headersJson === undefined ? 0 : HEADERS_FIELD + parts.headersJson.length;
  return OBJECT_AROUND_PARTS + String(ttl).length + String(sent).length + parts.idJson.length + parts.patternJson.length + fromJson.length + replyToJson.length + headers + parts.dataJson.length;
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
