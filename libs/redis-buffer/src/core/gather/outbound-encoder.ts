import { BadMessageError } from '../errors/bad-message.error.js';
import { PayloadTooLargeError } from '../errors/payload-too-large.error.js';
import type { MembershipView } from '../membership/membership.js';
import { encodeEnvelope, encodeRequestRest, utf8Bytes, validateEnvelope, type Envelope, type RequestEnvelope } from '../wire/envelope.js';
import type { Gatherer } from './gatherer.js';
import { OutgoingRequest } from './request-gatherer.js';

/**
 * What a caller sends, checked before anything leaves: validated with the receivers' own rules
 * (`BadMessageError`), encoded, and held to `maxPayloadBytes` (`PayloadTooLargeError`).
 */
export class OutboundEncoder {
  private readonly fromJson: string;
  private readonly inboxJson: string;

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
   * A request, as it waits in the coalescer: `ttl` comes first in the envelope, so its text can be
   * rewritten when the batch is flushed and time spent queued is not counted twice; what follows it
   * is kept encoded.
   */
  request(envelope: RequestEnvelope, view: MembershipView, gatherer: Gatherer<unknown>): OutgoingRequest {
    this.validate(envelope, 'request');
    const rest = encodeRequestRest(envelope, this.fromJson, this.inboxJson);
    const encoded = this.sizeChecked(`{"ttl":${envelope.ttl}${rest}`, 'request');
    return new OutgoingRequest(view, gatherer, rest, encoded.length);
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
