import type { Coalescer, OutgoingEnvelope } from '../bus/coalescer.js';
import { encodeCompactReply, encodeReplyParts, jsonString } from '../wire/encode.js';
import { BufferErrorCode } from '../errors/buffer.error.js';
import type { ReplyDelivery } from './reply-resend.js';

/** An error as it travels in a reply: JSON, so an `Error` becomes `{ name, message, code? }`. */
export function toWireError(error: unknown): unknown {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return error === undefined ? null : error;
}

class PendingReply implements OutgoingEnvelope {
  flushed = false;
  readonly bytes: number;

  constructor(
    private readonly writer: ReplyWriter,
    readonly seq: number,
    public done: boolean,
    private readonly bodyKey: 'data' | 'error' | undefined,
    private readonly bodyJson: string | undefined,
    private readonly refused: boolean,
  ) {
    this.bytes = writer.batchOverhead + (bodyJson?.length ?? 0);
  }

  encode(): string {
    this.flushed = true;
    if (this.writer.compact && this.bodyKey === 'data') return encodeCompactReply(this.writer.idJson, this.writer.fromJson, this.seq, this.done, this.bodyJson!);
    return encodeReplyParts(this.writer.idJson, this.writer.fromJson, this.seq, this.done, this.bodyKey, this.bodyJson, this.refused);
  }

  published(error: Error | undefined): void {
    if (error !== undefined) this.writer.publishFailed(this, error);
  }
}

/**
 * Writes one instance's replies to one request: sequence numbers, the `done` flag, and the
 * payload limit. A value followed by completion in the same tick travels as one envelope with
 * `done: true`, so a plain (non-streaming) handler costs one envelope, not two.
 */
export class ReplyWriter {
  readonly idJson: string;
  readonly envelopeOverhead: number;
  /** The envelope's usual size around the body, for batch accounting (not a bound). */
  readonly batchOverhead: number;
  private seq = 0;
  private last: PendingReply | undefined;
  private ended = false;
  // Replies whose PUBLISH failed, and those written after them, in order, while they wait for the
  // connection (see ReplyResend); undefined when nothing waits.
  private held: PendingReply[] | undefined;
  /** Set when this answer ended with an error or a refusal: its code, or `error`. */
  errorType: string | undefined;
  constructor(
    private readonly coalescer: Coalescer,
    private readonly replyTo: string,
    requestId: string,
    readonly fromJson: string,
    private readonly maxPayloadBytes: number,
    private readonly delivery: ReplyDelivery,
    /** When the caller stops waiting (epoch ms), when known: a failed reply is sent again until then. */
    readonly deadline: number | undefined,
    /** The request said `"cr":1`: value replies go out in the compact form (`encodeCompactReply`). */
    readonly compact = false,
  ) {
    this.idJson = jsonString(requestId);
    // The envelope around the body, in UTF-8 bytes, bounded from above: fixed fields (with room for
    // `seq` and `"refused":true`), the id and the sender at 3 bytes per UTF-16 unit at most.
    this.envelopeOverhead = 96 + 3 * (this.idJson.length + fromJson.length);
    this.batchOverhead = 64 + this.idJson.length + fromJson.length;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  value(data: unknown): void {
    if (this.ended) return;
    let json: string;
    try {
      json = JSON.stringify(data === undefined ? null : data);
    } catch (error) {
      this.error({ code: BufferErrorCode.BadMessage, message: `The handler's reply cannot be encoded as JSON: ${(error as Error).message}` });
      return;
    }
    if (this.tooLarge(json, 'reply')) return;
    this.push(false, 'data', json, false);
  }

  /** Ends this instance's answer with an error: the handler's, or one of this library's. */
  error(error: unknown): void {
    if (this.ended) return;
    let json: string;
    try {
      json = JSON.stringify(toWireError(error));
    } catch {
      json = JSON.stringify({ message: String(error) });
    }
    if (this.tooLarge(json, 'error')) return;
    const code = (error as { code?: unknown } | null)?.code;
    this.errorType = typeof code === 'string' ? code : 'error';
    this.push(true, 'error', json, false);
    this.ended = true;
  }

  /**
   * Ends this instance's answer with a refusal: it received the request and will not run it. The
   * caller counts the instance as finished and sees `refused: true` with the code.
   */
  refuse(code: string, message: string): void {
    if (this.ended) return;
    this.errorType = code;
    this.push(true, 'error', JSON.stringify({ code, message }), true);
    this.ended = true;
  }

  /**
   * Whether a reply body (value or error) would make the envelope larger than `maxPayloadBytes`
   * (the whole encoded envelope, in UTF-8 bytes); if so it is replaced by a small error reply,
   * which the caller can always accept.
   */
  private tooLarge(json: string, what: 'reply' | 'error'): boolean {
    const limit = this.maxPayloadBytes - this.envelopeOverhead;
    const bytes = json.length * 3 <= limit ? json.length : Buffer.byteLength(json);
    if (bytes <= limit) return false;
    const message = `The handler's ${what === 'reply' ? 'reply' : 'error'} encodes to ${bytes + this.envelopeOverhead} bytes with its envelope, over the ${this.maxPayloadBytes}-byte limit ("maxPayloadBytes").`;
    this.errorType = BufferErrorCode.ReplyTooLarge;
    this.push(true, 'error', JSON.stringify({ code: BufferErrorCode.ReplyTooLarge, message }), false);
    this.ended = true;
    return true;
  }

  /** rxjs Observer: the writer subscribes to a handler's stream directly, with no wrapper per request. */
  next(data: unknown): void {
    this.value(data);
  }

  complete(): void {
    this.end();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.last !== undefined && !this.last.flushed) this.last.done = true;
    else this.push(true, undefined, undefined, false);
  }

  /** A PUBLISH carrying `reply` failed: it waits for the connection, or is lost. */
  publishFailed(reply: PendingReply, error: Error): void {
    if (this.held === undefined && !this.delivery.holdForResend(this, error)) {
      this.delivery.lost(error, this.replyTo);
      return;
    }
    const held = (this.held ??= []);
    reply.flushed = false;
    let index = held.length;
    while (index > 0 && held[index - 1]!.seq > reply.seq) index--;
    held.splice(index, 0, reply);
  }

  /** The connection is back: what waited is published again, in order. */
  resendHeld(): void {
    const held = this.held;
    this.held = undefined;
    if (held !== undefined) for (const reply of held) this.coalescer.enqueue(this.replyTo, reply);
  }

  /** What waited for the connection is lost. */
  dropHeld(error: Error): void {
    if (this.held === undefined) return;
    this.held = undefined;
    this.delivery.lost(error, this.replyTo);
  }

  private push(done: boolean, bodyKey: 'data' | 'error' | undefined, bodyJson: string | undefined, refused: boolean): void {
    const reply = new PendingReply(this, this.seq++, done, bodyKey, bodyJson, refused);
    this.last = reply;
    // Behind replies waiting for the connection, so the caller gets them in order.
    if (this.held !== undefined) this.held.push(reply);
    else this.coalescer.enqueue(this.replyTo, reply);
  }
}
