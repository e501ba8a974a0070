import type { Coalescer } from '../bus/coalescer.js';
import { describeRejection, type InboundRejection } from '../bus/guarded-bus.js';
import { BufferErrorCode } from '../errors/buffer.error.js';
import type { BufferLogger } from '../logger.js';
import type { ResolvedBufferOptions } from '../options.js';
import type { BufferTelemetry } from '../telemetry/telemetry.js';
import type { BufferChannels } from '../wire/channels.js';
import { type Envelope, type RequestEnvelope } from '../wire/envelope.js';
import { type RefusableRequest } from '../wire/decode.js';
import { encodeRepeatReply } from '../wire/encode.js';
import type { ReplyDelivery } from './reply-resend.js';
import { ReplyWriter } from './reply-writer.js';
import type { ResponderStats } from './responder-stats.js';

/** An addressable request: where to answer it. */
type Addressed = { readonly replyTo: string; readonly id: string };

/**
 * What an instance says when it will not run a request, and what it drops: every refusal is counted,
 * recorded on a span, and answered on the request's `replyTo` (rule 10: every receiver answers);
 * input it cannot answer (a `replyTo` that is not an inbox, a forged or oversized message) is
 * counted and logged, bounded.
 */
export class Refusals {
  constructor(
    private readonly options: ResolvedBufferOptions,
    private readonly channels: BufferChannels,
    private readonly stats: ResponderStats,
    private readonly telemetry: BufferTelemetry,
    /** Bounded: for failures that a flood of input could repeat. */
    private readonly badInput: Pick<BufferLogger, 'warn'>,
    private readonly fromJson: string,
    private readonly delivery: ReplyDelivery,
    private readonly now: () => number,
  ) {}

  private coalescer: Coalescer | undefined;

  /** The coalescer refusals and error replies leave through, once connected. */
  attach(coalescer: Coalescer): void {
    this.coalescer = coalescer;
  }

  replyAllowed(replyTo: string): boolean {
    return this.options.replyToAnyChannel || this.channels.isInbox(replyTo);
  }

  /**
   * Whether a request can be answered, counting it if so. One whose `replyTo` is not an inbox is only
   * dropped: answering would publish onto a channel of the sender's choosing (amplification).
   */
  answerable(replyTo: string, dropReason: string | undefined): boolean {
    if (this.replyAllowed(replyTo)) {
      this.stats.requests++;
      return true;
    }
    this.rejectInput(dropReason ?? `Dropped a request whose replyTo "${replyTo}" is not an inbox of namespace "${this.options.namespace}" (see the "replyToAnyChannel" option).`);
    return false;
  }

  /** A request that failed validation but says where to answer (a newer version, a bad header…). */
  unreadable(request: RefusableRequest, reason: string): void {
    if (!this.answerable(request.replyTo, reason)) return;
    const { instanceId } = this.options;
    const message =
      request.code === BufferErrorCode.UnsupportedVersion
        ? `Instance "${instanceId}" speaks protocol version 1 and cannot run this request: ${reason}.`
        : `Instance "${instanceId}" refused a malformed request: ${reason}.`;
    this.malformed(request, request.code, message);
  }

  overloaded(envelope: RequestEnvelope): void {
    this.stats.overloaded++;
    const { instanceId, maxConcurrentHandlers, maxQueuedHandlers } = this.options;
    this.refuse(
      envelope,
      BufferErrorCode.Overloaded,
      `Instance "${instanceId}" is overloaded: ${maxConcurrentHandlers} handlers running and ${maxQueuedHandlers} requests queued; retry later, add instances, or raise "maxConcurrentHandlers" / "maxQueuedHandlers".`,
    );
  }

  malformed(request: Addressed, code: string, message: string): void {
    this.stats.malformedMessages++;
    this.refuse(request, code, message);
  }

  refuse(request: Addressed, code: string, message: string): void {
    this.stats.refused++;
    // A refusable request too malformed to be an envelope names no pattern, sender or headers.
    const known = request as Partial<RequestEnvelope>;
    this.telemetry.refused(known.pattern ?? '', '', request.id, known.from ?? '', known.headers ?? {}, code);
    this.writerFor(request).refuse(code, message);
  }

  /**
   * A repeat delivery of a topic request this instance takes already (the caller published it on
   * several channels it binds): answered with a repeat reply naming `binding`, so the caller's count
   * of deliveries stays exact; the request runs once.
   */
  repeated(request: Addressed, binding: string): void {
    this.stats.repeatDeliveries++;
    const text = encodeRepeatReply(JSON.stringify(request.id), this.fromJson, binding);
    this.coalescer!.enqueue(request.replyTo, { bytes: text.length, encode: () => text });
  }

  /** The requests among `envelopes` (held while the instance started), refused: it will not start. */
  refuseUnstarted(envelopes: readonly Envelope[], message: string): void {
    for (const envelope of envelopes) {
      if (envelope.kind === 'request' && this.answerable(envelope.replyTo, undefined)) this.refuse(envelope, BufferErrorCode.ShuttingDown, message);
    }
  }

  /** Whether a ping or `who` may be answered on its `replyTo`; if not, it is dropped and said so. */
  mayAnswer(envelope: { readonly kind: string; readonly replyTo: string }): boolean {
    if (this.replyAllowed(envelope.replyTo)) return true;
    this.rejectInput(`Dropped a ${envelope.kind} whose replyTo "${envelope.replyTo}" is not an inbox of namespace "${this.options.namespace}".`);
    return false;
  }

  /** A message dropped unanswered: counted as malformed and logged. */
  rejectInput(message: string): void {
    this.stats.malformedMessages++;
    this.badInput.warn(message);
  }

  /** What the guarded bus dropped before decoding (oversized, unsigned, forged, replayed, stale). */
  inboundRejected(reason: InboundRejection, channel: string, length: number): void {
    const message = describeRejection(reason, channel, length, this.options);
    if (reason === 'oversized') return this.rejectInput(message);
    if (reason === 'replayed' || reason === 'stale') this.stats.replayedMessages++;
    else this.stats.forgedMessages++;
    this.badInput.warn(message);
  }

  /** A writer for an error or a refusal to `request`: always objects, so the request's `cr` is not read. */
  writerFor(request: Addressed): ReplyWriter {
    // The request's deadline when it carries one (a malformed request may not).
    const { ttl, deadline } = request as Partial<RequestEnvelope>;
    const until = typeof ttl === 'number' ? this.now() + ttl : typeof deadline === 'number' ? deadline : undefined;
    return new ReplyWriter(this.coalescer!, request.replyTo, request.id, this.fromJson, this.options.maxPayloadBytes, this.delivery, until);
  }
}
