import { BadMessageError } from '../errors/bad-message.error.js';
import { PayloadTooLargeError } from '../errors/payload-too-large.error.js';
import type { MembershipView } from '../membership/membership.js';
import { validateEnvelope, type Envelope, type RequestEnvelope } from '../wire/envelope.js';
import { encodeEnvelope, encodeRequestHead, encodeRequestObject, encodeRequestParts, requestObjectLength, utf8Bytes } from '../wire/encode.js';
import type { Gatherer } from './gatherer.js';
import { OutgoingRequest } from './request-gatherer.js';

/** A clock reading as long as today's (13 digits), standing for `sent` when a request's size is checked. */
const SENT_AS_LONG_AS_NOW = 9_999_999_999_999;

/**
 * What a caller sends, checked before anything leaves: validated with the receivers' own rules
 * (`BadMessageError`), encoded, and held to `maxPayloadBytes` (`PayloadTooLargeError`).
 */
export class OutboundEncoder {
  readonly fromJson: string;
  readonly inboxJson: string;
  private headAt = 0;
  private lastHead: string | undefined;

  constructor(
    private readonly maxPayloadBytes: number,
    from: string,
    inbox: string,
  ) {
    this.fromJson = JSON.stringify(from);
    this.inboxJson = JSON.stringify(inbox);
  }

  /** An event (or any envelope) encoded whole. */
  encode(envelope: Envelope, what: string): string {
    this.validate(envelope, what);
    return this.sizeChecked(encodeEnvelope(envelope), what);
  }

  /**
   * A request, as it waits in the coalescer: its parts are kept encoded, and its `ttl` and `sent`
   * written when the batch is flushed, so time spent queued is not counted twice. Its size is
   * checked in the object form, the larger.
   */
  request(envelope: RequestEnvelope, view: MembershipView, gatherer: Gatherer<unknown>): OutgoingRequest {
    this.validate(envelope, 'request');
    const parts = encodeRequestParts(envelope);
    const ttl = envelope.ttl ?? 0;
    const length = requestObjectLength(parts, ttl, SENT_AS_LONG_AS_NOW, this.fromJson, this.inboxJson);
    // Three UTF-8 bytes per UTF-16 unit at most: only a request that might be too large is written
    // out here, to be measured exactly (the flush writes every request in its chosen form).
    if (length * 3 > this.maxPayloadBytes) this.sizeChecked(encodeRequestObject(parts, ttl, SENT_AS_LONG_AS_NOW, this.fromJson, this.inboxJson), 'request');
    return new OutgoingRequest(view, gatherer, this, parts, length);
  }

  /** The head of a batch of this caller's compact requests, `sent` at `now` (made once per clock reading, not per request). */
  head(now: number): string {
    if (now !== this.headAt || this.lastHead === undefined) {
      this.headAt = now;
      this.lastHead = encodeRequestHead(this.fromJson, this.inboxJson, now);
    }
    return this.lastHead;
  }

  private validate(envelope: Envelope, what: string): void {
    const problem = validateEnvelope(envelope);
    if (typeof problem === 'string') throw new BadMessageError(`the ${what} would be refused by every receiver: ${problem}`);
  }

  private sizeChecked(encoded: string, what: string): string {
    const bytes = utf8Bytes(encoded, this.maxPayloadBytes);
    if (bytes > this.maxPayloadBytes) throw new PayloadTooLargeError(bytes, this.maxPayloadBytes, what);
    return encoded;
  }
}
