import type { Coalescer, OutgoingEnvelope, PublishCallback } from './coalescer.js';
import { encodeReplyParts } from './envelope.js';
import { BufferErrorCode } from './errors/buffer.error.js';

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
  ) {
    this.bytes = writer.envelopeOverhead + (bodyJson?.length ?? 0);
  }

  encode(): string {
    this.flushed = true;
    return encodeReplyParts(this.writer.idJson, this.writer.fromJson, this.seq, this.done, this.bodyKey, this.bodyJson);
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
  private seq = 0;
  private last: PendingReply | undefined;
  private ended = false;
  // One callback for every reply of this request, not a closure per reply.
  private readonly published: PublishCallback = (error) => {
    if (error !== undefined) this.onPublishError(error, this.replyTo);
  };

  constructor(
    private readonly coalescer: Coalescer,
    private readonly replyTo: string,
    requestId: string,
    readonly fromJson: string,
    private readonly maxPayloadBytes: number,
    private readonly onPublishError: (error: Error, replyTo: string) => void,
  ) {
    this.idJson = JSON.stringify(requestId);
    this.envelopeOverhead = 64 + this.idJson.length + fromJson.length;
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
    const bytes = json.length * 3 + this.envelopeOverhead <= this.maxPayloadBytes ? json.length : Buffer.byteLength(json) + this.envelopeOverhead;
    if (bytes > this.maxPayloadBytes) {
      this.error({
        code: BufferErrorCode.PayloadTooLarge,
        message: `The handler's reply encodes to ${bytes} bytes, over the ${this.maxPayloadBytes}-byte limit ("maxPayloadBytes").`,
      });
      return;
    }
    this.push(false, 'data', json);
  }

  error(error: unknown): void {
    if (this.ended) return;
    let json: string;
    try {
      json = JSON.stringify(toWireError(error));
    } catch {
      json = JSON.stringify({ message: String(error) });
    }
    this.push(true, 'error', json);
    this.ended = true;
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
    else this.push(true, undefined, undefined);
  }

  private push(done: boolean, bodyKey: 'data' | 'error' | undefined, bodyJson: string | undefined): void {
    const reply = new PendingReply(this, this.seq++, done, bodyKey, bodyJson);
    this.last = reply;
    this.coalescer.enqueue(this.replyTo, reply, this.published);
  }
}
