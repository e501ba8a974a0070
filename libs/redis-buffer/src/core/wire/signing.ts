import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Optional message signing (the `signingKey` option): HMAC-SHA256 with a key shared by every
 * process of a namespace, so that a foreign client on a shared Redis can read but not forge
 * requests, events or replies, nor replay what it captured (see `replay-guard.ts`).
 *
 * What is signed is one whole Redis message (one envelope or a batch, exactly as the coalescer
 * produced it, the pre-encoded reply path included), bound to the channel it is published on and
 * stamped with who sealed it, in which order, and when:
 *
 *   sig  = hex(HMAC-SHA256(key, channel + "\n" + src + "\n" + seq + "\n" + at + "\n" + body))
 *   wire = {"v":1,"kind":"signed","sig":"<sig>","src":"<src>","seq":<seq>,"at":<at>,"body":<body>}
 *
 * `src` is random per signer (one per caller or instance object), `seq` counts the messages it
 * sealed (0, 1, 2…), `at` is its clock in ms since the epoch. The wrapper has a fixed layout (the
 * fields in this order, no spaces, `sig` always 64 hex digits), so a receiver reads the stamp and
 * takes `body` as the exact characters between `"body":` and the final `}`: nothing is re-encoded
 * before verifying, and another language (or redis-cli) builds the same bytes with a string
 * concatenation. Documented in docs/protocol.md ("Signing") and docs/reliability.md.
 */
export const SIGNED_PREFIX = '{"v":1,"kind":"signed","sig":"';
const SIG_HEX_LENGTH = 64;
const SRC_KEY = '","src":"';
const SEQ_KEY = '","seq":';
const AT_KEY = ',"at":';
const BODY_KEY = ',"body":';
const STAMP_START = SIGNED_PREFIX.length + SIG_HEX_LENGTH;
const HEX = /^[0-9a-f]{64}$/;
/** The stamp as it stands between the signature and the body; its parts are read from here. */
const STAMP = /^","src":"([A-Za-z0-9_-]{1,64})","seq":(0|[1-9][0-9]{0,15}),"at":(-?(?:0|[1-9][0-9]{0,15})),"body":/;
/** Longest stamp: bounds the search for the body, so a hostile message costs a short scan. */
const MAX_STAMP_LENGTH = SRC_KEY.length + 64 + SEQ_KEY.length + 16 + AT_KEY.length + 17 + BODY_KEY.length;

/** Shortest accepted key: an HMAC key shorter than this is guessable. */
export const MIN_SIGNING_KEY_BYTES = 16;

/** Why an inbound message was refused by `MessageSigner.open`. */
export type SignatureFailure = 'unsigned' | 'forged';

/** Who sealed a message, its place in that sealer's sequence, and the sealer's clock then. */
export interface SignatureStamp {
  /** Random per signer: one caller or instance object. */
  readonly src: string;
  /** 0, 1, 2… per `src`, in the order it sealed its messages. */
  readonly seq: number;
  /** The sealer's clock when it sealed, ms since the epoch. */
  readonly at: number;
}

/**
 * Signs with the first key and accepts a signature made with any of them (key rotation). A string
 * key is used as its UTF-8 bytes; a Buffer as its bytes. Each signer has its own `src`, and counts
 * the messages it seals.
 */
export class MessageSigner {
  /** This signer's `src`: 96 random bits. */
  readonly src = randomBytes(12).toString('base64url');
  private readonly keys: Buffer[];
  private seq = 0;

  constructor(
    keys: string | Buffer | ReadonlyArray<string | Buffer>,
    private readonly now: () => number = Date.now,
  ) {
    const list = Array.isArray(keys) ? (keys as ReadonlyArray<string | Buffer>) : [keys as string | Buffer];
    if (list.length === 0) throw new TypeError('MessageSigner needs at least one key');
    this.keys = list.map((key) => (typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key)));
  }

  /** Wraps an encoded message (envelope or batch) bound for `channel`, stamped with the next `seq` and the clock. */
  seal(channel: string, body: string): string {
    const seq = String(this.seq++);
    const at = String(Math.floor(this.now()));
    const sig = this.mac(this.keys[0]!, channel, this.src, seq, at, body).toString('hex');
    return `${SIGNED_PREFIX}${sig}${SRC_KEY}${this.src}${SEQ_KEY}${seq}${AT_KEY}${at}${BODY_KEY}${body}}`;
  }

  /**
   * The signature of `body` bound to `key` (a durable stream's key): HMAC-SHA256 over
   * `key + "\n" + body`, 64 lowercase hex digits, made with the first key. Stream entries carry no
   * stamp: an entry is run once per group by the consumer group itself (docs/protocol.md, "Signed entries").
   */
  sign(key: string, body: string): string {
    return this.entryMac(this.keys[0]!, key, body).toString('hex');
  }

  /** The entry signature of `body` under each key, the signing key first (what a receiver in the middle of a rotation may meet). */
  signatures(key: string, body: string): string[] {
    return this.keys.map((secret) => this.entryMac(secret, key, body).toString('hex'));
  }

  /** Whether `sig` is an entry signature of `body` for `key` with any of the keys. */
  verify(key: string, body: string, sig: string): boolean {
    if (!HEX.test(sig)) return false;
    const given = Buffer.from(sig, 'hex');
    return this.keys.some((secret) => timingSafeEqual(given, this.entryMac(secret, key, body)));
  }

  /** Returns the body and stamp of a correctly signed message for `channel`, or why it was refused. */
  open(channel: string, message: string): { body: string; stamp: SignatureStamp } | { failure: SignatureFailure } {
    if (!message.startsWith(SIGNED_PREFIX) || message.charCodeAt(message.length - 1) !== 0x7d /* } */) return { failure: 'unsigned' };
    const stamp = STAMP.exec(message.slice(STAMP_START, STAMP_START + MAX_STAMP_LENGTH));
    if (stamp === null) return { failure: 'unsigned' };
    const bodyStart = STAMP_START + stamp[0].length;
    if (message.length <= bodyStart + 1) return { failure: 'unsigned' };
    const sig = message.slice(SIGNED_PREFIX.length, STAMP_START);
    if (!HEX.test(sig)) return { failure: 'forged' };
    const [, src, seq, at] = stamp as unknown as [string, string, string, string];
    const body = message.slice(bodyStart, -1);
    const given = Buffer.from(sig, 'hex');
    for (const key of this.keys) {
      if (timingSafeEqual(given, this.mac(key, channel, src, seq, at, body))) return { body, stamp: { src, seq: Number(seq), at: Number(at) } };
    }
    return { failure: 'forged' };
  }

  private mac(key: Buffer, channel: string, src: string, seq: string, at: string, body: string): Buffer {
    return createHmac('sha256', key).update(`${channel}\n${src}\n${seq}\n${at}\n`, 'utf8').update(body, 'utf8').digest();
  }

  private entryMac(secret: Buffer, key: string, body: string): Buffer {
    return createHmac('sha256', secret).update(key, 'utf8').update('\n', 'utf8').update(body, 'utf8').digest();
  }
}
