import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Optional message signing (the `signingKey` option): HMAC-SHA256 with a key shared by every
 * process of a namespace, so that a foreign client on a shared Redis can read but not forge
 * requests, events or replies.
 *
 * What is signed is one whole Redis message (one envelope or a batch, exactly as the coalescer
 * produced it, the pre-encoded reply path included), bound to the channel it is published on:
 *
 *   sig  = hex(HMAC-SHA256(key, channel + "\n" + body))
 *   wire = {"v":1,"kind":"signed","sig":"<sig>","body":<body>}
 *
 * The wrapper has a fixed layout (`sig` is always 64 hex digits), so a receiver takes `body` as the
 * exact characters between the fixed prefix and the final `}`: nothing is re-encoded before
 * verifying, and another language (or redis-cli) builds the same bytes with a string
 * concatenation. Documented in docs/protocol.md ("Signing") and docs/reliability.md.
 */
export const SIGNED_PREFIX = '{"v":1,"kind":"signed","sig":"';
const SIG_HEX_LENGTH = 64;
const BODY_KEY = '","body":';
const BODY_START = SIGNED_PREFIX.length + SIG_HEX_LENGTH + BODY_KEY.length;
const HEX = /^[0-9a-f]{64}$/;

/** Shortest accepted key: an HMAC key shorter than this is guessable. */
export const MIN_SIGNING_KEY_BYTES = 16;

/** Why an inbound message was refused by `MessageSigner.open`. */
export type SignatureFailure = 'unsigned' | 'forged';

/**
 * Signs with the first key and accepts a signature made with any of them (key rotation). A string
 * key is used as its UTF-8 bytes; a Buffer as its bytes.
 */
export class MessageSigner {
  private readonly keys: Buffer[];

  constructor(keys: string | Buffer | ReadonlyArray<string | Buffer>) {
    const list = Array.isArray(keys) ? (keys as ReadonlyArray<string | Buffer>) : [keys as string | Buffer];
    if (list.length === 0) throw new TypeError('MessageSigner needs at least one key');
    this.keys = list.map((key) => (typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key)));
  }

  /** Wraps an encoded message (envelope or batch) bound for `channel`. */
  seal(channel: string, body: string): string {
    return `${SIGNED_PREFIX}${this.sign(channel, body)}${BODY_KEY}${body}}`;
  }

  /** The signature of `body` bound to `channel` (a channel, or a stream's key): 64 lowercase hex digits, made with the first key. */
  sign(channel: string, body: string): string {
    return this.mac(this.keys[0]!, channel, body).toString('hex');
  }

  /** The signature of `body` under each key, the signing key first (what a receiver in the middle of a rotation may meet). */
  signatures(channel: string, body: string): string[] {
    return this.keys.map((key) => this.mac(key, channel, body).toString('hex'));
  }

  /** Whether `sig` signs `body` for `channel` with any of the keys. */
  verify(channel: string, body: string, sig: string): boolean {
    if (!HEX.test(sig)) return false;
    const given = Buffer.from(sig, 'hex');
    return this.keys.some((key) => timingSafeEqual(given, this.mac(key, channel, body)));
  }

  /** Returns the body of a correctly signed message for `channel`, or why it was refused. */
  open(channel: string, message: string): { body: string } | { failure: SignatureFailure } {
    if (
      message.length <= BODY_START ||
      !message.startsWith(SIGNED_PREFIX) ||
      message.charCodeAt(message.length - 1) !== 0x7d /* } */ ||
      message.slice(BODY_START - BODY_KEY.length, BODY_START) !== BODY_KEY
    ) {
      return { failure: 'unsigned' };
    }
    const sig = message.slice(SIGNED_PREFIX.length, SIGNED_PREFIX.length + SIG_HEX_LENGTH);
    if (!HEX.test(sig)) return { failure: 'forged' };
    const body = message.slice(BODY_START, -1);
    return this.verify(channel, body, sig) ? { body } : { failure: 'forged' };
  }

  private mac(key: Buffer, channel: string, body: string): Buffer {
    return createHmac('sha256', key).update(channel, 'utf8').update('\n', 'utf8').update(body, 'utf8').digest();
  }
}
